// Package layering holds the test that enforces Rapport's layering
// (ARCHITECTURE.md §1): the domain packages and the adapters know nothing
// of the queue, the database or the pipeline; the core names no provider;
// nothing imports the binary.
package layering
