package provider

import (
	"regexp"
	"strings"
)

// sep is what separates a key from its value: = or :, quotes (also
// backslash-escaped, in a JSON body quoted inside a JSON message) and
// spaces.
const sep = `(?:\\?["'])?\s*[=:]\s*(?:\\?["'])?`

var (
	// urlRE finds URLs; their query (sync tokens, delta links, access
	// tokens) and fragment go.
	urlRE = regexp.MustCompile(`(?i)\bhttps?://[^\s"'<>]+`)
	// addrRE finds e-mail addresses, also percent-encoded in a path.
	addrRE = regexp.MustCompile(`(?i)[a-z0-9._%+\-]+(?:@|%40)([a-z0-9\-]+(?:\.[a-z0-9\-]+)+)`)
	// secretRE finds credentials written as key=value or "key": "value":
	// OAuth tokens, cursors, a push channel's token, a Graph
	// subscription's clientState, webhook signing keys, secrets.
	secretRE = regexp.MustCompile(`(?i)(bearer\s+|\b(?:(?:access|refresh|id|sync|page|delta|skip|validation)_?)?token` + sep + `|\b(?:password|client_?secret|client_?state|signing_?key|secret)` + sep + `)[^\s"'&,;}\\]+`)
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
