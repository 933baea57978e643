package plan

import "time"

// Withdraws is the policy for a meeting in the CRM that the rules no longer
// log (every live copy now says skip): it is withdrawn — its CRM record's
// outcome set to CANCELED, as for a cancelled event — when Rapport created
// that record (it was not adopted from the CRM) and the meeting has not
// started yet. A past meeting, or one Rapport adopted, is left as it was
// last written. A withdrawn meeting that qualifies again is restored (its
// outcome set back), like an event cancelled and then restored.
func Withdraws(row Meeting, start, now time.Time) bool {
	return row.Logged() && !row.Adopted && !start.IsZero() && start.After(now)
}
