// Package rules owns the filter rules that decide which calendar events become
// CRM meetings. It loads a directory of YAML rule files (every *.yaml and *.yml
// except the test files *_test.yaml and *_test.yml, in name order) by walking the YAML node tree, so that every
// mistake — an unknown key, a duplicate rule name, an expression that does not
// compile — is reported as file:line:col; it compiles each rule's `when` with
// expr against a typed environment and keeps the programs in an immutable Set
// that is safe for concurrent use. Set.Decide classifies an event's attendees
// with package matching, evaluates the rules first match wins, and returns a
// Decision whose trace (rules evaluated, attendee domains and classes,
// companies matched — never e-mail addresses) explains it. The package also
// owns the built-in default rules (default.yaml, embedded), the ownership table
// of the meeting properties Rapport writes, the rules version (a content hash,
// plus the git commit of a checkout), the runner of *_test.yaml (*_test.yml) test files
// behind `rapport rules test`, the check behind `rapport rules check`, and the
// Holder and Watch that swap in a reloaded Set atomically while refusing a
// broken one. It knows nothing of queues, HTTP or the database.
package rules
