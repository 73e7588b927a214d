package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree into typed values by the fields' yaml
// tags. Unlike yaml's own Decode it keeps going after an error, so one pass
// finds every unknown key and wrong type, and it records the line of every
// key it sees, so later checks can name lines too.
type decoder struct {
	lines map[string]int // key path -> line
	errs  []error
}

var durationType = reflect.TypeOf(time.Duration(0))

func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// decode fills v from n. path names v ("listeners[0].routes[1]").
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	default:
		d.decodeScalar(n, v, path)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping, got %s", kindName(n))
		return
	}
	fields := map[string]int{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if d.duplicate(p, k) {
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(p, k.Line, "unknown key")
			continue
		}
		d.lines[p] = k.Line
		d.decode(val, v.Field(idx), p)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n.Line, "expected a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = item.Line
		d.decode(item, s.Index(i), p)
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if d.duplicate(p, k) {
			continue
		}
		d.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, p)
		v.SetMapIndex(reflect.ValueOf(k.Value), elem)
	}
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "expected a single value, got %s", kindName(n))
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := parseDuration(n)
		if err != nil {
			d.fail(path, n.Line, "%v", err)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(n.Value)
	case v.Kind() == reflect.Int:
		if n.Tag != "!!int" {
			d.fail(path, n.Line, "expected a whole number, got %q", n.Value)
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			d.fail(path, n.Line, "number %q out of range", n.Value)
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Bool:
		if n.Tag != "!!bool" {
			d.fail(path, n.Line, "expected true or false, got %q", n.Value)
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	default:
		d.fail(path, n.Line, "unsupported type %s", v.Type())
	}
}

// parseDuration accepts Go duration syntax, and a plain 0.
func parseDuration(n *yaml.Node) (time.Duration, error) {
	if n.Tag == "!!int" {
		if n.Value == "0" {
			return 0, nil
		}
		return 0, fmt.Errorf("invalid duration %s: give a unit, e.g. %ss", n.Value, n.Value)
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", n.Value)
	}
	if dur < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", n.Value)
	}
	return dur, nil
}

// duplicate reports (as an error) a key that appeared before in its mapping.
func (d *decoder) duplicate(path string, k *yaml.Node) bool {
	first, dup := d.lines[path]
	if dup {
		d.fail(path, k.Line, "duplicate key (first on line %d)", first)
	}
	return dup
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
