package main

import (
	"bytes"
	"os"
	"testing"
)

// TestTableIsCurrent fails when zones_gen.go is not what go generate makes
// of the vendored windowsZones.xml.
func TestTableIsCurrent(t *testing.T) {
	src, err := os.ReadFile("../../cldr/windowsZones.xml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate(src, "microsoft")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../zones_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("zones_gen.go is stale: run go generate ./calendar/microsoft")
	}
}

func TestGenerateRejects(t *testing.T) {
	for name, src := range map[string]string{
		"not xml":   "<supplementalData>",
		"no zones":  "<supplementalData><windowsZones><mapTimezones/></windowsZones></supplementalData>",
		"no type":   `<supplementalData><windowsZones><mapTimezones><mapZone other="X" territory="001" type=""/></mapTimezones></windowsZones></supplementalData>`,
		"ambiguous": `<supplementalData><windowsZones><mapTimezones><mapZone other="X" territory="001" type="A/B"/><mapZone other="X" territory="001" type="C/D"/></mapTimezones></windowsZones></supplementalData>`,
	} {
		if _, err := generate([]byte(src), "p"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
