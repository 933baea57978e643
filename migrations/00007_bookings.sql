-- A booking (Calendly) and the host's calendar copy of it are one meeting.
-- A booking copy names the calendar event it put on the host's calendar
-- (external_event_id, the provider's event id); a copy's match_hash is a
-- hash of its start and attendees, for bookings whose calendar event is
-- unknown (no address is stored, only the hash). meeting_aliases maps a
-- copy's own key to the meeting it joined.

-- +goose Up
ALTER TABLE meeting_copies ADD COLUMN booking boolean NOT NULL DEFAULT false;
ALTER TABLE meeting_copies ADD COLUMN external_event_id text;
ALTER TABLE meeting_copies ADD COLUMN match_hash text;
CREATE INDEX meeting_copies_external ON meeting_copies (external_event_id) WHERE external_event_id IS NOT NULL;
CREATE INDEX meeting_copies_match ON meeting_copies (match_hash) WHERE match_hash IS NOT NULL;
CREATE INDEX meeting_copies_event ON meeting_copies (event_id);
CREATE INDEX meeting_copies_bookings ON meeting_copies (calendar_id) WHERE booking;

CREATE TABLE meeting_aliases (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    alias_key    text NOT NULL CHECK (alias_key ~ '^[0-9a-f]{64}$'),
    meeting_key  text NOT NULL CHECK (meeting_key ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, alias_key)
);

-- +goose Down
DROP TABLE meeting_aliases;
DROP INDEX meeting_copies_bookings;
DROP INDEX meeting_copies_event;
ALTER TABLE meeting_copies DROP COLUMN match_hash;
ALTER TABLE meeting_copies DROP COLUMN external_event_id;
ALTER TABLE meeting_copies DROP COLUMN booking;
