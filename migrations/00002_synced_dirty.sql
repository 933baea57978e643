-- synced_dirty is the dirty counter a finished sync covered: a sync task
-- for a notification at or below it has nothing left to do.

-- +goose Up
ALTER TABLE calendars ADD COLUMN synced_dirty bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE calendars DROP COLUMN synced_dirty;
