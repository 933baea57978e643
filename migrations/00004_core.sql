-- A calendar the provider says no longer exists is 'gone': not synced
-- until its connection is imported again. A copy cancelled because its
-- booking was rescheduled does not cancel its meeting.

-- +goose Up
ALTER TABLE calendars DROP CONSTRAINT calendars_status_check;
ALTER TABLE calendars ADD CONSTRAINT calendars_status_check CHECK (status IN ('active', 'paused', 'error', 'gone'));
ALTER TABLE meeting_copies ADD COLUMN rescheduled boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE meeting_copies DROP COLUMN rescheduled;
UPDATE calendars SET status = 'error' WHERE status = 'gone';
ALTER TABLE calendars DROP CONSTRAINT calendars_status_check;
ALTER TABLE calendars ADD CONSTRAINT calendars_status_check CHECK (status IN ('active', 'paused', 'error'));
