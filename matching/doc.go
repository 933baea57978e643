// Package matching owns the mapping from an e-mail address to the CRM: it
// parses and normalises addresses (lower case, IDNA to ASCII, plus-addressing,
// the registrable domain from the public suffix list), holds the built-in
// free-mail list that rule files adjust, keeps the per-workspace in-memory
// index from company domains to CRM companies (updated company by company,
// never rebuilt), and classifies calendar attendees as internal, free mail,
// blocked, resource or external with their matched companies for the rules
// environment. It does no I/O: callers load companies and hand them in.
package matching
