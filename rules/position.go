package rules

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// sourceLines is a file split into lines, converted to runes on demand
// (yaml.Node columns and expr offsets count characters, not bytes).
type sourceLines struct {
	text  []string
	runes map[int][]rune
}

func newSourceLines(data []byte) *sourceLines {
	text := strings.Split(string(data), "\n")
	for i, l := range text {
		text[i] = strings.TrimSuffix(l, "\r")
	}
	return &sourceLines{text: text, runes: make(map[int][]rune)}
}

func (s *sourceLines) line(i int) []rune {
	if i < 0 || i >= len(s.text) {
		return nil
	}
	r, ok := s.runes[i]
	if !ok {
		r = []rune(s.text[i])
		s.runes[i] = r
	}
	return r
}

// scalarPos returns the 1-based file line and column of the character at
// offset off (in characters) of the scalar n's value. It follows the value
// through the source: quotes and escapes, line folding of plain and quoted
// scalars, and the indentation of literal (|) and folded (>) blocks.
func (s *sourceLines) scalarPos(n *yaml.Node, off int) (line, col int) {
	block := n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	li, ci := n.Line-1, n.Column-1
	indent := 0
	switch {
	case block:
		// The node points at the | or > indicator; content starts on the
		// next line, indented like its first non-blank line.
		li++
		indent = -1
		for j := li; j < len(s.text); j++ {
			l := s.line(j)
			if k := leadingSpaces(l); k < len(l) {
				indent = k
				break
			}
		}
		if indent < 0 {
			return li + 1, 1
		}
		ci = indent
	case n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0:
		ci++
	}
	value := []rune(n.Value)
	for vi := 0; vi < off && vi < len(value); {
		if li >= len(s.text) {
			break
		}
		l := s.line(li)
		if ci >= len(l) {
			// End of a source line: the value holds a line break or, once
			// folded, a space for it (or nothing, for a folded blank line).
			li++
			next := s.line(li)
			if block {
				ci = min(indent, len(next))
			} else {
				ci = leadingSpaces(next)
			}
			if value[vi] == '\n' || value[vi] == ' ' {
				vi++
			}
			continue
		}
		r := l[ci]
		switch {
		case value[vi] == r:
			vi++
			ci++
		case n.Style&yaml.DoubleQuotedStyle != 0 && r == '\\':
			ci += escapeLen(l, ci)
			vi++
		case n.Style&yaml.SingleQuotedStyle != 0 && r == '\'':
			ci += 2 // '' stands for '
			vi++
		case !block && (r == ' ' || r == '\t'):
			ci++ // spaces folded away before a line break
		default:
			vi++
			ci++
		}
	}
	return li + 1, ci + 1
}

func leadingSpaces(l []rune) int {
	k := 0
	for k < len(l) && (l[k] == ' ' || l[k] == '\t') {
		k++
	}
	return k
}

// escapeLen is the length in source characters of the double-quoted escape
// at l[i] (a backslash).
func escapeLen(l []rune, i int) int {
	if i+1 >= len(l) {
		return 1
	}
	switch l[i+1] {
	case 'x':
		return 4
	case 'u':
		return 6
	case 'U':
		return 10
	}
	return 2
}
