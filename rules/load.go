package rules

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/rapportsync/rapport/matching"
)

// maxFileSize bounds one rule or test file; rule sets are small and a huge
// file is a mistake (or an attack on a shared rules directory).
const maxFileSize = 1 << 20

// ErrNoRuleFiles is returned by Load for a directory without rule files.
var ErrNoRuleFiles = errors.New("no rule files")

// ruleFile is one file read from a rules directory.
type ruleFile struct {
	name string // base name, part of the content hash
	path string // as shown in errors
	data []byte
}

// Load reads every rule file of dir — *.yaml and *.yml, except the test
// files *_test.yaml and *_test.yml, and hidden files — in name order, and
// compiles the rules. Mistakes are returned together as an
// ErrorList of "file:line:col: message" errors; other failures (an unreadable
// directory, no rule files) as plain errors.
func Load(dir string) (*Set, error) {
	files, err := readDir(dir, isRuleFile)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load rules from %s: %w (*.yaml or *.yml other than *_test.yaml and *_test.yml)", dir, ErrNoRuleFiles)
	}
	s, err := build(files)
	if err != nil {
		return nil, err
	}
	s.version = contentHash(files)
	if c := gitCommit(dir); c != "" {
		s.version += "+git:" + c[:min(12, len(c))]
	}
	return s, nil
}

//go:embed default.yaml
var defaultYAML []byte

var defaultSet = sync.OnceValue(func() *Set {
	files := []ruleFile{{name: "default.yaml", path: "default.yaml", data: defaultYAML}}
	s, err := build(files)
	if err != nil {
		// default.yaml is compiled by the package's tests; this cannot happen
		// in a released binary.
		panic("rules: built-in default.yaml: " + err.Error())
	}
	s.version = contentHash(files) + "+builtin"
	return s
})

// Default returns the built-in rules (default.yaml in this package): skip
// cancelled events never logged, pass cancellations of logged meetings
// through, skip private, all-day, declined-by-owner and non-default event
// types, log a meeting with an external attendee of a CRM company, skip the
// rest.
func Default() *Set { return defaultSet() }

// DefaultYAML returns the built-in rule file (default.yaml in this
// package) as it is compiled into Default, comments included: what
// `rapport rules show-default` prints, and a starting point for a rules
// directory of one's own. A directory holding only this file decides exactly
// as the built-in rules do (its version differs: it is a content hash with
// no "+builtin"). docs/rules.md describes each rule and which built-in
// behaviours hold whatever the rules say. The caller may modify the slice.
func DefaultYAML() []byte { return slices.Clone(defaultYAML) }

// isRuleFile and isTestFile select files by extension, .yaml or .yml in any
// case: a file a user named rules.yml must not be ignored while the check
// reports the rest as fine.
func isRuleFile(name string) bool { return hasYAMLExt(name) && !isTestFile(name) }

func isTestFile(name string) bool {
	base, ok := cutYAMLExt(name)
	return ok && strings.HasSuffix(strings.ToLower(base), "_test")
}

func hasYAMLExt(name string) bool {
	_, ok := cutYAMLExt(name)
	return ok
}

// cutYAMLExt returns name without its .yaml or .yml extension.
func cutYAMLExt(name string) (string, bool) {
	ext := filepath.Ext(name)
	switch strings.ToLower(ext) {
	case ".yaml", ".yml":
		return strings.TrimSuffix(name, ext), true
	}
	return name, false
}

// readDir reads the regular files of dir selected by keep, in name order.
func readDir(dir string, keep func(string) bool) ([]ruleFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read rules directory: %w", err)
	}
	var files []ruleFile
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !keep(name) {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // follows symlinks
		if err != nil {
			return nil, fmt.Errorf("read rules directory: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxFileSize {
			return nil, fmt.Errorf("read %s: %d bytes is over the limit of %d", path, fi.Size(), maxFileSize)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read rules directory: %w", err)
		}
		files = append(files, ruleFile{name: name, path: path, data: data})
	}
	return files, nil
}

func contentHash(files []ruleFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.data))
		h.Write(f.data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:12]
}

// builder accumulates the rule files of one directory into a Set.
type builder struct {
	e       errs
	rules   []Rule
	names   map[string]string // rule name → where it was first defined
	def     Action
	defAt   string
	freeAdd []string
	freeDel []string
	blocked []string
	owners  map[string]Owner
	ownerAt map[string]string
	// crm_properties, and the expressions whose reads of them are checked
	// once every file is read.
	crmCompanies []string
	crmContacts  []string
	pending      []pendingWhen
}

// The keys and values a rule file may hold.
var (
	topLevelKeys = []string{"version", "rules", "default", "free_mail", "blocked_domains", "ownership", "crm_properties"}
	ruleKeys     = []string{"name", "when", "action", "reason"}
	freeMailKeys = []string{"add", "remove"}
	actionNames  = []string{string(ActionLog), string(ActionSkip)}
	ownerNames   = []string{string(OwnerCalendar), string(OwnerCRM)}
)

func build(files []ruleFile) (*Set, error) {
	b := &builder{
		names:   make(map[string]string),
		owners:  make(map[string]Owner),
		ownerAt: make(map[string]string),
	}
	for _, f := range files {
		b.file(f)
	}
	readsCompanies, readsContacts := b.checkProperties()
	if err := b.e.err(); err != nil {
		return nil, err
	}
	s := &Set{
		rules:          b.rules,
		def:            cmp.Or(b.def, ActionSkip),
		blocked:        dedupe(b.blocked),
		freeMail:       matching.DefaultFreeMail().With(dedupe(b.freeAdd), dedupe(b.freeDel)),
		freeAdd:        dedupe(b.freeAdd),
		freeDel:        dedupe(b.freeDel),
		crmCompanies:   dedupe(b.crmCompanies),
		crmContacts:    dedupe(b.crmContacts),
		readsCompanies: readsCompanies,
		readsContacts:  readsContacts,
	}
	if len(b.owners) > 0 {
		s.ownership.m = maps.Clone(defaultOwnership)
		maps.Copy(s.ownership.m, b.owners)
	}
	s.vms.New = newVM
	return s, nil
}

func dedupe(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func where(file string, n *yaml.Node) string {
	return fmt.Sprintf("%s:%d:%d", file, n.Line, n.Column)
}

func (b *builder) file(f ruleFile) {
	w := &walker{file: f.path, e: &b.e}
	root := w.document(f.data)
	if root == nil {
		return
	}
	src := newSourceLines(f.data)
	pairs, _ := w.mapping(root, "a rule file", topLevelKeys)
	hasVersion := false
	for _, p := range pairs {
		switch p.key.Value {
		case "version":
			hasVersion = true
			if v, err := strconv.Atoi(p.val.Value); p.val.Kind != yaml.ScalarNode || p.val.ShortTag() != "!!int" || err != nil || v != 1 {
				w.fail(p.val, "version must be 1, got %s", kindName(p.val))
			}
		case "rules":
			items, ok := w.seq(p.val, "rules")
			if ok {
				for _, it := range items {
					b.rule(w, src, it)
				}
			}
		case "default":
			if a, ok := w.oneOf(p.val, "default", actionNames...); ok {
				if b.defAt != "" {
					w.fail(p.val, "default is already set at %s", b.defAt)
				} else {
					b.def, b.defAt = Action(a), where(f.path, p.val)
				}
			}
		case "free_mail":
			fm, _ := w.mapping(p.val, "free_mail", freeMailKeys)
			for _, q := range fm {
				d := b.domains(w, q.val, "free_mail."+q.key.Value)
				if q.key.Value == "add" {
					b.freeAdd = append(b.freeAdd, d...)
				} else {
					b.freeDel = append(b.freeDel, d...)
				}
			}
		case "blocked_domains":
			b.blocked = append(b.blocked, b.domains(w, p.val, "blocked_domains")...)
		case "ownership":
			b.ownership(w, p.val)
		case "crm_properties":
			b.crmProperties(w, p.val)
		}
	}
	if root.Kind == yaml.MappingNode && !hasVersion {
		w.fail(root, "missing version (want version: 1)")
	}
}

func (b *builder) rule(w *walker, src *sourceLines, n *yaml.Node) {
	pairs, _ := w.mapping(n, "a rule", ruleKeys)
	if n.Kind != yaml.MappingNode {
		return
	}
	var nameN, whenN, actionN, reasonN *yaml.Node
	for _, p := range pairs {
		switch p.key.Value {
		case "name":
			nameN = p.val
		case "when":
			whenN = p.val
		case "action":
			actionN = p.val
		case "reason":
			reasonN = p.val
		}
	}
	for _, m := range []struct {
		n   *yaml.Node
		key string
	}{{nameN, "name"}, {whenN, "when"}, {actionN, "action"}} {
		if m.n == nil {
			w.fail(n, "rule is missing %q", m.key)
		}
	}
	r := Rule{File: w.file, Line: n.Line, Col: n.Column}
	ok := true
	if nameN != nil {
		r.Line, r.Col = nameN.Line, nameN.Column
		ok = b.ruleName(w, nameN, &r.Name) && ok
	}
	if whenN != nil {
		ok = b.when(w, src, whenN, &r) && ok
	}
	if actionN != nil {
		a, ok1 := w.oneOf(actionN, "action", actionNames...)
		r.Action = Action(a)
		ok = ok1 && ok
	}
	if reasonN != nil {
		var ok1 bool
		r.Reason, ok1 = w.str(reasonN, "reason")
		ok = ok1 && ok
	}
	if ok && nameN != nil && whenN != nil && actionN != nil {
		b.rules = append(b.rules, r)
	}
}

func (b *builder) ruleName(w *walker, n *yaml.Node, out *string) bool {
	name, ok := w.str(n, "name")
	if !ok {
		return false
	}
	switch {
	case strings.TrimSpace(name) == "":
		w.fail(n, "name must not be empty")
		return false
	case strings.TrimSpace(name) != name || strings.IndexFunc(name, unicode.IsControl) >= 0:
		w.fail(n, "name %q must not have leading or trailing spaces or control characters", name)
		return false
	case len(name) > 200:
		w.fail(n, "name is longer than 200 bytes")
		return false
	case name == DefaultRuleName:
		w.fail(n, "name %q is reserved for decisions no rule matched", name)
		return false
	}
	if first, dup := b.names[name]; dup {
		w.fail(n, "duplicate rule name %q (first defined at %s)", name, first)
		return false
	}
	b.names[name] = where(w.file, n)
	*out = name
	return true
}

func (b *builder) when(w *walker, src *sourceLines, n *yaml.Node, r *Rule) bool {
	text, ok := w.str(n, "when")
	if !ok {
		return false
	}
	if strings.TrimSpace(text) == "" {
		w.fail(n, "when must not be empty")
		return false
	}
	prog, err := compile(text)
	var reads []propRead
	if err == nil {
		reads, err = propertyReads(text)
	}
	if err != nil {
		msg, off := exprError(err)
		line, col := src.scalarPos(n, max(off, 0))
		b.e.at(w.file, line, col, "when: %s", msg)
		return false
	}
	if len(reads) > 0 {
		b.pending = append(b.pending, pendingWhen{file: w.file, src: src, node: n, reads: reads})
	}
	r.When, r.program = text, prog
	return true
}

func (b *builder) domains(w *walker, n *yaml.Node, what string) []string {
	items, ok := w.seq(n, what)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := w.str(it, what+" entry")
		if !ok {
			continue
		}
		d, err := matching.NormalizeDomain(s)
		if err != nil {
			w.fail(it, "%s: %q is not a domain name (want e.g. example.com)", what, s)
			continue
		}
		out = append(out, d)
	}
	return out
}

func (b *builder) ownership(w *walker, n *yaml.Node) {
	pairs, _ := w.mapping(n, "ownership", nil)
	for _, p := range pairs {
		prop := p.key.Value
		if _, known := defaultOwnership[prop]; !known {
			w.fail(p.key, "unknown meeting property %q in ownership (Rapport writes %s)", prop, strings.Join(writtenProperties(), ", "))
			continue
		}
		o, ok := w.oneOf(p.val, "owner of "+prop, ownerNames...)
		if !ok {
			continue
		}
		if at, dup := b.ownerAt[prop]; dup {
			w.fail(p.key, "ownership of %q is already set at %s", prop, at)
			continue
		}
		b.owners[prop] = Owner(o)
		b.ownerAt[prop] = where(w.file, p.key)
	}
}
