package matching

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeCompanyDomains(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  []string
		want []string
	}{
		{"plain", []string{"acme.com"}, []string{"acme.com"}},
		{"upper case and spaces", []string{"  ACME.Com  "}, []string{"acme.com"}},
		{"semicolons", []string{"acme.com;acme.io; acme.de ;"}, []string{"acme.com", "acme.io", "acme.de"}},
		{"commas and spaces", []string{"acme.com, acme.io acme.de"}, []string{"acme.com", "acme.io", "acme.de"}},
		{"newlines and tabs", []string{"acme.com\nacme.io\tacme.de\r\n"}, []string{"acme.com", "acme.io", "acme.de"}},
		{"url with scheme", []string{"https://www.acme.com/about?x=1#top"}, []string{"acme.com"}},
		{"url with port and user", []string{"http://user:pw@Acme.com:8080/"}, []string{"acme.com"}},
		{"scheme-less url with path", []string{"www.acme.com/contact/"}, []string{"acme.com"}},
		{"protocol-relative", []string{"//acme.com"}, []string{"acme.com"}},
		{"trailing slashes and dots", []string{"acme.com///", "acme.io..", "acme.de./"}, []string{"acme.com", "acme.io", "acme.de"}},
		{"leading dot and wildcard", []string{".acme.com", "*.acme.io"}, []string{"acme.com", "acme.io"}},
		{"e-mail address typed in", []string{"sales@acme.com", "mailto:info@acme.io"}, []string{"acme.com", "acme.io"}},
		{"subdomain kept", []string{"sales.acme.com", "www.sales.acme.com"}, []string{"sales.acme.com"}},
		{"co.uk", []string{"www.acme.co.uk"}, []string{"acme.co.uk"}},
		{"www twice", []string{"www.www.acme.com"}, []string{"acme.com"}},
		{"www is kept before a public suffix", []string{"www.com", "www.co.uk"}, []string{"www.com", "www.co.uk"}},
		{"idn", []string{"https://www.Bücher.example/"}, []string{"xn--bcher-kva.example"}},
		{"punycode", []string{"XN--BCHER-KVA.example"}, []string{"xn--bcher-kva.example"}},
		{"quoted", []string{`"acme.com"`, "<acme.io>"}, []string{"acme.com", "acme.io"}},
		{"distinct across values", []string{"acme.com", "ACME.com; www.acme.com", "https://acme.com"}, []string{"acme.com"}},
		{"invalid pieces dropped", []string{"acme.com; n/a; - ; localhost; 192.168.0.1; [::1]; ac_me.com; acme..io; http://", "acme.de"}, []string{"acme.com", "acme.de"}},
		{"empty", []string{"", " ; ,"}, nil},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := NormalizeCompanyDomains(tt.raw...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NormalizeCompanyDomains(%q) (-want +got):\n%s", tt.raw, diff)
			}
		})
	}
}

func FuzzNormalizeCompanyDomains(f *testing.F) {
	for _, s := range []string{"acme.com; https://www.Acme.io/x", "http://u:p@bücher.example:80/", "www.com,www.www.acme.co.uk", "*.acme.com."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := NormalizeCompanyDomains(raw)
		for _, d := range got {
			if n, err := NormalizeDomain(d); err != nil || n != d {
				t.Fatalf("NormalizeCompanyDomains(%q) returned %q, not a normalised domain (%q, %v)", raw, d, n, err)
			}
		}
		if again := NormalizeCompanyDomains(got...); !cmp.Equal(again, got) {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, got, again)
		}
	})
}
