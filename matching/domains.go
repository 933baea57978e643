package matching

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// NormalizeCompanyDomains turns raw CRM domain values ("domain" and
// "hs_additional_domains", as people type them) into distinct normalised
// hosts, in order of first appearance. A value may hold several domains
// separated by semicolons, commas or white space; each piece may be a URL
// (scheme, user info, port, path, query and fragment are dropped), start with
// "www." or "*.", end with slashes or dots, be upper case or an IDN. Pieces
// that are no valid domain after that are dropped.
func NormalizeCompanyDomains(raw ...string) []string {
	var out []string
	for _, r := range raw {
		for piece := range strings.FieldsFuncSeq(r, isDomainSeparator) {
			d, ok := normalizeCompanyDomain(piece)
			if ok && !contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

func isDomainSeparator(r rune) bool {
	switch r {
	case ';', ',', ' ', '\t', '\n', '\r', '|', '\u00a0', '\u3000':
		return true
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// normalizeCompanyDomain normalises one piece of a CRM domain value.
func normalizeCompanyDomain(s string) (string, bool) {
	if len(s) > maxInput {
		return "", false
	}
	s = strings.Trim(s, `"'<>()[]`)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	} else if len(s) >= 7 && strings.EqualFold(s[:7], "mailto:") {
		s = s[7:]
	}
	s = strings.TrimLeft(s, "/")
	if i := strings.IndexAny(s, "/?#\\"); i >= 0 {
		s = s[:i]
	}
	// User info of a URL, or an e-mail address typed into the domain field.
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, ".")
	s = strings.TrimPrefix(s, "*.")
	s = strings.TrimLeft(s, ".")
	h, err := normalizeHost(s)
	if err != nil {
		return "", false
	}
	// "www." names the web server, not the company; keep it when what
	// remains is a public suffix ("www.com" is a domain of its own).
	for {
		rest, ok := strings.CutPrefix(h, "www.")
		if !ok {
			return h, true
		}
		if _, err := publicsuffix.EffectiveTLDPlusOne(rest); err != nil {
			return h, true
		}
		h = rest
	}
}
