package provider

import (
	"regexp"
	"strings"
)

var (
	// urlRE finds URLs; their query (sync tokens, delta links, access
	// tokens) and fragment go.
	urlRE = regexp.MustCompile(`(?i)\bhttps?://[^\s"'<>]+`)
	// addrRE finds e-mail addresses, also percent-encoded in a path.
	addrRE = regexp.MustCompile(`(?i)[a-z0-9._%+\-]+(?:@|%40)([a-z0-9\-]+(?:\.[a-z0-9\-]+)+)`)
	// secretRE finds credentials written as key=value or "key": "value".
	secretRE = regexp.MustCompile(`(?i)(bearer\s+|(?:access|refresh|id|sync|page|delta|skip)_?token["']?\s*[=:]\s*["']?|password["']?\s*[=:]\s*["']?|client_?secret["']?\s*[=:]\s*["']?)[^\s"'&,;}]+`)
)

// Scrub removes what an error text must not carry into logs, the database
// or the admin API: the query of every URL (it holds sync tokens, delta
// links and credentials), e-mail addresses (the local part goes, the domain
// stays: domains are what Rapport keeps), and anything written as a token,
// secret or password. It is the one place provider errors pass through
// before they are stored or shown.
func Scrub(s string) string {
	s = urlRE.ReplaceAllStringFunc(s, func(u string) string {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i] + "?…"
		}
		return u
	})
	s = secretRE.ReplaceAllString(s, "${1}[redacted]")
	s = addrRE.ReplaceAllString(s, "…@$1")
	return s
}
