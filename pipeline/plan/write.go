package plan

import "time"

// Write is one meeting's CRM write as the sync queued it.
type Write struct {
	Key     string
	Hash    string
	Desired Desired
	// DecidedAt is when the sync recorded the decision: the write is queued
	// before that decision commits, so a batch that finds an older ledger
	// row waits for it.
	DecidedAt time.Time
}

// Op is a write with its meeting's ledger row.
type Op struct {
	W   Write
	Row Meeting
}

// TriageInput is what the triage of a write batch depends on.
type TriageInput struct {
	// Writes are the batch's writes, the latest per meeting, in key order.
	Writes []Write
	// Rows are the meetings' ledger rows, locked, by key.
	Rows map[string]Meeting
	// InFlight holds the create attempts another process is sending now.
	InFlight map[string]bool
	Now      time.Time
	// SearchLag is how long a created CRM record may stay invisible to
	// search; UniqueKey says the CRM finds a record by its key at once
	// (an upsert), so no lag applies.
	SearchLag time.Duration
	UniqueKey bool
	// DecisionWait is how long a write waits for its decision to commit.
	DecisionWait time.Duration
	// Budget is how many attempts a meeting's write gets (its row's
	// Attempts count them); a write that used them all is exhausted, not
	// sent. Zero: no limit.
	Budget int
}

// Triage is what a write batch does.
type Triage struct {
	// Creates are new meetings; Recovers creates whose outcome is unknown,
	// searched for before they are sent again; Updates change (or cancel)
	// meetings in the CRM.
	Creates, Recovers, Updates []Op
	// Invisible counts writes whose decision has not committed yet.
	Invisible int
	// SearchWait is how long until a create of unknown outcome may be
	// searched for; zero when none waits.
	SearchWait time.Duration
	// Exhausted are writes whose meeting used up its attempts: parked with
	// a dead letter instead of sent, so that no batch retries forever.
	Exhausted []Op
}

// TriageWrites sorts a batch's writes into creates, recoveries and updates.
// A write superseded by a newer decision, a cancellation of a meeting never
// created and a meeting a person deleted in the CRM need nothing; a create
// another batch is sending, or whose record may not be searchable yet,
// waits while the rest go on.
func TriageWrites(in TriageInput) Triage {
	var t Triage
	wait := func(d time.Duration) {
		if t.SearchWait == 0 || d < t.SearchWait {
			t.SearchWait = d
		}
	}
	for _, w := range in.Writes {
		row, ok := in.Rows[w.Key]
		if !ok || (row.DesiredHash != w.Hash && row.UpdatedAt.Before(w.DecidedAt)) {
			// The sync that queued this write has not committed its
			// decision yet, or it rolled back: wait a little, then let it go.
			if in.Now.Sub(w.DecidedAt) < in.DecisionWait {
				t.Invisible++
			}
			continue
		}
		var into *[]Op
		switch {
		case row.DesiredHash != w.Hash, row.State == DeletedInCRM, row.State == Failed:
			// Superseded by a newer decision, deleted by a person, or
			// parked since it was queued (a new decision or the dead
			// letter's retry re-drives it).
		case row.CRMID == "" && w.Desired.Cancel:
		case row.CRMID == "" && (row.State == Creating || row.AttemptID != ""):
			// A create was sent and its outcome never recorded (a parked
			// one re-decided keeps its attempt id): search before sending.
			switch {
			case row.AttemptID != "" && in.InFlight[row.AttemptID]:
				// Another batch is sending this create right now (it may be
				// waiting out a rate limit): searching now could miss it.
				wait(time.Second)
			case !in.UniqueKey && in.Now.Sub(row.UpdatedAt) < in.SearchLag:
				// Its create may not be searchable yet.
				wait(row.UpdatedAt.Add(in.SearchLag).Sub(in.Now))
			default:
				into = &t.Recovers
			}
		case row.CRMID == "":
			into = &t.Creates
		case row.OwnedHash != w.Hash || row.State == Cancelled:
			into = &t.Updates
		}
		if into == nil {
			continue
		}
		if in.Budget > 0 && row.Attempts >= in.Budget {
			into = &t.Exhausted
		}
		*into = append(*into, Op{w, row})
	}
	return t
}

// Adopt returns the ops of creates and recoveries that found an existing
// CRM record (found, by meeting key): they become updates of that record,
// with associations unknown (added, never removed). The rest are creates.
func Adopt(ops []Op, found map[string]string) (creates, adopted []Op) {
	for _, o := range ops {
		id, ok := found[o.W.Key]
		if !ok {
			creates = append(creates, o)
			continue
		}
		o.Row.CRMID = id
		o.Row.CompanyIDs, o.Row.ContactIDs = nil, nil
		o.Row.OwnedHash = ""
		adopted = append(adopted, o)
	}
	return creates, adopted
}

// AssociationDiff is what an update changes of a meeting's associations:
// add the new ones, remove only those Rapport added.
func AssociationDiff(had, want []string) (add, remove []string) {
	return minus(want, had), minus(had, want)
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		found := false
		for _, y := range b {
			if x == y {
				found = true
				break
			}
		}
		if !found {
			out = append(out, x)
		}
	}
	return out
}
