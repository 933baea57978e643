package plan

// This file is the pure half of a rules plan: what one meeting becomes
// under a rule set once each of its listed copies is decided (DecideEvent,
// in order, as a sync or a reconciliation would), and how the fates under
// the live and the candidate rules compare.

// Fate is what one meeting becomes under a rule set after its copies are
// decided in order.
type Fate struct {
	// Before is the meeting's ledger row before any decision; Meeting and
	// Copies are the row and copies after the last one.
	Before  Meeting
	Meeting Meeting
	Copies  []Copy
	// Outcome is the last CRM write the decisions called for (create,
	// update or cancel), OutcomeNone when none; Withdrawn tells that the
	// cancellation is a withdrawal (Withdraws).
	Outcome   Outcome
	Withdrawn bool
}

// NewFate starts the fate of a meeting from its ledger row and copies.
func NewFate(row Meeting, copies []Copy) Fate {
	return Fate{Before: row, Meeting: row, Copies: copies}
}

// Add folds the plan of one more copy into the fate.
func (f *Fate) Add(p EventPlan) {
	if p.Skip {
		return
	}
	f.Meeting, f.Copies = p.Meeting, p.Copies
	switch p.Outcome {
	case OutcomeCreate, OutcomeUpdate, OutcomeCancel:
		f.Outcome, f.Withdrawn = p.Outcome, p.Withdrawn
	}
}

// Logs is the rules' verdict on the meeting: a live copy says log and the
// meeting is not cancelled.
func (f *Fate) Logs() bool {
	cancelled, live, anyLog := cancelledBy(f.Copies)
	return anyLog && live && !cancelled
}

// Effect is what a change of rules does to a meeting in the CRM.
type Effect string

// Effects, as a plan prints them.
const (
	// EffectCreate: the meeting is created in the CRM.
	EffectCreate Effect = "create"
	// EffectRestore: a withdrawn (cancelled) CRM record is restored.
	EffectRestore Effect = "restore"
	// EffectUpdate: the CRM record, left there before, is written again.
	EffectUpdate Effect = "update"
	// EffectWithdraw: the CRM record's outcome is set to CANCELED.
	EffectWithdraw Effect = "withdraw"
	// EffectCancel: the event itself is cancelled.
	EffectCancel Effect = "cancel"
	// EffectKeep: the CRM record stays as last written (the meeting has
	// started, or Rapport adopted it).
	EffectKeep Effect = "keep"
	// EffectNone: nothing reaches the CRM (not created: outside the
	// window, deleted in the CRM, no CRM connection).
	EffectNone Effect = "none"
)

// Effect says what the fate does in the CRM.
func (f *Fate) Effect() Effect {
	switch f.Outcome {
	case OutcomeCreate:
		return EffectCreate
	case OutcomeUpdate:
		if f.Before.State == Cancelled {
			return EffectRestore
		}
		return EffectUpdate
	case OutcomeCancel:
		if f.Withdrawn {
			return EffectWithdraw
		}
		return EffectCancel
	}
	if f.Before.Logged() {
		return EffectKeep
	}
	return EffectNone
}

// Change is how a meeting's verdict differs between two rule sets.
type Change string

// Changes.
const (
	NewlyLogged    Change = "newly_logged"
	NoLongerLogged Change = "no_longer_logged"
	Unchanged      Change = "unchanged"
)

// Compare says how the candidate rules' verdict on a meeting differs from
// the live rules'.
func Compare(live, candidate *Fate) Change {
	switch l, c := live.Logs(), candidate.Logs(); {
	case !l && c:
		return NewlyLogged
	case l && !c:
		return NoLongerLogged
	}
	return Unchanged
}
