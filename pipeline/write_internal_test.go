package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rapportsync/rapport/internal/testenv"
)

// TestWriteWaitsForUncommittedDecision: writes are queued before the sync
// commits its decision, so a batch that runs first must wait for the
// ledger row, not drop the write (it once lost meetings this way).
func TestWriteWaitsForUncommittedDecision(t *testing.T) {
	ctx := context.Background()
	pool := testenv.DB(t)
	p, err := New(Config{Pool: pool, Redis: testenv.Redis(t), Vault: noVault{}, Providers: testProviders})
	if err != nil {
		t.Fatal(err)
	}
	var ws, conn string
	if err := pool.QueryRow(ctx, `INSERT INTO workspaces (name, internal_domains) VALUES ('W', '{w.test}') RETURNING id`).Scan(&ws); err != nil {
		t.Fatal(err)
	}
	// Its HubSpot connection's token opens with no configured key: left
	// behind, the next tests' index schedule would retry it forever.
	t.Cleanup(func() { pool.Exec(context.Background(), `DELETE FROM workspaces WHERE id = $1`, ws) })
	if err := pool.QueryRow(ctx, `INSERT INTO connections (workspace_id, provider, account, token_key_id, token_ciphertext) VALUES ($1, 'hubspot', '1', 'k', '\x00') RETURNING id`, ws).Scan(&conn); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("a1", 32)
	batch := func(decided time.Time) *asynq.Task {
		w, _ := p.sealWrite(writePayload{WorkspaceID: ws, ConnectionID: conn, Key: key, Hash: "h1", DecidedAt: decided})
		b, _ := json.Marshal([]json.RawMessage{w})
		return asynq.NewTask(TaskWriteBatch, b)
	}
	err = p.write.handle(ctx, batch(time.Now()))
	var ra *retryAfter
	if !errors.As(err, &ra) {
		t.Fatalf("write for a decision not yet committed: %v, want a retry", err)
	}
	// A row that is older than the decision: still not committed.
	if _, err := pool.Exec(ctx, `INSERT INTO meetings (workspace_id, meeting_key, state, action, rule, rules_version, desired_hash, updated_at)
		VALUES ($1, $2, 'skipped', 'skip', 'default', 'v', 'h0', now() - interval '1 minute')`, ws, key); err != nil {
		t.Fatal(err)
	}
	if err := p.write.handle(ctx, batch(time.Now())); !errors.As(err, &ra) {
		t.Fatalf("write newer than the ledger row: %v, want a retry", err)
	}
	// A decision that never committed (the sync rolled back) is let go.
	if err := p.write.handle(ctx, batch(time.Now().Add(-3*time.Minute))); err != nil {
		t.Fatalf("write for a decision that never committed: %v, want it dropped", err)
	}
	// A newer committed decision supersedes the write.
	if _, err := pool.Exec(ctx, `UPDATE meetings SET desired_hash = 'h2', updated_at = now() WHERE meeting_key = $1`, key); err != nil {
		t.Fatal(err)
	}
	if err := p.write.handle(ctx, batch(time.Now().Add(-time.Second))); err != nil {
		t.Fatalf("superseded write: %v, want it skipped", err)
	}
}

// TestRefOfLeavesPayloadAlone: the dead letter's reference is read from
// the task's payload, which Asynq then archives and re-runs as it is. It
// once decoded into the payload's own memory, and a parked batch re-run
// after re-authorisation failed to decode.
func TestRefOfLeavesPayloadAlone(t *testing.T) {
	one := `{"workspace_id":"w","connection_id":"c","key":"k1","sealed":"AAAA"}`
	two := `{"workspace_id":"w","connection_id":"c","key":"k2","sealed":"BBBBBBBB"}`
	payload := []byte("[" + one + "," + two + "]")
	want := string(payload)
	ref := refOf(asynq.NewTask(TaskWriteBatch, payload))
	if string(payload) != want {
		t.Fatalf("payload changed by refOf:\n got %s\nwant %s", payload, want)
	}
	keys, _ := ref["meeting_keys"].([]string)
	if strings.Join(keys, ",") != "k1,k2" || ref["crm_connection_id"] != "c" {
		t.Errorf("ref = %v, want meeting_keys [k1 k2] and crm_connection_id c", ref)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(payload, &raws); err != nil || len(raws) != 2 {
		t.Errorf("payload no longer decodes as a batch of two: %v", err)
	}
}
