package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// walker reads one YAML file node by node, so every mistake keeps its
// position (strict struct decoding loses positions and, inside custom
// unmarshalers, its strictness).
type walker struct {
	file string
	e    *errs
}

func (w *walker) fail(n *yaml.Node, format string, args ...any) {
	w.e.node(w.file, n, format, args...)
}

// document parses data as exactly one YAML document and returns its root
// node, or nil after recording why it cannot.
func (w *walker) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			w.e.at(w.file, 1, 1, "empty file")
		} else {
			w.e.syntax(w.file, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		w.e.syntax(w.file, err)
		return nil
	default:
		w.fail(&next, "a file holds one YAML document; found another one here")
		return nil
	}
	if len(doc.Content) == 0 {
		w.e.at(w.file, 1, 1, "empty file")
		return nil
	}
	root := doc.Content[0]
	if !w.plain(root) {
		return nil
	}
	return root
}

// plain rejects aliases and custom tags anywhere in the tree: aliases would
// let a small file expand without bound, and tags mean nothing here.
func (w *walker) plain(n *yaml.Node) bool {
	ok := true
	if n.Kind == yaml.AliasNode {
		w.fail(n, "aliases (*%s) are not supported", n.Value)
		return false
	}
	if t := n.ShortTag(); !strings.HasPrefix(t, "!!") {
		w.fail(n, "tag %s is not supported", t)
		ok = false
	}
	for _, c := range n.Content {
		ok = w.plain(c) && ok
	}
	return ok
}

type pair struct {
	key *yaml.Node
	val *yaml.Node
}

// mapping checks that n is a mapping with string keys, each one at most
// once and, when allowed is not nil, one of allowed.
func (w *walker) mapping(n *yaml.Node, what string, allowed []string) ([]pair, bool) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, "%s must be a mapping, got %s", what, kindName(n))
		return nil, false
	}
	ok := true
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	pairs := make([]pair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			w.fail(k, "keys of %s must be plain strings", what)
			ok = false
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k, "duplicate key %q in %s (first at line %d)", k.Value, what, first.Line)
			ok = false
			continue
		}
		seen[k.Value] = k
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			w.fail(k, "unknown key %q in %s (want %s)", k.Value, what, strings.Join(allowed, ", "))
			ok = false
			continue
		}
		pairs = append(pairs, pair{k, v})
	}
	return pairs, ok
}

// str returns the text of a non-null scalar.
func (w *walker) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		w.fail(n, "%s must be a string, got %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (w *walker) boolean(n *yaml.Node, what string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		w.fail(n, "%s must be true or false, got %s", what, kindName(n))
		return false, false
	}
	return b, true
}

func (w *walker) seq(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		w.fail(n, "%s must be a list, got %s", what, kindName(n))
		return nil, false
	}
	return n.Content, true
}

// strs reads a list of strings.
func (w *walker) strs(n *yaml.Node, what string) ([]string, bool) {
	items, ok := w.seq(n, what)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok1 := w.str(it, what+" entry")
		ok = ok && ok1
		out = append(out, s)
	}
	return out, ok
}

// oneOf reads a string that must be one of the given values.
func (w *walker) oneOf(n *yaml.Node, what string, values ...string) (string, bool) {
	s, ok := w.str(n, what)
	if !ok {
		return "", false
	}
	if !slices.Contains(values, s) {
		w.fail(n, "%s must be %s, got %q", what, orList(values), s)
		return "", false
	}
	return s, true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!bool", "!!int", "!!float":
		return n.Value
	}
	return fmt.Sprintf("the string %q", n.Value)
}

func orList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = fmt.Sprintf("%q", v)
	}
	if len(q) <= 2 {
		return strings.Join(q, " or ")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
