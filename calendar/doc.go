// Package calendar owns the provider-neutral model of a calendar event and the
// Source interface every calendar provider implements: listing changes from a
// cursor page by page, opening and stopping push channels, verifying push
// notifications and patching Rapport's private extended properties on one copy
// of an event. Provider packages (calendar/google, later calendar/microsoft and
// calendar/calendly) translate their API's errors into the classes defined
// here, so the pipeline decides what to do with an error in one place. The
// package knows nothing of queues, HTTP servers or databases.
package calendar
