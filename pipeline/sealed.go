package pipeline

import (
	"encoding/json"
	"fmt"
)

// Task payloads live in Redis, and so in its snapshots and backups. Those
// of crm:write and crm:write:batch carry a meeting's desired state (title,
// body, location, attendee addresses): they are sealed with the vault's
// first key (AES-256-GCM; the key id travels inside, and any configured key
// opens it), bound to the meeting key. Ids stay in the clear, for dead
// letters and logs. Every other payload carries ids only.

// sealedWrite is a crm:write payload as queued.
type sealedWrite struct {
	WorkspaceID  string `json:"workspace_id"`
	ConnectionID string `json:"connection_id"`
	Key          string `json:"key"`
	// Sealed is the writePayload, JSON, sealed under writeAD(Key).
	Sealed []byte `json:"sealed"`
}

// writeAD binds a sealed write to its meeting: a payload copied onto
// another meeting's task does not open.
func writeAD(key string) string { return "crm:write:" + key }

// sealWrite encodes a write for the queue.
func (c *core) sealWrite(w writePayload) ([]byte, error) {
	plain, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode write: %w", err)
	}
	sealed, err := c.cfg.Vault.Seal(writeAD(w.Key), plain)
	if err != nil {
		return nil, fmt.Errorf("seal write of %s: %w", w.Key, err)
	}
	return json.Marshal(sealedWrite{WorkspaceID: w.WorkspaceID, ConnectionID: w.ConnectionID, Key: w.Key, Sealed: sealed})
}

// openWrite decodes a write from the queue.
func (c *core) openWrite(raw []byte) (writePayload, error) {
	var sw sealedWrite
	if err := json.Unmarshal(raw, &sw); err != nil {
		return writePayload{}, fmt.Errorf("decode write: %w", err)
	}
	plain, err := c.cfg.Vault.Open(writeAD(sw.Key), sw.Sealed)
	if err != nil {
		return writePayload{}, fmt.Errorf("open write of %s: %w", sw.Key, err)
	}
	var w writePayload
	if err := json.Unmarshal(plain, &w); err != nil {
		return writePayload{}, fmt.Errorf("decode write of %s: %w", sw.Key, err)
	}
	if w.Key != sw.Key {
		return writePayload{}, fmt.Errorf("sealed write of %s names %s", sw.Key, w.Key)
	}
	return w, nil
}
