package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/go-multierror"
	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a file, at a key path and line.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

// Error formats as `listeners[0].routes[1].pool: unknown pool "ws" (line 23)`.
func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", e.Path, e.Msg, e.Line)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Load reads and parses a file. A file with problems returns them all in one
// *multierror.Error whose message names the file and lists one per line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		var me *multierror.Error
		if errors.As(err, &me) {
			me.ErrorFormat = listFormat(path)
		}
		return nil, err
	}
	return cfg, nil
}

// Parse decodes, defaults and validates a configuration.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, multiErr([]error{fmt.Errorf("yaml: %w", err)})
	}
	cfg := &Config{}
	d := &decoder{lines: map[string]int{}}
	if len(root.Content) > 0 {
		d.decode(root.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	cfg.lines = d.lines
	applyDefaults(cfg)
	errs := append(d.errs, validate(cfg)...)
	slices.SortStableFunc(errs, func(a, b error) int { return lineOfErr(a) - lineOfErr(b) })
	if len(errs) > 0 {
		return nil, multiErr(errs)
	}
	return cfg, nil
}

func lineOfErr(err error) int {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Line
	}
	return 0
}

func multiErr(errs []error) error {
	me := &multierror.Error{Errors: errs, ErrorFormat: listFormat("")}
	return me
}

// listFormat lists errors one per line under a heading naming the file.
func listFormat(file string) multierror.ErrorFormatFunc {
	return func(errs []error) string {
		where := ""
		if file != "" {
			where = " in " + file
		}
		noun := "errors"
		if len(errs) == 1 {
			noun = "error"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d %s%s:", len(errs), noun, where)
		for _, e := range errs {
			b.WriteString("\n  ")
			b.WriteString(e.Error())
		}
		return b.String()
	}
}

// Errors returns the individual problems behind an error from Load or Parse.
func Errors(err error) []error {
	var me *multierror.Error
	if errors.As(err, &me) {
		return me.Errors
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// KeyLine returns the line of a key path ("listeners[0].listen") in the
// file, or 0 when the file did not set it.
func (c *Config) KeyLine(path string) int { return c.lines[path] }

// isSet reports whether the file set a key path.
func (c *Config) isSet(path string) bool {
	_, ok := c.lines[path]
	return ok
}

// ErrorStrings returns the messages of Errors(err), for JSON answers.
func ErrorStrings(err error) []string {
	var out []string
	for _, e := range Errors(err) {
		out = append(out, e.Error())
	}
	return out
}
