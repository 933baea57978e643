package rules

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadError is one mistake in a rule or test file, at its position.
type LoadError struct {
	File string
	Line int // 1-based
	Col  int // 1-based, in characters
	Msg  string
}

// Error formats the error as "file:line:col: message", the form editors and
// CI annotations understand.
func (e *LoadError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// ErrorList is every mistake found in a directory, sorted by position. Its
// Error is one "file:line:col: message" line per mistake.
type ErrorList []*LoadError

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Errors returns the list as plain errors.
func (l ErrorList) Errors() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *LoadError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// errs collects positioned errors while one directory is read.
type errs struct {
	list ErrorList
}

func (e *errs) at(file string, line, col int, format string, args ...any) {
	e.list = append(e.list, &LoadError{File: file, Line: max(line, 1), Col: max(col, 1), Msg: fmt.Sprintf(format, args...)})
}

func (e *errs) node(file string, n *yaml.Node, format string, args ...any) {
	e.at(file, n.Line, n.Column, format, args...)
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	e.list.sort()
	return e.list
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax turns a YAML parser error ("yaml: line 3: did not find expected
// key") into a positioned error; the parser gives no column.
func (e *errs) syntax(file string, err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	e.at(file, line, 1, "invalid YAML: %s", msg)
}
