package rules

import (
	"cmp"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"go.yaml.in/yaml/v3"
)

// The two kinds of CRM record whose properties a rule may read, as the
// crm_properties section names them.
const (
	kindCompanies = "companies"
	kindContacts  = "contacts"
)

// companyProps and contactProps are the environment's `properties` of a
// company and of a contact: HubSpot's string values by property name. They
// are distinct types so that the loader can tell, from the checked
// expression, which record a property read is on. A name with no value
// reads as "" (expr returns the zero value of a missing map key), which is
// also what HubSpot returns for an unset property.
type (
	companyProps map[string]string
	contactProps map[string]string
)

var (
	companyPropsType = reflect.TypeOf(companyProps(nil))
	contactPropsType = reflect.TypeOf(contactProps(nil))
)

func propsKind(t reflect.Type) string {
	switch t {
	case companyPropsType:
		return kindCompanies
	case contactPropsType:
		return kindContacts
	}
	return ""
}

// recordName is how messages speak of one record of a kind.
func recordName(kind string) string {
	if kind == kindContacts {
		return "contact"
	}
	return "company"
}

// propRead is one use of a properties map in an expression.
type propRead struct {
	kind string // kindCompanies or kindContacts
	// name is the property read; "" when the map is indexed by a computed
	// key or used whole, which the loader refuses: reads are checked by
	// name.
	name  string
	whole bool
	// off is the character offset in the expression of the property name
	// (or of the key, or of "properties" for a whole map).
	off int
}

// propertyReads parses and checks src like compile does and returns every
// use of a properties map in it. The checked tree carries the type of
// every node, so `.properties` is recognised however it is reached:
// company.properties, companies[0].properties, map(external,
// .company.properties.x), a variable holding a company…
func propertyReads(src string) ([]propRead, error) {
	cfg := conf.CreateNew()
	for _, op := range compileOptions {
		op(cfg)
	}
	cfg.Check()
	tree, err := checker.ParseCheck(src, cfg)
	if err != nil {
		return nil, err
	}
	v := &propVisitor{consumed: make(map[ast.Node]bool)}
	ast.Walk(&tree.Node, v)
	for _, m := range v.maps {
		if !v.consumed[m] {
			v.reads = append(v.reads, propRead{kind: propsKind(m.Type()), whole: true, off: m.Property.Location().From})
		}
	}
	return v.reads, nil
}

type propVisitor struct {
	reads []propRead
	// maps are the nodes that yield a properties map (x.properties);
	// consumed are those a property is read from by name.
	maps     []*ast.MemberNode
	consumed map[ast.Node]bool
}

// Visit records member accesses on a properties map (reads) and member
// accesses that yield one (x.properties). Any other use of a properties
// map — get(), in, a variable, the map itself — leaves an x.properties
// unread, which propertyReads reports as a whole-map use.
func (v *propVisitor) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok {
		return
	}
	if k := propsKind(m.Node.Type()); k != "" {
		v.read(k, m.Node, m.Property)
	}
	if propsKind(m.Type()) != "" {
		v.maps = append(v.maps, m)
	}
}

// read records the read of key from the properties map node.
func (v *propVisitor) read(kind string, node ast.Node, key ast.Node) {
	v.consumed[node] = true
	r := propRead{kind: kind, off: key.Location().From}
	if s, ok := key.(*ast.StringNode); ok {
		r.name = s.Value
	} else {
		// A computed key's own location is that of its last part; the
		// start of the key is more helpful.
		r.off = startOf(key)
	}
	v.reads = append(v.reads, r)
}

// startOf returns the smallest offset of any node under n.
func startOf(n ast.Node) int {
	f := &firstOffset{min: n.Location().From}
	ast.Walk(&n, f)
	return f.min
}

type firstOffset struct{ min int }

func (f *firstOffset) Visit(n *ast.Node) {
	if from := (*n).Location().From; from >= 0 && from < f.min {
		f.min = from
	}
}

// propNameRE is the form of a HubSpot property's internal name.
var propNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// maxPropName bounds a property name; HubSpot's are much shorter.
const maxPropName = 100

// crmProperties reads a crm_properties section.
func (b *builder) crmProperties(w *walker, n *yaml.Node) {
	pairs, _ := w.mapping(n, "crm_properties", []string{kindCompanies, kindContacts})
	for _, p := range pairs {
		what := "crm_properties." + p.key.Value
		items, ok := w.seq(p.val, what)
		if !ok {
			continue
		}
		for _, it := range items {
			name, ok := w.str(it, what+" entry")
			if !ok {
				continue
			}
			if len(name) > maxPropName || !propNameRE.MatchString(name) {
				w.fail(it, "%s: %q is not a HubSpot property's internal name (lower-case letters, digits and underscores, starting with a letter, e.g. lifecyclestage)", what, name)
				continue
			}
			if p.key.Value == kindCompanies {
				b.crmCompanies = append(b.crmCompanies, name)
			} else {
				b.crmContacts = append(b.crmContacts, name)
			}
		}
	}
}

// pendingWhen is a compiled `when` whose property reads are checked once
// every file is read: crm_properties may be declared in any of them.
type pendingWhen struct {
	file  string
	src   *sourceLines
	node  *yaml.Node
	reads []propRead
}

// checkProperties checks every property read against the declared names
// and notes which kinds the rules read.
func (b *builder) checkProperties() (readsCompanies, readsContacts bool) {
	declared := map[string][]string{kindCompanies: dedupe(b.crmCompanies), kindContacts: dedupe(b.crmContacts)}
	for _, p := range b.pending {
		for _, r := range p.reads {
			msg := propertyError(r, declared[r.kind])
			if msg != "" {
				line, col := p.src.scalarPos(p.node, max(r.off, 0))
				b.e.at(p.file, line, col, "when: %s", msg)
				continue
			}
			if r.kind == kindCompanies {
				readsCompanies = true
			} else {
				readsContacts = true
			}
		}
	}
	return readsCompanies, readsContacts
}

// propertyError says what is wrong with a read, "" when nothing is.
func propertyError(r propRead, declared []string) string {
	rec := recordName(r.kind)
	example := rec + ".properties." + cmp.Or(first(declared), "lifecyclestage")
	switch {
	case r.whole:
		// get() included: it returns nil, not "", for an unset property.
		return fmt.Sprintf("%s.properties is read one property at a time, by name (%s)", rec, example)
	case r.name == "":
		return fmt.Sprintf("%s properties are read by name (%s), not with a computed key", rec, example)
	case slices.Contains(declared, r.name):
		return ""
	}
	msg := fmt.Sprintf("%s property %q is not declared under crm_properties.%s", rec, r.name, r.kind)
	switch near := nearest(r.name, declared); {
	case near != "":
		return msg + fmt.Sprintf(" (did you mean %q?)", near)
	case len(declared) > 0:
		return msg + " (declared: " + strings.Join(declared, ", ") + ")"
	}
	return msg + fmt.Sprintf("; declare it in a rule file: crm_properties: {%s: [%s]}", r.kind, r.name)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// nearest returns the declared name closest to name when it is close
// enough to be a misspelling of it, else "".
func nearest(name string, declared []string) string {
	best, bestD := "", 0
	for _, d := range declared {
		dist := editDistance(name, d)
		if dist <= max(1, len(d)/4) && (best == "" || dist < bestD) {
			best, bestD = d, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two short ASCII names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
