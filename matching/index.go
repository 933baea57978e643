package matching

import (
	"slices"
	"strings"
	"sync"

	"github.com/rapportsync/rapport/crm"
)

// CompanyRef is a CRM company matched by an address.
type CompanyRef struct {
	ID   string
	Name string
	// Domain is the company domain that matched.
	Domain string
}

// Index is one workspace's map from company domains to CRM companies. A domain
// may belong to several companies. Companies are added, replaced and removed
// one at a time; nothing is ever rebuilt. It is safe for concurrent use.
//
// The layout is chosen for a million companies at about 200 bytes each
// (BenchmarkIndexBuild1M): every company is one record in a slice plus one
// string allocation holding its id, name and domains; the map keys (ids and
// domains) are substrings of those strings rather than copies, and a domain
// held by a single company (the common case) maps straight to its record
// without a slice.
type Index struct {
	freeMail *FreeMail

	mu sync.RWMutex
	// companies holds the records; a removed company leaves a zero record
	// whose slot is reused from free.
	companies []company
	free      []uint32
	// ids maps a company id to its slot.
	ids map[string]uint32
	// domains maps a domain to a slot or, with the shared bit set, to an
	// index into shared, holding the slots of a domain several companies
	// have, sorted by company id.
	domains    map[string]uint32
	shared     [][]uint32
	sharedFree []uint32
	// skipped counts the companies with at least one free-mail domain.
	skipped int
}

// sharedBit marks a domains value that indexes shared rather than companies.
const sharedBit = 1 << 31

// company is one record: blob is id, then name, then the domains joined by
// spaces (never part of a normalised domain).
type company struct {
	blob string
	// idLen is the id's length; its top bit says a free-mail domain was
	// skipped.
	idLen   uint32
	nameLen uint32
}

const skippedBit = 1 << 31

func (c *company) id() string {
	return c.blob[:c.idLen&^skippedBit]
}

func (c *company) name() string {
	n := c.idLen &^ skippedBit
	return c.blob[n : n+c.nameLen]
}

func (c *company) domainList() string {
	return c.blob[(c.idLen&^skippedBit)+c.nameLen:]
}

func (c *company) skippedFreeMail() bool {
	return c.idLen&skippedBit != 0
}

// domain returns the company's copy of d, for use as a map key that shares
// the company's memory rather than the caller's. Any occurrence will do: it
// has the same bytes.
func (c *company) domain(d string) string {
	list := c.domainList()
	if i := strings.Index(list, d); i >= 0 {
		return list[i : i+len(d)]
	}
	return d
}

// NewIndex returns an empty index. Company domains that freeMail contains are
// never indexed (HubSpot portals often hold a "gmail.com" company, which would
// otherwise match every Gmail user); such companies are counted by
// FreeMailSkipped. A nil freeMail skips nothing.
func NewIndex(freeMail *FreeMail) *Index {
	return &Index{
		freeMail: freeMail,
		ids:      make(map[string]uint32),
		domains:  make(map[string]uint32),
	}
}

// Upsert adds a company or replaces the domains and name of the one with the
// same id. Its raw domains are normalised with NormalizeCompanyDomains. A
// company without an id is ignored.
func (ix *Index) Upsert(c crm.Company) {
	if c.ID == "" || len(c.ID) >= skippedBit {
		return
	}
	var b strings.Builder
	b.Grow(len(c.ID) + len(c.Name) + 16*len(c.Domains))
	b.WriteString(c.ID)
	b.WriteString(c.Name)
	skipped := false
	first := true
	for _, d := range NormalizeCompanyDomains(c.Domains...) {
		if ix.freeMail.contains(d, registrable(d)) {
			skipped = true
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(d)
	}
	rec := company{blob: b.String(), idLen: uint32(len(c.ID)), nameLen: uint32(len(c.Name))}
	if skipped {
		rec.idLen |= skippedBit
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	slot, ok := ix.ids[c.ID]
	if ok {
		old := &ix.companies[slot]
		if *old == rec {
			return
		}
		ix.unlinkDomains(slot)
		if old.skippedFreeMail() {
			ix.skipped--
		}
		*old = rec
	} else {
		if n := len(ix.free); n > 0 {
			slot = ix.free[n-1]
			ix.free = ix.free[:n-1]
			ix.companies[slot] = rec
		} else {
			slot = uint32(len(ix.companies))
			ix.companies = append(ix.companies, rec)
		}
	}
	// Re-key so the id key shares the new record's memory, not the old one.
	ix.ids[ix.companies[slot].id()] = slot
	if skipped {
		ix.skipped++
	}
	ix.linkDomains(slot)
}

// Remove removes the company with the given id, if present.
func (ix *Index) Remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	slot, ok := ix.ids[id]
	if !ok {
		return
	}
	ix.unlinkDomains(slot)
	if ix.companies[slot].skippedFreeMail() {
		ix.skipped--
	}
	delete(ix.ids, id)
	ix.companies[slot] = company{}
	ix.free = append(ix.free, slot)
}

// linkDomains adds slot to the entries of its company's domains.
func (ix *Index) linkDomains(slot uint32) {
	c := &ix.companies[slot]
	for d := range strings.SplitSeq(c.domainList(), " ") {
		if d == "" {
			continue
		}
		v, ok := ix.domains[d]
		switch {
		case !ok:
			ix.domains[d] = slot
		case v&sharedBit == 0:
			pair := []uint32{v, slot}
			if ix.less(slot, v) {
				pair[0], pair[1] = slot, v
			}
			ix.domains[d] = sharedBit | ix.newShared(pair)
		default:
			list := ix.shared[v&^sharedBit]
			i, _ := slices.BinarySearchFunc(list, slot, func(s, t uint32) int {
				return compareIDs(ix.companies[s].id(), ix.companies[t].id())
			})
			ix.shared[v&^sharedBit] = slices.Insert(list, i, slot)
		}
	}
}

// unlinkDomains removes slot from the entries of its company's domains.
// Where a domain stays with other companies, its key is re-pointed at one of
// theirs so that the removed record's memory is freed.
func (ix *Index) unlinkDomains(slot uint32) {
	c := &ix.companies[slot]
	for d := range strings.SplitSeq(c.domainList(), " ") {
		if d == "" {
			continue
		}
		v, ok := ix.domains[d]
		switch {
		case !ok:
		case v&sharedBit == 0:
			if v == slot {
				delete(ix.domains, d)
			}
		default:
			si := v &^ sharedBit
			list := slices.DeleteFunc(ix.shared[si], func(s uint32) bool { return s == slot })
			var keep uint32
			if len(list) == 1 {
				keep = list[0]
				ix.shared[si] = nil
				ix.sharedFree = append(ix.sharedFree, si)
				v = keep
			} else {
				keep = list[0]
				ix.shared[si] = list
			}
			// Assigning to an existing string key replaces the stored key.
			ix.domains[ix.companies[keep].domain(d)] = v
		}
	}
}

func (ix *Index) newShared(list []uint32) uint32 {
	if n := len(ix.sharedFree); n > 0 {
		i := ix.sharedFree[n-1]
		ix.sharedFree = ix.sharedFree[:n-1]
		ix.shared[i] = list
		return i
	}
	ix.shared = append(ix.shared, list)
	return uint32(len(ix.shared) - 1)
}

func (ix *Index) less(a, b uint32) bool {
	return compareIDs(ix.companies[a].id(), ix.companies[b].id()) < 0
}

// compareIDs orders company ids: decimal ids (HubSpot's) by value, others
// after them as strings.
func compareIDs(a, b string) int {
	da, db := isDecimal(a), isDecimal(b)
	switch {
	case da && db:
		if len(a) != len(b) {
			return len(a) - len(b)
		}
	case da:
		return -1
	case db:
		return 1
	}
	return strings.Compare(a, b)
}

func isDecimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Lookup returns the companies of an address's domain: those on Host if any,
// else those on the nearest parent domain of Host up to Registrable
// ("eu.sales.acme.com" tries sales.acme.com, then acme.com). A company on a
// subdomain is never returned for its parent. a is expected from
// ParseAddress. The result is distinct, ordered by company id, and the
// caller's to keep.
func (ix *Index) Lookup(a Address) []CompanyRef {
	if a.Host == "" {
		return nil
	}
	reg := a.Registrable
	if reg == "" {
		reg = registrable(a.Host)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for h := a.Host; h != ""; h = parentDomain(h) {
		if v, ok := ix.domains[h]; ok {
			return ix.refs(v, h)
		}
		if len(h) <= len(reg) || !strings.HasSuffix(h, reg) {
			break
		}
	}
	return nil
}

func (ix *Index) refs(v uint32, d string) []CompanyRef {
	if v&sharedBit == 0 {
		c := &ix.companies[v]
		return []CompanyRef{{ID: c.id(), Name: c.name(), Domain: d}}
	}
	list := ix.shared[v&^sharedBit]
	out := make([]CompanyRef, len(list))
	for i, s := range list {
		c := &ix.companies[s]
		out[i] = CompanyRef{ID: c.id(), Name: c.name(), Domain: d}
	}
	return out
}

// Len returns the number of companies in the index, with or without indexed
// domains.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.ids)
}

// Domains returns the number of distinct indexed domains.
func (ix *Index) Domains() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.domains)
}

// FreeMailSkipped returns the number of companies with at least one domain
// that was not indexed because it is free mail, so the operator can be told.
func (ix *Index) FreeMailSkipped() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.skipped
}
