package microsoft

//go:generate go run ./internal/genzones -in cldr/windowsZones.xml -out zones_gen.go

import (
	"strings"
	"time"
)

// IANAZone returns the IANA name of a zone as Graph writes it: a Windows
// zone name ("W. Europe Standard Time", mapped with CLDR's windowsZones),
// an IANA name (kept when the Go time database knows it) or UTC. It returns
// "" for a zone it cannot name, such as Outlook's custom zones.
func IANAZone(name string) string {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return ""
	case strings.EqualFold(name, "UTC") || strings.EqualFold(name, "tzone://Microsoft/Utc") ||
		strings.EqualFold(name, "Coordinated Universal Time"):
		// Google names UTC "UTC"; CLDR's Etc/UTC would differ for nothing.
		return "UTC"
	}
	if z, ok := windowsZones[name]; ok {
		return z
	}
	if strings.Contains(name, "/") && !strings.HasPrefix(name, "tzone:") {
		if _, err := time.LoadLocation(name); err == nil {
			return name
		}
	}
	return ""
}
