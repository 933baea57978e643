-- Connect links: an OAuth flow starts only from an admin session or from a
-- link the admin API issued. A link is signed, bound to a workspace and a
-- provider (and, where known, to the account expected to sign in), expires,
-- and is used once: used_at is set when its flow starts.

-- +goose Up
CREATE TABLE connect_links (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider       text NOT NULL CHECK (provider IN ('google', 'hubspot', 'microsoft', 'calendly')),
    -- account: the sign-in (calendars) or portal id (CRM) the link is for;
    -- empty when any account of the workspace's domains may use it.
    account        text NOT NULL DEFAULT '',
    -- allow_external: a calendar account outside the workspace's internal
    -- domains may connect through this link.
    allow_external boolean NOT NULL DEFAULT false,
    -- replace_crm: connecting a different CRM portal replaces the
    -- workspace's CRM connection (an explicit admin decision).
    replace_crm    boolean NOT NULL DEFAULT false,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connect_links_workspace ON connect_links (workspace_id, created_at);

-- The reason a connection stopped being used (replaced by another portal,
-- say), shown with the workspace.
ALTER TABLE connections ADD COLUMN replaced_by uuid REFERENCES connections (id) ON DELETE SET NULL;

-- +goose Down
ALTER TABLE connections DROP COLUMN replaced_by;
DROP TABLE connect_links;
