// Package crm owns the provider-neutral model of the CRM side — Company,
// Contact, Meeting, Owner — and the Sink interface a CRM implements: paging
// through companies, finding contacts by e-mail, writing meetings in batches
// with their associations, finding meetings by Rapport's key or by iCalUID,
// and preparing a portal. Provider packages (crm/hubspot) translate their
// API's errors into the classes defined here. The package knows nothing of
// queues, HTTP servers or databases.
package crm
