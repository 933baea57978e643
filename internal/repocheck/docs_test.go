package repocheck

import "github.com/rapportsync/rapport/internal/app"

// variables is the set of configuration variables Rapport reads.
func variables() map[string]bool {
	out := map[string]bool{}
	for _, v := range app.Variables() {
		out[v.Name] = true
	}
	return out
}
