// Package rules owns the filter rules that decide which calendar events become
// CRM meetings. It loads a directory of YAML rule files (every *.yaml and
// *.yml except the test files *_test.yaml and *_test.yml, in name order) by
// walking the YAML node tree, so that every mistake — an unknown key, a
// duplicate rule name, an expression that does not compile, a CRM property
// read but not declared under crm_properties — is reported as
// file:line:col; it compiles each rule's `when` with expr against a typed
// environment and keeps the programs in an immutable Set that is safe for
// concurrent use. Set.Decide classifies an event's attendees with package
// matching, evaluates the rules first match wins, and returns a Decision: the
// action, and a trace (rules evaluated, the event's classes, attendee domains
// and classes, companies matched — never e-mail addresses) that Explain words
// in one sentence, plus the contact and owner addresses the pipeline needs,
// which are never serialised. The package also owns the built-in default
// rules (default.yaml, embedded; DefaultYAML), the ownership table of the
// meeting properties Rapport writes, the rules version (a content hash, plus
// the git commit of a checkout), the runner of test files behind `rapport
// rules test`, the check behind `rapport rules check`, and the Holder and
// Watch that swap in a reloaded Set atomically while refusing a broken one,
// logging what changed (Diff). It knows nothing of queues, HTTP or the
// database. docs/rules.md is the language reference.
package rules
