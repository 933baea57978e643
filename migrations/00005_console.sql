-- The operator console: each meeting's write history, and indices for
-- searching the ledger by start, attendee domain and company. The history
-- keeps ids and times only: what was written (created, updated, cancelled,
-- adopted, deleted in the CRM), when, and the CRM id it concerned — never a
-- title or an address. The search reads the decision trace, which holds
-- domains, company ids and names, and rule names only.

-- +goose Up
CREATE TABLE meeting_events (
    id             bigserial PRIMARY KEY,
    meeting_id     bigint NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL DEFAULT now(),
    kind           text NOT NULL CHECK (kind IN ('created', 'updated', 'cancelled', 'adopted', 'deleted_in_crm')),
    crm_meeting_id text
);
CREATE INDEX meeting_events_meeting ON meeting_events (meeting_id, at, id);

CREATE INDEX meetings_starts_at ON meetings (workspace_id, starts_at, id);
-- trace @> '{"attendees":[{"domain":"acme.example"}]}' and
-- trace @> '{"companies":[{"id":"101"}]}'.
CREATE INDEX meetings_trace ON meetings USING gin (trace jsonb_path_ops);

-- +goose Down
DROP INDEX meetings_trace;
DROP INDEX meetings_starts_at;
DROP TABLE meeting_events;
