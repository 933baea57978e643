-- Everything pending is derivable from the ledger: the sweep (pipeline's
-- sweep.go) finds each kind of pending work with one indexed query and
-- re-queues what waited past a grace period. dirty_at is when a calendar's
-- dirty counter last moved, so a dirty calendar's wait is measurable.

-- +goose Up
ALTER TABLE calendars ADD COLUMN dirty_at timestamptz;
-- Meetings whose CRM write is owed: to create, of unknown outcome, to
-- update or cancel (the calendar's state differs from what was written).
CREATE INDEX meetings_unwritten ON meetings (updated_at)
    WHERE state IN ('pending', 'creating') OR (state IN ('logged', 'cancelled') AND desired_hash IS DISTINCT FROM owned_hash);
-- Meetings in the CRM, by when they were written: their copies' write-backs.
CREATE INDEX meetings_written ON meetings (written_at) WHERE crm_meeting_id IS NOT NULL;
-- Calendars with notifications not yet covered by a finished sync, or never
-- synced.
CREATE INDEX calendars_unsynced ON calendars (dirty_at) WHERE dirty > synced_dirty OR last_synced_at IS NULL;
CREATE INDEX calendars_channel_expiry ON calendars (channel_expires_at) WHERE channel_id IS NOT NULL;
CREATE INDEX connections_token_expiry ON connections (token_expires_at) WHERE status = 'active' AND token_expires_at IS NOT NULL;

-- +goose Down
DROP INDEX connections_token_expiry;
DROP INDEX calendars_channel_expiry;
DROP INDEX calendars_unsynced;
DROP INDEX meetings_written;
DROP INDEX meetings_unwritten;
ALTER TABLE calendars DROP COLUMN dirty_at;
