package config

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// docPath is the configuration reference, relative to this package.
const docPath = "../docs/configuration.md"

// docKey is one row of a key table in the reference: | `path` | type | ...
type docKey struct {
	path, typ string
	line      int
}

// yamlKeys walks t by its yaml tags and returns every key path, in the
// reference's notation (listeners[].routes[].match.sni, pools.<name>.policy),
// with the type name the reference gives it.
func yamlKeys(t reflect.Type, prefix string, out map[string]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		path := join(prefix, tag)
		out[path] = typeName(f.Type)
		switch ft := deref(f.Type); {
		case ft.Kind() == reflect.Struct:
			yamlKeys(ft, path, out)
		case ft.Kind() == reflect.Slice && deref(ft.Elem()).Kind() == reflect.Struct:
			yamlKeys(deref(ft.Elem()), path+"[]", out)
		case ft.Kind() == reflect.Map:
			out[path+".<name>"] = typeName(ft.Elem())
			if e := deref(ft.Elem()); e.Kind() == reflect.Struct {
				yamlKeys(e, path+".<name>", out)
			}
		}
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// typeName is the type column of the reference for a Go type.
func typeName(t reflect.Type) string {
	t = deref(t)
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Int:
		return "integer"
	case t.Kind() == reflect.Bool:
		return "bool"
	case t.Kind() == reflect.Struct:
		return "mapping"
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Elem()) + "s"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	}
	return t.String()
}

var keyRow = regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|\\s*([^|]*?)\\s*\\|")

// docKeys reads the key rows of the reference: table rows whose first cell
// is one backquoted key path.
func docKeys(t *testing.T) []docKey {
	f, err := os.Open(docPath)
	if err != nil {
		t.Fatalf("open the configuration reference: %v", err)
	}
	defer f.Close()
	var keys []docKey
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if m := keyRow.FindStringSubmatch(sc.Text()); m != nil {
			keys = append(keys, docKey{path: m[1], typ: m[2], line: n})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", docPath, err)
	}
	return keys
}

// TestReferenceNamesEveryKey fails when a YAML key of Config has no row in
// docs/configuration.md, when a row names a key that does not exist or
// gives it the wrong type, or when a key has two rows.
func TestReferenceNamesEveryKey(t *testing.T) {
	want := map[string]string{}
	yamlKeys(reflect.TypeOf(Config{}), "", want)
	seen := map[string]int{}
	for _, k := range docKeys(t) {
		typ, ok := want[k.path]
		switch {
		case !ok:
			t.Errorf("%s:%d: `%s` is not a key of the configuration (config/types.go); remove the row or fix the path", docPath, k.line, k.path)
		case seen[k.path] > 0:
			t.Errorf("%s:%d: `%s` is documented twice (first on line %d)", docPath, k.line, k.path, seen[k.path])
		case k.typ != typ:
			t.Errorf("%s:%d: `%s` has type %q in the reference, want %q", docPath, k.line, k.path, k.typ, typ)
		}
		if seen[k.path] == 0 {
			seen[k.path] = k.line
		}
	}
	var missing []string
	for path := range want {
		if seen[path] == 0 {
			missing = append(missing, path)
		}
	}
	slices.Sort(missing)
	for _, path := range missing {
		t.Errorf("%s: no row for `%s` (type %s): add one to its section's table", docPath, path, want[path])
	}
	if len(want) < 60 {
		t.Errorf("found only %d keys in Config: the walk lost its way", len(want))
	}
}

// TestReferenceExampleIsValid parses the annotated example at the top of
// the reference, so it stays a file l4edge accepts.
func TestReferenceExampleIsValid(t *testing.T) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	_, rest, ok := strings.Cut(string(data), "```yaml\n")
	example, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatalf("%s has no ```yaml example block", docPath)
	}
	cfg, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("the example in %s does not validate:\n%v", docPath, err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("the example in %s draws warnings: %v", docPath, cfg.Warnings)
	}
}
