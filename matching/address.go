package matching

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// ErrInvalidAddress is returned, wrapped with the reason, for input that is
// not a usable e-mail address.
var ErrInvalidAddress = errors.New("invalid e-mail address")

// ErrInvalidDomain is returned, wrapped with the reason, for input that is not
// a usable domain name.
var ErrInvalidDomain = errors.New("invalid domain")

// Limits of RFC 5321 (local part) and RFC 1035 (host, label). maxInput bounds
// the work done on hostile input before any parsing.
const (
	maxLocal = 64
	maxHost  = 253
	maxLabel = 63
	maxInput = 1024
)

// Address is a parsed e-mail address.
type Address struct {
	// Email is the normalised address: the local part lower-cased with its
	// +tag kept (a CRM contact is keyed by the address as written), quoted
	// only when it must be, then "@" and Host. ParseAddress(Email) returns
	// the same Address.
	Email string
	// Local is the local part lower-cased, without quotes and without its
	// +tag: the mailbox "jane+crm@x.com" and "jane@x.com" share.
	Local string
	// Host is the full host, lower-case ASCII (IDNA), without a trailing dot.
	Host string
	// Registrable is the registrable domain (eTLD+1) of Host from the public
	// suffix list; it equals Host when Host is itself registrable or is a
	// public suffix.
	Registrable string
}

// ParseAddress parses and normalises one e-mail address. It accepts a bare
// address, one in angle brackets, a display-name form (`"Jane" <jane@x.com>`)
// and a "mailto:" prefix; surrounding spaces are ignored. Unquoted local parts
// may hold any RFC 5322 atom character, dots in any place (some carriers issue
// such addresses) and UTF-8 (RFC 6531). Domain literals ("[192.0.2.1]"),
// single-label hosts and numeric top-level labels are rejected: they cannot
// belong to a company. An invalid address is an error wrapping
// ErrInvalidAddress, never a panic.
func ParseAddress(email string) (Address, error) {
	if len(email) > maxInput {
		return Address{}, invalidAddress("too long")
	}
	if !utf8.ValidString(email) {
		return Address{}, invalidAddress("not UTF-8")
	}
	spec, err := addrSpec(strings.TrimSpace(email))
	if err != nil {
		return Address{}, err
	}
	at := lastUnquotedAt(spec)
	if at < 0 {
		return Address{}, invalidAddress("missing @")
	}
	rawLocal, rawHost := spec[:at], spec[at+1:]

	local, err := parseLocal(rawLocal)
	if err != nil {
		return Address{}, err
	}
	host, err := normalizeHost(rawHost)
	if err != nil {
		return Address{}, fmt.Errorf("%w: %w", ErrInvalidAddress, err)
	}

	a := Address{Host: host, Registrable: registrable(host)}
	a.Email = quoteLocal(local) + "@" + host
	a.Local = local
	if i := strings.IndexByte(local, '+'); i > 0 {
		a.Local = local[:i]
	}
	return a, nil
}

// Domain returns the normalised host of an e-mail address: the rules'
// domain() function.
func Domain(email string) (string, error) {
	a, err := ParseAddress(email)
	if err != nil {
		return "", err
	}
	return a.Host, nil
}

// NormalizeDomain normalises one domain name as configured by an operator or a
// rule file (internal, blocked or free-mail domains): surrounding spaces and
// one trailing dot removed, lower case, IDNA to ASCII. Unlike
// NormalizeCompanyDomains it strips no "www." and accepts no URL. An invalid
// name is an error wrapping ErrInvalidDomain.
func NormalizeDomain(s string) (string, error) {
	if len(s) > maxInput {
		return "", fmt.Errorf("%w: too long", ErrInvalidDomain)
	}
	return normalizeHost(strings.TrimSpace(s))
}

func invalidAddress(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidAddress, reason)
}

// addrSpec strips a "mailto:" prefix and a display name with its angle
// brackets, returning the bare address.
func addrSpec(s string) (string, error) {
	if len(s) >= 7 && strings.EqualFold(s[:7], "mailto:") {
		s = strings.TrimSpace(s[7:])
	}
	if !strings.HasSuffix(s, ">") {
		return s, nil
	}
	// The first '<' outside a quoted display name opens the address.
	inQuote, escaped := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inQuote:
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '<' && !inQuote:
			inner := strings.TrimSpace(s[i+1 : len(s)-1])
			if len(inner) >= 7 && strings.EqualFold(inner[:7], "mailto:") {
				inner = strings.TrimSpace(inner[7:])
			}
			return inner, nil
		}
	}
	return "", invalidAddress("unbalanced angle brackets")
}

// lastUnquotedAt returns the index of the '@' separating local part and
// host: the last one outside a quoted local part, or -1.
func lastUnquotedAt(s string) int {
	inQuote, escaped, at := false, false, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inQuote:
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '@' && !inQuote:
			at = i
		}
	}
	return at
}

// parseLocal returns the lower-cased content of a local part, unquoted.
func parseLocal(s string) (string, error) {
	if s == "" {
		return "", invalidAddress("empty local part")
	}
	var content string
	if s[0] == '"' {
		var b strings.Builder
		closed := false
		for i := 1; i < len(s); i++ {
			c := s[i]
			if closed {
				return "", invalidAddress("text after quoted local part")
			}
			switch {
			case c == '\\':
				i++
				if i == len(s) {
					return "", invalidAddress("unterminated quoted local part")
				}
				b.WriteByte(s[i])
			case c == '"':
				closed = true
			default:
				b.WriteByte(c)
			}
		}
		if !closed {
			return "", invalidAddress("unterminated quoted local part")
		}
		content = b.String()
		for _, r := range content {
			if r < 0x20 || r == 0x7f {
				return "", invalidAddress("control character in local part")
			}
		}
	} else {
		for _, r := range s {
			if !isAtomRune(r) {
				return "", invalidAddress(fmt.Sprintf("character %q in local part", r))
			}
		}
		content = s
	}
	content = strings.ToLower(content)
	if content == "" {
		return "", invalidAddress("empty local part")
	}
	if len(content) > maxLocal {
		return "", invalidAddress("local part longer than 64 bytes")
	}
	return content, nil
}

// isAtomRune reports whether r may appear in an unquoted local part: RFC 5322
// atext, a dot, or any non-ASCII character (RFC 6531) but the C1 controls.
func isAtomRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= 0xa0:
		return r != utf8.RuneError
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)
}

// quoteLocal renders a local part, quoting it when it holds a character an
// unquoted one may not.
func quoteLocal(s string) string {
	for _, r := range s {
		if !isAtomRune(r) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
		}
	}
	return s
}

// idnaProfile maps an internationalised host for lookup (UTS #46
// non-transitional, as browsers and mail servers do), with the Bidi rule and
// DNS length checks. It holds no mutable state.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
	idna.Transitional(false),
)

// normalizeHost returns the lower-case ASCII form of a host, without one
// trailing dot, or an error wrapping ErrInvalidDomain.
func normalizeHost(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", fmt.Errorf("%w: empty host", ErrInvalidDomain)
	}
	if h[0] == '[' {
		return "", fmt.Errorf("%w: address literal", ErrInvalidDomain)
	}
	if lower, ok := plainASCIIHost(h); ok {
		return lower, checkHost(lower)
	}
	a, err := idnaProfile.ToASCII(h)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidDomain, err)
	}
	// A rune such as U+3002 maps to a dot, so the trailing dot may be back.
	a = strings.TrimSuffix(a, ".")
	if err := checkHost(a); err != nil {
		return "", err
	}
	// IDNA is not idempotent for every input; insist on a fixed point so
	// that a normalised address parses to itself.
	if again, err := idnaProfile.ToASCII(a); err != nil || again != a {
		return "", fmt.Errorf("%w: unstable IDNA mapping", ErrInvalidDomain)
	}
	return a, nil
}

// plainASCIIHost lower-cases a host made only of letters, digits, hyphens
// and dots with no label of the reserved "ab--" form. Such a host needs no
// IDNA mapping; ok is false for anything else.
func plainASCIIHost(h string) (lower string, ok bool) {
	upper := false
	labelStart := 0
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == '.' {
			if i-labelStart >= 4 && h[labelStart+2] == '-' && h[labelStart+3] == '-' {
				return "", false
			}
			labelStart = i + 1
			continue
		}
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		case c >= 'A' && c <= 'Z':
			upper = true
		default:
			return "", false
		}
	}
	if upper {
		return strings.ToLower(h), true
	}
	return h, true
}

// checkHost validates a lower-case ASCII host: LDH labels of 1 to 63 bytes
// not starting or ending with a hyphen, at least two labels, at most 253
// bytes, and a top-level label that is not all digits (which would be an IP
// address).
func checkHost(h string) error {
	if len(h) > maxHost {
		return fmt.Errorf("%w: longer than 253 bytes", ErrInvalidDomain)
	}
	labels := 0
	digitsOnly := true
	labelStart := 0
	for i := 0; i <= len(h); i++ {
		if i < len(h) && h[i] != '.' {
			c := h[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%w: character %q", ErrInvalidDomain, c)
			}
			if c < '0' || c > '9' {
				digitsOnly = false
			}
			continue
		}
		label := h[labelStart:i]
		switch {
		case label == "":
			return fmt.Errorf("%w: empty label", ErrInvalidDomain)
		case len(label) > maxLabel:
			return fmt.Errorf("%w: label longer than 63 bytes", ErrInvalidDomain)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("%w: label starts or ends with a hyphen", ErrInvalidDomain)
		}
		labels++
		if i < len(h) {
			digitsOnly = true
		}
		labelStart = i + 1
	}
	if labels < 2 {
		return fmt.Errorf("%w: single-label host", ErrInvalidDomain)
	}
	if digitsOnly {
		return fmt.Errorf("%w: numeric top-level label", ErrInvalidDomain)
	}
	return nil
}

// registrable returns the eTLD+1 of a normalised host, or the host itself
// when it is a public suffix or has no rule.
func registrable(host string) string {
	r, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return host
	}
	return r
}

// parentDomain returns h without its first label, or "" for a single label.
func parentDomain(h string) string {
	i := strings.IndexByte(h, '.')
	if i < 0 {
		return ""
	}
	return h[i+1:]
}

// underDomain reports whether host equals domain or is a subdomain of it.
// Both are normalised.
func underDomain(host, domain string) bool {
	if len(host) == len(domain) {
		return host == domain
	}
	return len(host) > len(domain) &&
		host[len(host)-len(domain)-1] == '.' &&
		host[len(host)-len(domain):] == domain
}

// Under reports whether the address's host is one of domains or a
// subdomain of one: whether it belongs to an organisation's domains.
func (a Address) Under(domains []string) bool { return underAny(a.Host, domains) }
