-- Intake owns tenants, facilities, tickets and notes. Every tenant-data row
-- carries tenant_id and every query is scoped by it.

CREATE TABLE tenants (
    tenant_id            TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    time_zone            TEXT NOT NULL,
    ticket_prefix        TEXT NOT NULL UNIQUE,
    reopen_window_hours  INT NOT NULL,
    active               BOOLEAN NOT NULL DEFAULT TRUE,
    -- Last ticket number handed out; bumped under the row lock.
    last_ticket_seq      BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE facilities (
    tenant_id    TEXT NOT NULL REFERENCES tenants (tenant_id),
    facility_id  TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, facility_id)
);

CREATE TABLE tickets (
    ticket_id                UUID PRIMARY KEY,
    tenant_id                TEXT NOT NULL REFERENCES tenants (tenant_id),
    seq                      BIGINT NOT NULL,
    number                   TEXT NOT NULL,
    facility_id              TEXT NOT NULL,
    caller_id                TEXT NOT NULL,
    caller_name              TEXT NOT NULL,
    caller_role              SMALLINT NOT NULL,
    caller_email             TEXT NOT NULL DEFAULT '',
    caller_phone             TEXT NOT NULL DEFAULT '',
    channel                  SMALLINT NOT NULL,
    application              TEXT NOT NULL,
    category                 SMALLINT NOT NULL,
    category_classified      BOOLEAN NOT NULL,
    urgency                  SMALLINT NOT NULL,
    impact                   SMALLINT NOT NULL,
    patient_care_blocked     BOOLEAN NOT NULL,
    priority                 SMALLINT NOT NULL,
    status                   SMALLINT NOT NULL,
    -- Free text; may contain PHI. Never copied into events, logs or spans.
    description              TEXT NOT NULL,
    assignee_analyst_id      TEXT NOT NULL DEFAULT '',
    previous_analyst_id      TEXT NOT NULL DEFAULT '',
    queued                   BOOLEAN NOT NULL DEFAULT FALSE,
    escalation_level         SMALLINT NOT NULL DEFAULT 0,
    breached_targets         SMALLINT[] NOT NULL DEFAULT '{}',
    resolution_code          SMALLINT NOT NULL DEFAULT 0,
    first_contact_resolution BOOLEAN NOT NULL DEFAULT FALSE,
    reopen_count             INT NOT NULL DEFAULT 0,
    version                  BIGINT NOT NULL,
    -- Highest routing sequence applied (routing's per-ticket event version).
    routing_seq              BIGINT NOT NULL DEFAULT 0,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL,
    acknowledged_at          TIMESTAMPTZ,
    resolved_at              TIMESTAMPTZ,
    closed_at                TIMESTAMPTZ,
    UNIQUE (tenant_id, number),
    UNIQUE (tenant_id, seq),
    FOREIGN KEY (tenant_id, facility_id) REFERENCES facilities (tenant_id, facility_id)
);
-- Listing is newest first by id (UUIDv7 is time-ordered) within a tenant.
CREATE INDEX tickets_tenant_id ON tickets (tenant_id, ticket_id DESC);
CREATE INDEX tickets_tenant_status ON tickets (tenant_id, status, ticket_id DESC);
CREATE INDEX tickets_tenant_assignee ON tickets (tenant_id, assignee_analyst_id, ticket_id DESC)
    WHERE assignee_analyst_id <> '';

CREATE TABLE notes (
    note_id     UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    ticket_id   UUID NOT NULL REFERENCES tickets (ticket_id),
    author_id   TEXT NOT NULL,
    -- Free text; may contain PHI.
    body        TEXT NOT NULL,
    public      BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX notes_ticket ON notes (tenant_id, ticket_id, note_id);
