package hubspot

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportsync/rapport/crm"
)

// companyProps are the company properties Rapport reads.
var companyProps = []string{"domain", "hs_additional_domains", "name", "hs_lastmodifieddate"}

// withProps returns base followed by the extra properties not already in
// it: the properties one listing asks for.
func withProps(base, extra []string) []string {
	out := slices.Clone(base)
	for _, p := range extra {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// extraProps returns the values of the extra properties of an object; nil
// when none was asked for or none is set.
func extraProps(o object, extra []string) map[string]string {
	var m map[string]string
	for _, p := range extra {
		if v := o.prop(p); v != "" {
			if m == nil {
				m = make(map[string]string, len(extra))
			}
			m[p] = v
		}
	}
	return m
}

func toCompany(o object, extra []string) crm.Company {
	c := crm.Company{ID: o.ID, Name: o.prop("name"), Properties: extraProps(o, extra)}
	if d := strings.TrimSpace(o.prop("domain")); d != "" {
		c.Domains = append(c.Domains, d)
	}
	for _, d := range strings.Split(o.prop("hs_additional_domains"), ";") {
		if d = strings.TrimSpace(d); d != "" {
			c.Domains = append(c.Domains, d)
		}
	}
	if t, ok := parseTime(o.prop("hs_lastmodifieddate")); ok {
		c.UpdatedAt = t
	} else if t, ok := parseTime(o.UpdatedAt); ok {
		c.UpdatedAt = t
	}
	return c
}

// parseTime reads a HubSpot datetime: epoch milliseconds or RFC 3339.
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// Companies returns a page of up to 100 companies after the cursor, with
// the extra properties props.
func (c *Client) Companies(ctx context.Context, after string, props []string) (crm.CompanyPage, error) {
	q := url.Values{"limit": {"100"}, "properties": {strings.Join(withProps(companyProps, props), ",")}}
	if after != "" {
		q.Set("after", after)
	}
	var resp listResponse
	if _, err := c.send(ctx, request{op: "companies.list", method: http.MethodGet, path: pathObjects + "companies",
		query: q, replayable: true}, &resp); err != nil {
		return crm.CompanyPage{}, err
	}
	page := crm.CompanyPage{Next: resp.Paging.after(), Companies: make([]crm.Company, 0, len(resp.Results))}
	for _, o := range resp.Results {
		page.Companies = append(page.Companies, toCompany(o, props))
	}
	return page, nil
}

// changedCursor is the position of a CompaniesChangedSince walk: companies
// modified after (or, once walking, at or after) anchor, skipping the first
// skip of them, which were modified exactly at anchor and already returned.
// Re-anchoring on every page keeps each query far below search's
// 10,000-result cap and does not lose companies that move while the walk
// goes on (a company modified meanwhile moves to the end and is seen again).
type changedCursor struct {
	anchor    int64 // epoch ms
	inclusive bool
	skip      int
}

func (k changedCursor) String() string {
	incl := 0
	if k.inclusive {
		incl = 1
	}
	return fmt.Sprintf("%d.%d.%d", k.anchor, incl, k.skip)
}

func parseChangedCursor(s string) (changedCursor, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return changedCursor{}, fmt.Errorf("bad cursor %q", s)
	}
	a, err1 := strconv.ParseInt(parts[0], 10, 64)
	in, err2 := strconv.Atoi(parts[1])
	sk, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || sk < 0 {
		return changedCursor{}, fmt.Errorf("bad cursor %q", s)
	}
	return changedCursor{anchor: a, inclusive: in == 1, skip: sk}, nil
}

// CompaniesChangedSince returns a page of up to 200 companies modified after
// since, oldest first, through the search API (hs_lastmodifieddate, sorted
// ascending), with the extra properties props. after is the Next of the
// previous page.
func (c *Client) CompaniesChangedSince(ctx context.Context, since time.Time, after string, props []string) (crm.CompanyPage, error) {
	const op = "companies.search"
	cur := changedCursor{anchor: since.UnixMilli()}
	if after != "" {
		var err error
		if cur, err = parseChangedCursor(after); err != nil {
			return crm.CompanyPage{}, &crm.Error{Class: crm.Permanent, Op: op, Err: err}
		}
	}
	if cur.skip+searchPage > searchCap {
		// More than 10,000 companies modified in one millisecond: give up on
		// the rest of that millisecond rather than fail the refresh.
		c.cfg.Logger.Warn("hubspot: too many companies modified in one millisecond; skipping the rest of them")
		cur = changedCursor{anchor: cur.anchor}
	}
	opName := "GT"
	if cur.inclusive {
		opName = "GTE"
	}
	req := searchRequest{
		FilterGroups: []filterGroup{{Filters: []filter{{PropertyName: "hs_lastmodifieddate", Operator: opName, Value: strconv.FormatInt(cur.anchor, 10)}}}},
		Sorts:        []searchSort{{PropertyName: "hs_lastmodifieddate", Direction: "ASCENDING"}},
		Properties:   withProps(companyProps, props),
		Limit:        searchPage,
	}
	if cur.skip > 0 {
		req.After = strconv.Itoa(cur.skip)
	}
	var resp searchResponse
	if _, err := c.send(ctx, request{op: op, method: http.MethodPost, path: pathObjects + "companies/search",
		body: req, search: true, replayable: true}, &resp); err != nil {
		return crm.CompanyPage{}, err
	}
	page := crm.CompanyPage{Companies: make([]crm.Company, 0, len(resp.Results))}
	for _, o := range resp.Results {
		page.Companies = append(page.Companies, toCompany(o, props))
	}
	if resp.Paging.after() == "" || len(page.Companies) == 0 {
		return page, nil
	}
	last := page.Companies[len(page.Companies)-1].UpdatedAt.UnixMilli()
	next := changedCursor{anchor: last, inclusive: true}
	if last == cur.anchor && cur.inclusive {
		next.skip = cur.skip
	}
	for _, co := range page.Companies {
		if co.UpdatedAt.UnixMilli() == last {
			next.skip++
		}
	}
	page.Next = next.String()
	return page, nil
}

// contactProps are the contact properties Rapport always reads.
var contactProps = []string{"email", "firstname", "lastname"}

// ContactsByEmail reads contacts by e-mail address, 100 per call, with the
// extra properties props. Unknown addresses are absent from the map, which
// is keyed by lower-cased address.
func (c *Client) ContactsByEmail(ctx context.Context, emails []string, props []string) (map[string]crm.Contact, error) {
	const op = "contacts.batch.read"
	var addrs []string
	for _, e := range emails {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
			addrs = append(addrs, e)
		}
	}
	addrs = uniq(addrs)
	out := make(map[string]crm.Contact, len(addrs))
	for _, r := range chunk(len(addrs), batchSize) {
		refs := make([]objectRef, 0, r[1]-r[0])
		for _, a := range addrs[r[0]:r[1]] {
			refs = append(refs, objectRef{ID: a})
		}
		resp, err := c.batchRead(ctx, op, "contacts",
			batchReadRequest{IDProperty: "email", Inputs: refs, Properties: withProps(contactProps, props)})
		if err != nil {
			return out, err
		}
		for _, o := range resp.Results {
			email := strings.ToLower(o.prop("email"))
			name := strings.TrimSpace(o.prop("firstname") + " " + o.prop("lastname"))
			out[email] = crm.Contact{ID: o.ID, Email: email, Name: name, Properties: extraProps(o, props)}
		}
	}
	return out, nil
}

// Owners lists the portal's active owners.
func (c *Client) Owners(ctx context.Context) ([]crm.Owner, error) {
	var out []crm.Owner
	after := ""
	for {
		q := url.Values{"limit": {"100"}}
		if after != "" {
			q.Set("after", after)
		}
		var resp ownersResponse
		if _, err := c.send(ctx, request{op: "owners.list", method: http.MethodGet, path: pathOwners,
			query: q, replayable: true}, &resp); err != nil {
			return out, err
		}
		for _, o := range resp.Results {
			if !o.Archived {
				out = append(out, crm.Owner{ID: o.ID, Email: o.Email})
			}
		}
		if after = resp.Paging.after(); after == "" {
			return out, nil
		}
	}
}
