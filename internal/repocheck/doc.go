// Package repocheck holds the tests that keep the repository's other files
// true: every relative link in README.md and docs/ resolves, the reference
// pages name every configuration variable, admin route and metric the code
// has, scripts/services.sh decides as it should, and the files in deploy/
// pass promtool and name only metrics Rapport exposes. It has no code of
// its own; `go test ./...` runs it.
package repocheck
