-- The first schema. PostgreSQL keeps identifiers, cursors, hashes and
-- decisions — never calendar content: no event titles, descriptions or
-- attendee addresses (ARCHITECTURE.md section 6). Tokens are stored only as
-- AES-256-GCM ciphertext with the id of the key that sealed them.

-- +goose Up
CREATE TABLE workspaces (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text NOT NULL CHECK (name <> ''),
    internal_domains text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE connections (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider         text NOT NULL CHECK (provider IN ('google', 'hubspot', 'microsoft', 'calendly')),
    -- account is the provider account: the employee's sign-in for a calendar,
    -- the portal id for a CRM.
    account          text NOT NULL CHECK (account <> ''),
    token_key_id     text NOT NULL CHECK (token_key_id <> ''),
    token_ciphertext bytea NOT NULL,
    token_expires_at timestamptz,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    last_error       text,
    -- crm_unique_key: the portal's meeting-key property has unique values
    -- (HubSpot only; null until the portal is prepared).
    crm_unique_key   boolean,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, provider, account)
);

CREATE TABLE calendars (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id        uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id       uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    calendar_id         text NOT NULL CHECK (calendar_id <> ''),
    cursor              text,
    channel_id          text UNIQUE,
    channel_resource_id text,
    channel_token_hash  bytea,
    channel_expires_at  timestamptz,
    -- dirty counts notifications; a sync that finishes compares it with the
    -- value it started from, so a notification during a sync is never lost.
    dirty               bigint NOT NULL DEFAULT 0,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'error')),
    last_synced_at      timestamptz,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connection_id, calendar_id),
    CHECK ((channel_id IS NULL) = (channel_token_hash IS NULL))
);

-- The CRM company domain index: normalised domains per company.
CREATE TABLE crm_companies (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    company_id   text NOT NULL,
    name         text NOT NULL DEFAULT '',
    domains      text[] NOT NULL DEFAULT '{}',
    modified_at  timestamptz,
    PRIMARY KEY (workspace_id, company_id)
);
CREATE INDEX crm_companies_domains ON crm_companies USING gin (domains);

CREATE TABLE crm_index_state (
    workspace_id      uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    modified_cursor   timestamptz,
    loaded_at         timestamptz,
    companies         integer NOT NULL DEFAULT 0,
    free_mail_skipped integer NOT NULL DEFAULT 0
);

-- The meetings ledger: one row per (workspace, meeting key).
CREATE TABLE meetings (
    id             bigserial PRIMARY KEY,
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    meeting_key    text NOT NULL CHECK (meeting_key ~ '^[0-9a-f]{64}$'),
    state          text NOT NULL CHECK (state IN (
                       'skipped',        -- decided not to log
                       'pending',        -- to be created in the CRM
                       'creating',       -- create sent, outcome unknown until recorded
                       'logged',         -- in the CRM, current
                       'cancelled',      -- cancelled in the CRM
                       'deleted_in_crm', -- a person deleted it in the CRM: stays deleted
                       'failed')),       -- parked: see dead_letters
    action         text NOT NULL CHECK (action IN ('log', 'skip')),
    rule           text NOT NULL,
    rules_version  text NOT NULL,
    -- trace: the decision trace (rules evaluated, attendee domains and
    -- classes, companies matched) — domains only, never addresses.
    trace          jsonb NOT NULL DEFAULT '{}',
    crm_meeting_id text,
    -- owned_hash: hash of the calendar-owned fields last written to the CRM.
    owned_hash     text,
    -- desired_hash: hash of the calendar-owned fields the calendar now has.
    desired_hash   text,
    company_ids    text[] NOT NULL DEFAULT '{}', -- associations Rapport wrote
    contact_ids    text[] NOT NULL DEFAULT '{}',
    starts_at      timestamptz,
    attempt_id     uuid,
    attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error     text,
    decided_at     timestamptz NOT NULL DEFAULT now(),
    written_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, meeting_key),
    CHECK (state NOT IN ('logged', 'cancelled') OR crm_meeting_id IS NOT NULL),
    CHECK (state <> 'creating' OR attempt_id IS NOT NULL)
);
CREATE INDEX meetings_crm_id ON meetings (workspace_id, crm_meeting_id) WHERE crm_meeting_id IS NOT NULL;
CREATE INDEX meetings_state ON meetings (workspace_id, state, id);

-- The per-calendar copies of each meeting.
CREATE TABLE meeting_copies (
    calendar_id    uuid NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    event_id       text NOT NULL,
    meeting_id     bigint NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    status         text NOT NULL CHECK (status IN ('confirmed', 'tentative', 'cancelled')),
    organizer_copy boolean NOT NULL DEFAULT false,
    action         text NOT NULL CHECK (action IN ('log', 'skip')),
    rule           text NOT NULL,
    etag           text,
    -- linked_crm_id: the CRM id written back into this copy's private
    -- extended properties (null until the link is written).
    linked_crm_id  text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (calendar_id, event_id)
);
CREATE INDEX meeting_copies_meeting ON meeting_copies (meeting_id);

-- Terminal failures, mirrored from the queue's archive without content.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    workspace_id uuid REFERENCES workspaces (id) ON DELETE CASCADE,
    task_type    text NOT NULL,
    task_id      text NOT NULL,
    queue        text NOT NULL,
    -- ref: the ids the task was about (calendar, meeting keys), no content.
    ref          jsonb NOT NULL DEFAULT '{}',
    class        text NOT NULL CHECK (class IN ('permanent', 'auth', 'exhausted', 'not_found')),
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retried_at   timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (id) WHERE retried_at IS NULL;

CREATE TABLE reconciliation_runs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    calendar_id  uuid REFERENCES calendars (id) ON DELETE CASCADE,
    dry_run      boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    checked      integer NOT NULL DEFAULT 0,
    created      integer NOT NULL DEFAULT 0,
    updated      integer NOT NULL DEFAULT 0,
    cancelled    integer NOT NULL DEFAULT 0,
    unchanged    integer NOT NULL DEFAULT 0,
    errors       jsonb NOT NULL DEFAULT '[]',
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK ((status = 'running') = (finished_at IS NULL))
);

-- +goose Down
DROP TABLE reconciliation_runs;
DROP TABLE dead_letters;
DROP TABLE meeting_copies;
DROP TABLE meetings;
DROP TABLE crm_index_state;
DROP TABLE crm_companies;
DROP TABLE calendars;
DROP TABLE connections;
DROP TABLE workspaces;
