package archtest

import (
	"encoding/json"
	"go/importer"
	"go/token"
	"go/types"
	"os/exec"
	"strings"
	"testing"
)

// TestPublicAPIHasNoInternalTypes type-checks every package of the module
// outside internal/ and fails if an exported name's type, signature, field
// or method mentions a type of an internal package: code outside the module
// cannot name such a type, so it could not implement an interface that
// returns one, nor keep the value in a typed variable.
func TestPublicAPIHasNoInternalTypes(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	imp := importer.ForCompiler(token.NewFileSet(), "source", nil)
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Name       string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if isInternal(p.ImportPath) || p.Name == "main" {
			continue
		}
		pkg, err := imp.Import(p.ImportPath)
		if err != nil {
			t.Fatalf("type-check %s: %v", p.ImportPath, err)
		}
		checked++
		for _, bad := range internalMentions(pkg) {
			t.Errorf("%s: %s", p.ImportPath, bad)
		}
	}
	if checked < 5 {
		t.Errorf("checked %d packages, want at least tiered, local, remote, invalidation and metrics", checked)
	}
}

func isInternal(path string) bool {
	return strings.Contains(path+"/", "/internal/")
}

// internalMentions lists, for each exported name of pkg, where its API
// mentions a type from an internal package.
func internalMentions(pkg *types.Package) []string {
	var found []string
	w := walker{report: func(where string, n *types.TypeName) {
		found = append(found, where+" mentions "+n.Pkg().Path()+"."+n.Name())
	}}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		switch obj := obj.(type) {
		case *types.TypeName:
			w.typeDecl(name, obj)
		default:
			w.typ(name, obj.Type())
		}
	}
	return found
}

// walker visits the parts of types that a user of the package can reach.
type walker struct {
	report func(where string, n *types.TypeName)
	seen   map[types.Type]bool
}

// typeDecl checks a declared type: what it is an alias of or defined as,
// and its exported methods.
func (w *walker) typeDecl(where string, obj *types.TypeName) {
	if obj.IsAlias() {
		w.typ(where, obj.Type())
		return
	}
	named, ok := obj.Type().(*types.Named)
	if !ok {
		return
	}
	if tp := named.TypeParams(); tp != nil {
		for i := range tp.Len() {
			w.typ(where+" type parameter", tp.At(i).Constraint())
		}
	}
	w.typ(where, named.Underlying())
	w.methods(where, named)
}

func (w *walker) methods(where string, t types.Type) {
	ms := types.NewMethodSet(types.NewPointer(t))
	for i := range ms.Len() {
		if m := ms.At(i).Obj(); m.Exported() {
			w.typ(where+"."+m.Name(), m.Type())
		}
	}
}

// typ reports every internal named type reachable through t's exported
// surface. A named type of another package is checked by name only (its
// own package answers for its insides); an unexported named type of ours is
// looked into, since its exported fields and methods are reachable.
func (w *walker) typ(where string, t types.Type) {
	if w.seen == nil {
		w.seen = map[types.Type]bool{}
	}
	if t == nil || w.seen[t] {
		return
	}
	w.seen[t] = true
	defer delete(w.seen, t) // report each path, not each type once
	switch t := t.(type) {
	case *types.Alias:
		w.typ(where, types.Unalias(t))
	case *types.Named:
		obj := t.Obj()
		if obj.Pkg() != nil && isInternal(obj.Pkg().Path()) {
			w.report(where, obj)
			return
		}
		if args := t.TypeArgs(); args != nil {
			for i := range args.Len() {
				w.typ(where, args.At(i))
			}
		}
		if !obj.Exported() && obj.Pkg() != nil && strings.HasPrefix(obj.Pkg().Path(), mod) {
			w.typ(where, t.Underlying())
			w.methods(where, t)
		}
	case *types.Pointer:
		w.typ(where, t.Elem())
	case *types.Slice:
		w.typ(where, t.Elem())
	case *types.Array:
		w.typ(where, t.Elem())
	case *types.Map:
		w.typ(where, t.Key())
		w.typ(where, t.Elem())
	case *types.Chan:
		w.typ(where, t.Elem())
	case *types.Signature:
		for i := range t.Params().Len() {
			w.typ(where+" parameter", t.Params().At(i).Type())
		}
		for i := range t.Results().Len() {
			w.typ(where+" result", t.Results().At(i).Type())
		}
	case *types.Struct:
		for i := range t.NumFields() {
			if f := t.Field(i); f.Exported() || f.Embedded() {
				w.typ(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for i := range t.NumMethods() {
			if m := t.Method(i); m.Exported() {
				w.typ(where+"."+m.Name(), m.Type())
			}
		}
		for i := range t.NumEmbeddeds() {
			w.typ(where, t.EmbeddedType(i))
		}
	case *types.Union:
		for i := range t.Len() {
			w.typ(where, t.Term(i).Type())
		}
	case *types.TypeParam:
		w.typ(where, t.Constraint())
	}
}
