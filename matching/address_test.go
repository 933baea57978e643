package matching

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParseAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Address
	}{
		{"jane@acme.com", Address{"jane@acme.com", "jane", "acme.com", "acme.com"}},
		{"  Jane.Doe@ACME.Com  ", Address{"jane.doe@acme.com", "jane.doe", "acme.com", "acme.com"}},
		{"JANE+CRM@acme.com", Address{"jane+crm@acme.com", "jane", "acme.com", "acme.com"}},
		{"jane+a+b@acme.com", Address{"jane+a+b@acme.com", "jane", "acme.com", "acme.com"}},
		// A leading plus is the whole mailbox, not a tag.
		{"+tag@acme.com", Address{"+tag@acme.com", "+tag", "acme.com", "acme.com"}},
		{"cfo@mail.eu.acme.co.uk", Address{"cfo@mail.eu.acme.co.uk", "cfo", "mail.eu.acme.co.uk", "acme.co.uk"}},
		{"bob@sales.acme.com", Address{"bob@sales.acme.com", "bob", "sales.acme.com", "acme.com"}},
		{"jane@acme.com.", Address{"jane@acme.com", "jane", "acme.com", "acme.com"}},
		{"user@bücher.example", Address{"user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", "xn--bcher-kva.example"}},
		{"user@BÜCHER.example", Address{"user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", "xn--bcher-kva.example"}},
		{"user@XN--BCHER-KVA.example", Address{"user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", "xn--bcher-kva.example"}},
		{"info@例え.jp", Address{"info@xn--r8jz45g.jp", "info", "xn--r8jz45g.jp", "xn--r8jz45g.jp"}},
		// Ideographic full stop maps to a dot.
		{"info@example。com", Address{"info@example.com", "info", "example.com", "example.com"}},
		{"Ünïcode@acme.com", Address{"ünïcode@acme.com", "ünïcode", "acme.com", "acme.com"}},
		{`"john doe"@acme.com`, Address{`"john doe"@acme.com`, "john doe", "acme.com", "acme.com"}},
		{`"John"@acme.com`, Address{"john@acme.com", "john", "acme.com", "acme.com"}},
		{`"a@b"@acme.com`, Address{`"a@b"@acme.com`, "a@b", "acme.com", "acme.com"}},
		{`"say \"hi\""@acme.com`, Address{`"say \"hi\""@acme.com`, `say "hi"`, "acme.com", "acme.com"}},
		{`"Jane Doe" <Jane@Acme.com>`, Address{"jane@acme.com", "jane", "acme.com", "acme.com"}},
		{`"Doe, <Jane>" <jane@acme.com>`, Address{"jane@acme.com", "jane", "acme.com", "acme.com"}},
		{"<jane@acme.com>", Address{"jane@acme.com", "jane", "acme.com", "acme.com"}},
		{"mailto:Jane@Acme.com", Address{"jane@acme.com", "jane", "acme.com", "acme.com"}},
		{"john..doe.@docomo.ne.jp", Address{"john..doe.@docomo.ne.jp", "john..doe.", "docomo.ne.jp", "docomo.ne.jp"}},
		{"c_1888abc@resource.calendar.google.com", Address{"c_1888abc@resource.calendar.google.com", "c_1888abc", "resource.calendar.google.com", "google.com"}},
		// A host that is a public suffix is its own registrable domain.
		{"x@co.uk", Address{"x@co.uk", "x", "co.uk", "co.uk"}},
		{"dev@foo.github.io", Address{"dev@foo.github.io", "dev", "foo.github.io", "foo.github.io"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAddress(tt.in)
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseAddress(%q) (-want +got):\n%s", tt.in, diff)
			}
			again, err := ParseAddress(got.Email)
			if err != nil || again != got {
				t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", got.Email, again, err, got)
			}
		})
	}
}

func TestParseAddressInvalid(t *testing.T) {
	t.Parallel()
	tests := []string{
		"",
		"   ",
		"jane",
		"jane.acme.com",
		"@acme.com",
		"jane@",
		"jane@.",
		"jane@acme",           // single label
		"jane@localhost.",     // single label
		"jane@acme..com",      // empty label
		"jane@acme.com..",     // two trailing dots
		"jane@.acme.com",      // leading dot
		"jane@ac me.com",      // space in host
		"jane@acme_corp.com",  // underscore
		"jane@-acme.com",      // leading hyphen
		"jane@acme-.com",      // trailing hyphen
		"jane@[192.0.2.1]",    // address literal
		"jane@192.0.2.1",      // IP address
		"jane doe@acme.com",   // space in local part
		"jane@doe@acme.com",   // two @
		`"jane@acme.com`,      // unterminated quote
		`"jane"x@acme.com`,    // text after quote
		`""@acme.com`,         // empty quoted local part
		"jane@acme.com>",      // unbalanced bracket
		"Jane <jane@acme.com", // unbalanced bracket
		"<>",
		"jane\x00@acme.com",
		"jane@acme.com\x00",
		"\xff@acme.com",
		"jane@" + strings.Repeat("a", 64) + ".com",              // label too long
		"jane@" + strings.Repeat("abcdefghi.", 26) + "com",      // host too long
		strings.Repeat("j", 65) + "@acme.com",                   // local part too long
		"jane@xn--a.com",                                        // invalid punycode
		"jane@ab--cd.com",                                       // reserved hyphens
		"jane@\u200d.com",                                       // joiner
		"jane@acme.com" + strings.Repeat(" ", maxInput),         // too long input
		"jane@acme.c\u00f6m" + string([]byte{0xe2, 0x80, 0xae}), // bidi override
		"jane@" + strings.Repeat("ü", 70) + ".example",          // label over 63 bytes once encoded
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAddress(in)
			if err == nil {
				t.Fatalf("ParseAddress(%q) = %+v, want error", in, got)
			}
			if !errors.Is(err, ErrInvalidAddress) {
				t.Errorf("ParseAddress(%q) error %v does not wrap ErrInvalidAddress", in, err)
			}
			if got != (Address{}) {
				t.Errorf("ParseAddress(%q) = %+v with error, want zero", in, got)
			}
			if _, err := Domain(in); err == nil {
				t.Errorf("Domain(%q) succeeded", in)
			}
		})
	}
}

func TestDomain(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"Jane@Sales.ACME.com.":   "sales.acme.com",
		"cfo@mail.eu.acme.co.uk": "mail.eu.acme.co.uk",
		"x@bücher.example":       "xn--bcher-kva.example",
		`"a b"@acme.com`:         "acme.com",
	}
	for in, want := range tests {
		got, err := Domain(in)
		if err != nil || got != want {
			t.Errorf("Domain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"acme.com", "acme.com"},
		{" ACME.com. ", "acme.com"},
		{"www.acme.com", "www.acme.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"", ""},
		{"acme", ""},
		{"https://acme.com", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrInvalidDomain) {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want ErrInvalidDomain", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"jane@acme.com", "JANE+crm@Sales.Acme.CO.UK.", `"john doe"@acme.com`,
		"user@bücher.example", `"Jane" <jane@x.com>`, "mailto:a@b.c", "a@xn--bcher-kva.example",
		`"a\"b"@x.com`, "info@example。com", "@", "a@[1.2.3.4]", "\xff@x.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseAddress(in)
		if err != nil {
			if a != (Address{}) {
				t.Fatalf("ParseAddress(%q) returned %+v with an error", in, a)
			}
			return
		}
		if a.Host == "" || strings.HasSuffix(a.Host, ".") {
			t.Fatalf("ParseAddress(%q): bad host %q", in, a.Host)
		}
		for i := 0; i < len(a.Host); i++ {
			c := a.Host[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				t.Fatalf("ParseAddress(%q): host %q is not lower-case ASCII", in, a.Host)
			}
		}
		if !underDomain(a.Host, a.Registrable) {
			t.Fatalf("ParseAddress(%q): registrable %q is not a suffix of host %q", in, a.Registrable, a.Host)
		}
		if !utf8.ValidString(a.Email) || !strings.HasSuffix(a.Email, "@"+a.Host) {
			t.Fatalf("ParseAddress(%q): email %q", in, a.Email)
		}
		again, err := ParseAddress(a.Email)
		if err != nil {
			t.Fatalf("re-parse %q (from %q): %v", a.Email, in, err)
		}
		if again != a {
			t.Fatalf("re-parse of %q (from %q) = %+v, want %+v", a.Email, in, again, a)
		}
	})
}
