-- Billing owns contract versions, the calls and breaches it rates (one row
-- per event, the rated events themselves), and the periods with their
-- invoices. Charges and draft invoices are computed from these rows; an
-- issued invoice is frozen as it was issued.

-- Tenants' time zones, from intake's tenant events (periods, after hours).
CREATE TABLE tenants (
    tenant_id   TEXT PRIMARY KEY,
    time_zone   TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Contract versions never change once written; a new version is a new row.
CREATE TABLE contract_versions (
    tenant_id       TEXT NOT NULL,
    version         INT NOT NULL,
    contract_id     UUID NOT NULL,
    effective_from  DATE NOT NULL,
    -- Encoded wardline.billing.v1.Contract as created.
    body            BYTEA NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version),
    UNIQUE (tenant_id, effective_from)
);

-- One row per created ticket: the primary key makes a call billable once,
-- whatever the redeliveries, replays or duplicate publishes.
CREATE TABLE calls (
    ticket_id        UUID PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    number           TEXT NOT NULL,
    source_event_id  UUID NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    local_date       DATE NOT NULL,
    tier             SMALLINT NOT NULL,
    priority         SMALLINT NOT NULL,
    category         SMALLINT NOT NULL,
    -- Own period, and the period it is billed on (later when its own was
    -- already issued when the event arrived: a late charge).
    period           TEXT NOT NULL,
    billed_period    TEXT NOT NULL,
    late             BOOLEAN NOT NULL DEFAULT FALSE,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX calls_billed ON calls (tenant_id, billed_period);

-- One row per (ticket, target) breach.
CREATE TABLE breaches (
    ticket_id        UUID NOT NULL,
    target           SMALLINT NOT NULL,
    tenant_id        TEXT NOT NULL,
    number           TEXT NOT NULL,
    source_event_id  UUID NOT NULL,
    detected_at      TIMESTAMPTZ NOT NULL,
    priority         SMALLINT NOT NULL,
    period           TEXT NOT NULL,
    billed_period    TEXT NOT NULL,
    late             BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (ticket_id, target)
);
CREATE INDEX breaches_billed ON breaches (tenant_id, billed_period);

-- A tenant's month. Recording a call or breach takes this row FOR SHARE;
-- issuing takes it FOR UPDATE, so nothing lands in a period while (or
-- after) it is issued.
CREATE TABLE periods (
    tenant_id   TEXT NOT NULL,
    period      TEXT NOT NULL,
    invoice_id  UUID NOT NULL,
    -- 1 draft, 2 issued.
    status      SMALLINT NOT NULL DEFAULT 1,
    issued_at   TIMESTAMPTZ,
    -- Encoded wardline.billing.v1.Invoice, frozen when issued.
    invoice     BYTEA,
    PRIMARY KEY (tenant_id, period),
    UNIQUE (invoice_id)
);
