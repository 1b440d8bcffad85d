package remote

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOptionsDocDefaults checks that each Options field's doc ends with the
// default that withDefaults really applies, and prints the defaults.
func TestOptionsDocDefaults(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "options.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // field -> default in its doc
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Options" {
			return true
		}
		for _, field := range ts.Type.(*ast.StructType).Fields.List {
			doc := strings.TrimSpace(field.Doc.Text())
			if m := regexp.MustCompile(`Default: ([^ ]+?)(?: \(.*\))?\.$`).FindStringSubmatch(doc); m != nil {
				documented[field.Names[0].Name] = m[1]
			}
		}
		return false
	})
	d := reflect.ValueOf(Options{}.withDefaults())
	for name, want := range documented {
		var got string
		switch v := d.FieldByName(name).Interface().(type) {
		case time.Duration:
			got = v.String()
		case Codec:
			got = strings.TrimPrefix(fmt.Sprintf("%T{}", v), "remote.")
		default:
			got = fmt.Sprint(v)
		}
		if fv := d.FieldByName(name); fv.Kind() == reflect.Func && fv.IsNil() {
			got = "nil"
		}
		t.Logf("Options.%s default: %s", name, got)
		if got != want {
			t.Errorf("Options.%s: doc says Default: %s, withDefaults gives %s", name, want, got)
		}
	}
	for _, name := range []string{"Codec", "Timeout", "MaxKeySize", "MaxValueSize", "CompressThreshold"} {
		if _, ok := documented[name]; !ok {
			t.Errorf("Options.%s: doc does not end with its default", name)
		}
	}
}
