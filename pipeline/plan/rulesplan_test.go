package plan

import (
	"testing"
	"time"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/rules"
)

// TestFates: one meeting decided by two rule sets, compared, with what the
// candidate does in the CRM.
func TestFates(t *testing.T) {
	accepted := calendar.ResponseAccepted
	e := event("e1", att(rep, accepted), att(cfo, accepted))
	fresh := Meeting{ID: 1, Key: "k", State: Skipped, Action: ActionSkip}
	logged := Meeting{ID: 1, Key: "k", State: Logged, Action: ActionLog, Rule: "customer-meeting", CRMID: "900", OwnedHash: "h", DesiredHash: "h"}
	withdrawn := Meeting{ID: 1, Key: "k", State: Cancelled, Action: ActionSkip, Rule: "skip-lead", CRMID: "900", OwnedHash: "h", DesiredHash: "h"}
	logRule := rules.Decision{Action: rules.ActionLog, Rule: "vip"}
	skipRule := rules.Decision{Action: rules.ActionSkip, Rule: "skip-lead"}
	fate := func(row Meeting, d rules.Decision, now time.Time, copies ...Copy) *Fate {
		f := NewFate(row, copies)
		i := in(e, "cal-rep", rep, row, copies...)
		i.Decision, i.Now = d, now
		f.Add(DecideEvent(i))
		return &f
	}
	past := t0.Add(2 * time.Hour)
	for _, c := range []struct {
		name       string
		live, cand *Fate
		change     Change
		effect     Effect
	}{
		{"skipped, now logged: created", fate(fresh, skipRule, now), fate(fresh, logRule, now), NewlyLogged, EffectCreate},
		{"withdrawn, logged again: restored", fate(withdrawn, skipRule, now), fate(withdrawn, logRule, now), NewlyLogged, EffectRestore},
		{"logged, now skipped before it starts: withdrawn", fate(logged, logRule, now), fate(logged, skipRule, now), NoLongerLogged, EffectWithdraw},
		{"logged, now skipped after it started: kept", fate(logged, logRule, past), fate(logged, skipRule, past), NoLongerLogged, EffectKeep},
		{"pending, now skipped: never created", fate(fresh, logRule, now), fate(fresh, skipRule, now), NoLongerLogged, EffectNone},
		// The row's hash is not the event's: the record is written again.
		{"logged by both", fate(logged, logRule, now), fate(logged, logRule, now), Unchanged, EffectUpdate},
		{"skipped by both", fate(fresh, skipRule, now), fate(fresh, skipRule, now), Unchanged, EffectNone},
		{"another copy still logs: unchanged",
			fate(logged, logRule, now, Copy{CalendarID: "cal-ae", EventID: "e2", Status: CopyConfirmed, Action: ActionLog}),
			fate(logged, skipRule, now, Copy{CalendarID: "cal-ae", EventID: "e2", Status: CopyConfirmed, Action: ActionLog}), Unchanged, EffectUpdate},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Compare(c.live, c.cand); got != c.change {
				t.Errorf("change %s, want %s", got, c.change)
			}
			if got := c.cand.Effect(); got != c.effect {
				t.Errorf("effect %s, want %s", got, c.effect)
			}
		})
	}
}
