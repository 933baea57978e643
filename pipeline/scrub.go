package pipeline

import "github.com/rapportsync/rapport/internal/provider"

// scrub is provider.Scrub: no address, token or URL query leaves an error
// text for a log line, the ledger or the admin API.
func scrub(s string) string { return provider.Scrub(s) }
