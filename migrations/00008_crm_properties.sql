-- CRM properties the rules read (crm_properties in the rule files).
-- crm_companies.properties holds the values of the declared company
-- properties only, as HubSpot returns them (null when none is set);
-- crm_index_state.properties names the declared set those values cover,
-- so that a change of the set lists the companies in full. meetings.adopted
-- marks a meeting whose CRM record Rapport found rather than created (the
-- CRM's own calendar sync logged it, or a create whose outcome was lost
-- was found by its key): such a meeting is never withdrawn when it stops
-- qualifying. Upcoming meetings of a company are found through the
-- decision trace (meetings_trace, meetings_starts_at).

-- +goose Up
ALTER TABLE crm_companies ADD COLUMN properties jsonb;
ALTER TABLE crm_index_state ADD COLUMN properties text[] NOT NULL DEFAULT '{}';
ALTER TABLE meetings ADD COLUMN adopted boolean NOT NULL DEFAULT false;
UPDATE meetings m SET adopted = true
    WHERE EXISTS (SELECT 1 FROM meeting_events e WHERE e.meeting_id = m.id AND e.kind = 'adopted');

-- +goose Down
ALTER TABLE meetings DROP COLUMN adopted;
ALTER TABLE crm_index_state DROP COLUMN properties;
ALTER TABLE crm_companies DROP COLUMN properties;
