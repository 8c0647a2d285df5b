-- Routing owns the analyst directory, routing rules, SLA targets, its view
-- of tickets, assignments (with the recorded explanation) and SLA timers.

CREATE TABLE analysts (
    analyst_id      TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    email           TEXT NOT NULL DEFAULT '',
    phone           TEXT NOT NULL DEFAULT '',
    pager           TEXT NOT NULL DEFAULT '',
    time_zone       TEXT NOT NULL,
    credentials     SMALLINT[] NOT NULL DEFAULT '{}',
    languages       TEXT[] NOT NULL DEFAULT '{}',
    max_concurrent  INT NOT NULL CHECK (max_concurrent BETWEEN 1 AND 100),
    availability    SMALLINT NOT NULL,
    supervisor      BOOLEAN NOT NULL DEFAULT FALSE,
    tier2           BOOLEAN NOT NULL DEFAULT FALSE,
    on_call         BOOLEAN NOT NULL DEFAULT FALSE,
    -- Tickets held (assigned or acknowledged, not resolved). Raised only by
    -- a conditional UPDATE that checks max_concurrent, so concurrent
    -- replicas can never push an analyst over capacity.
    current_load    INT NOT NULL DEFAULT 0 CHECK (current_load >= 0),
    idle_since      TIMESTAMPTZ NOT NULL DEFAULT now(),
    version         BIGINT NOT NULL DEFAULT 1,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tenants (and facilities; empty = all) an analyst covers. tenant_id '*' = every tenant.
CREATE TABLE analyst_coverage (
    analyst_id    TEXT NOT NULL REFERENCES analysts (analyst_id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    facility_ids  TEXT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (analyst_id, tenant_id)
);
CREATE INDEX analyst_coverage_tenant ON analyst_coverage (tenant_id, analyst_id);

CREATE TABLE analyst_skills (
    analyst_id  TEXT NOT NULL REFERENCES analysts (analyst_id) ON DELETE CASCADE,
    module      SMALLINT NOT NULL,
    level       SMALLINT NOT NULL CHECK (level BETWEEN 1 AND 5),
    PRIMARY KEY (analyst_id, module)
);

-- Weekly shifts in the analyst's time zone; end <= start crosses midnight.
CREATE TABLE analyst_shifts (
    analyst_id    TEXT NOT NULL REFERENCES analysts (analyst_id) ON DELETE CASCADE,
    day_of_week   SMALLINT NOT NULL CHECK (day_of_week BETWEEN 1 AND 7),
    start_minute  INT NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute    INT NOT NULL CHECK (end_minute BETWEEN 0 AND 1439)
);
CREATE INDEX analyst_shifts_analyst ON analyst_shifts (analyst_id);

-- A tenant's override of the shipped rule for one category.
CREATE TABLE category_rules (
    tenant_id             TEXT NOT NULL,
    category              SMALLINT NOT NULL,
    required_modules      SMALLINT[] NOT NULL,
    min_levels            SMALLINT[] NOT NULL,
    credential_policy     SMALLINT NOT NULL,
    accepted_credentials  SMALLINT[] NOT NULL DEFAULT '{}',
    version               BIGINT NOT NULL DEFAULT 1,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, category)
);

-- A tenant's SLA targets (minutes per priority P1..P4, index 1..4).
CREATE TABLE sla_targets (
    tenant_id                 TEXT PRIMARY KEY,
    response_minutes          INT[] NOT NULL,
    resolution_minutes        INT[] NOT NULL,
    ack_timeout_seconds       INT NOT NULL,
    pause_resolution_on_hold  BOOLEAN NOT NULL DEFAULT FALSE,
    version                   BIGINT NOT NULL DEFAULT 1,
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Routing's view of a ticket (codes and ids only, from intake's snapshots).
CREATE TABLE tickets (
    ticket_id            UUID PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    number               TEXT NOT NULL,
    facility_id          TEXT NOT NULL,
    category             SMALLINT NOT NULL,
    clinical_category    BOOLEAN NOT NULL,
    caller_role          SMALLINT NOT NULL,
    priority             SMALLINT NOT NULL,
    -- Intake's ticket version last applied (older events are skipped).
    ticket_version       BIGINT NOT NULL,
    -- Sequence of routing's own events about this ticket.
    routing_seq          BIGINT NOT NULL DEFAULT 0,
    -- 1 waiting (queued), 2 assigned (pending ack), 3 acknowledged, 4 done.
    state                SMALLINT NOT NULL,
    assignee             TEXT NOT NULL DEFAULT '',
    previous_analyst_id  TEXT NOT NULL DEFAULT '',
    -- Analysts who timed out on or handed back this ticket.
    excluded_analysts    TEXT[] NOT NULL DEFAULT '{}',
    queued_at            TIMESTAMPTZ,
    queue_reason         TEXT NOT NULL DEFAULT '',
    escalation_level     SMALLINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL,
    response_due         TIMESTAMPTZ NOT NULL,
    resolution_due       TIMESTAMPTZ NOT NULL,
    responded_at         TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tickets_queue ON tickets (tenant_id, priority, created_at) WHERE state = 1;

CREATE TABLE assignments (
    assignment_id    UUID PRIMARY KEY,
    ticket_id        UUID NOT NULL REFERENCES tickets (ticket_id),
    tenant_id        TEXT NOT NULL,
    analyst_id       TEXT NOT NULL,
    attempt          INT NOT NULL,
    state            SMALLINT NOT NULL,
    trigger          SMALLINT NOT NULL,
    assigned_at      TIMESTAMPTZ NOT NULL,
    ack_deadline     TIMESTAMPTZ NOT NULL,
    acknowledged_at  TIMESTAMPTZ,
    ended_at         TIMESTAMPTZ,
    ticket_version   BIGINT NOT NULL,
    -- Encoded wardline.routing.v1.AssignmentExplanation, recorded at decision time.
    explanation      BYTEA NOT NULL
);
CREATE INDEX assignments_tenant ON assignments (tenant_id, assignment_id DESC);
CREATE INDEX assignments_ticket ON assignments (ticket_id);
CREATE INDEX assignments_analyst ON assignments (analyst_id, assignment_id DESC);
-- At most one live assignment per ticket, whatever the replicas do.
CREATE UNIQUE INDEX assignments_one_live ON assignments (ticket_id) WHERE state IN (1, 2);

-- SLA and acknowledgement timers: rows with deadlines, fired (deleted) by
-- the scanner in the same transaction as their effect, so a restart loses none.
CREATE TABLE timers (
    ticket_id      UUID NOT NULL REFERENCES tickets (ticket_id),
    kind           SMALLINT NOT NULL, -- 1 ack, 2 response, 3 resolution
    tenant_id      TEXT NOT NULL,
    due_at         TIMESTAMPTZ NOT NULL,
    assignment_id  UUID,
    PRIMARY KEY (ticket_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);
