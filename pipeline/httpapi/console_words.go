package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/rules"
)

// This file says in words what the ledger says in codes: a calendar's and
// a connection's state, a dead letter's task and class, a meeting's state
// and history, an attendee's class. One table per code, in one place.

// Classes of a status, for the page's colours (and a word for a screen
// reader: the text always says it too).
const (
	classOK   = "ok"
	classBusy = "busy"
	classWarn = "warn"
	classBad  = "bad"
	classOff  = "off"
)

// connectionWords says what a connection's status means.
func connectionWords(c pipeline.ConnectionStatus) (state, class, detail string) {
	switch {
	case c.ReplacedBy != "":
		return "replaced", classOff, "Another portal replaced this one; nothing is written here any more."
	case c.Status == "needs_reauth":
		return "needs re-authorisation", classWarn, withError("The provider refused the credentials; its work is parked until the account is connected again.", c.LastError)
	case c.Status == "revoked":
		return "revoked", classOff, withError("The credentials were revoked.", c.LastError)
	case c.Status == "active":
		return "connected", classOK, ""
	}
	return c.Status, classWarn, withError("", c.LastError)
}

// calendarWords says at a glance how a calendar syncs: synced, syncing,
// needs re-authorisation, gone, paused or error, with the last error.
func calendarWords(cal pipeline.CalendarStatus, conn pipeline.ConnectionStatus) (state, class, detail string) {
	switch {
	case conn.Status == "needs_reauth":
		return "needs re-authorisation", classWarn, "Its connection must be connected again; syncs resume then."
	case conn.Status == "revoked" || conn.ReplacedBy != "":
		return "not syncing", classOff, "Its connection is no longer used."
	case cal.Status == "gone":
		return "gone", classOff, withError("The provider says this calendar no longer exists: it is not synced until its connection is imported again.", cal.LastError)
	case cal.Status == "paused":
		return "paused", classOff, "Syncs of this calendar are paused."
	case cal.Status == "error":
		return "error", classBad, withError("The last sync failed.", cal.LastError)
	case cal.LastSyncedAt == nil:
		return "syncing", classBusy, "The first sync has not finished yet."
	case cal.LastError != "":
		return "synced", classWarn, withError("Synced, but the last attempt reported a problem.", cal.LastError)
	}
	return "synced", classOK, ""
}

func withError(sentence, lastError string) string {
	if lastError == "" {
		return sentence
	}
	if sentence == "" {
		return "Last error: " + lastError
	}
	return sentence + " Last error: " + lastError
}

// taskWords names what a task was doing.
var taskWords = map[string]string{
	pipeline.TaskSync:       "Sync of a calendar",
	pipeline.TaskWrite:      "Write of a meeting to the CRM",
	pipeline.TaskWriteBatch: "Write of meetings to the CRM",
	pipeline.TaskLink:       "Write-back of CRM ids into calendar events",
	pipeline.TaskRenew:      "Renewal of a calendar's push channel",
	pipeline.TaskIndex:      "Load of the CRM company index",
	pipeline.TaskReconcile:  "Reconciliation",
	pipeline.TaskRefresh:    "Refresh of a connection's credentials",
}

// classWords says why work was parked and what to do.
var classWords = map[string]string{
	"permanent": "The provider refused it for good: fix what the reason names (a property, a permission), then retry.",
	"auth":      "The provider refused the connection's credentials: connect the account again; its parked work then resumes by itself.",
	"exhausted": "It kept failing until its retries ran out (the provider was unreachable or overloaded): retry once the provider answers again.",
	"not_found": "What it was about no longer exists at the provider: retry only if it was restored.",
}

// deadLetterWords says what a dead letter's task did and why it stopped.
func deadLetterWords(d pipeline.DeadLetter, crmTitle string) (what, why string) {
	what = strings.ReplaceAll(taskWords[d.TaskType], "the CRM", crmTitle)
	if what == "" {
		what = "Task " + d.TaskType
	}
	var ref struct {
		MeetingKeys []string `json:"meeting_keys"`
	}
	if json.Unmarshal(d.Ref, &ref) == nil && len(ref.MeetingKeys) > 0 {
		what += fmt.Sprintf(" (%d %s)", len(ref.MeetingKeys), plural(len(ref.MeetingKeys), "meeting", "meetings"))
	}
	why = classWords[d.Class]
	if why == "" {
		why = "It failed for good (" + d.Class + ")."
	}
	return what, why
}

// meetingStateWords says what a ledger state means.
func meetingStateWords(state, crmTitle string) string {
	return strings.ReplaceAll(meetingStateText(state), "the CRM", crmTitle)
}

func meetingStateText(state string) string {
	switch state {
	case "skipped":
		return "Not logged: the rules decided to skip it."
	case "pending":
		return "To be written to the CRM."
	case "creating":
		return "Being created in the CRM; the outcome is not recorded yet."
	case "logged":
		return "Logged in the CRM and up to date."
	case "cancelled":
		return "Logged in the CRM, then cancelled there."
	case "deleted_in_crm":
		return "Someone deleted it in the CRM; Rapport leaves it deleted."
	case "failed":
		return "The CRM refused it for good: see the dead letters."
	}
	return state
}

// historyWords says what a write did.
func historyWords(kind, crmTitle string) string {
	return strings.ReplaceAll(historyText(kind), "the CRM", crmTitle)
}

func historyText(kind string) string {
	switch kind {
	case "created":
		return "created in the CRM"
	case "updated":
		return "updated in the CRM"
	case "cancelled":
		return "marked cancelled in the CRM"
	case "adopted":
		return "adopted: the meeting was found already in the CRM"
	case "deleted_in_crm":
		return "found deleted in the CRM"
	}
	return kind
}

// attendeeWords says how an attendee counted in a decision.
func attendeeWords(a rules.AttendeeTrace) string {
	var w []string
	switch {
	case a.Resource:
		w = append(w, "a room or resource")
	case a.Blocked:
		w = append(w, "blocked domain")
	case a.Internal:
		w = append(w, "internal")
	case a.Invalid || a.Domain == "":
		w = append(w, "external, no valid address")
	case len(a.Companies) > 0:
		w = append(w, "external, matches a company")
	case a.FreeMail:
		w = append(w, "external, free mail")
	default:
		w = append(w, "external, no company matches")
	}
	if a.Organizer {
		w = append(w, "organizer")
	}
	if a.Self {
		w = append(w, "the calendar's owner")
	}
	if a.Optional {
		w = append(w, "optional")
	}
	return strings.Join(w, "; ")
}
