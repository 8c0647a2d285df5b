-- Notification owns recipients and their preferences, its copy of the
-- analyst directory and of callers' contacts, tenant webhook endpoints,
-- template overrides, and deliveries with every attempt. Contact data here
-- is staff data; nothing in this database is ever a ticket's free text.

-- Who may be notified. CALLER/ANALYST/SUPERVISOR/ON_CALL rows are created
-- from intake's and routing's events (subject_id = caller_id or analyst_id)
-- and may be edited over gRPC; CUSTOM rows only over gRPC.
CREATE TABLE recipients (
    recipient_id       UUID PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    kind               SMALLINT NOT NULL,
    subject_id         TEXT NOT NULL DEFAULT '',
    name               TEXT NOT NULL,
    email              TEXT NOT NULL DEFAULT '',
    phone              TEXT NOT NULL DEFAULT '',
    pager              TEXT NOT NULL DEFAULT '',
    -- True once an admin set the addresses: events no longer overwrite them.
    addresses_managed  BOOLEAN NOT NULL DEFAULT FALSE,
    -- Encoded wardline.notification.v1.Preferences; NULL = the kind's defaults.
    preferences        BYTEA,
    -- False when the directory no longer says so (e.g. no longer on call).
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    version            BIGINT NOT NULL DEFAULT 1,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX recipients_subject ON recipients (tenant_id, kind, subject_id) WHERE kind <> 5;
CREATE INDEX recipients_tenant_kind ON recipients (tenant_id, kind) WHERE active;

-- The analyst directory as routing publishes it (analyst.upserted), newest
-- version wins.
CREATE TABLE analysts (
    analyst_id  TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    supervisor  BOOLEAN NOT NULL,
    on_call     BOOLEAN NOT NULL,
    tenants     TEXT[] NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What notification knows of a ticket: codes from the snapshots, and the
-- caller's contact from TicketCreated (never the description or notes).
CREATE TABLE tickets (
    ticket_id       UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    number          TEXT NOT NULL,
    caller_id       TEXT NOT NULL,
    caller_name     TEXT NOT NULL DEFAULT '',
    caller_email    TEXT NOT NULL DEFAULT '',
    caller_phone    TEXT NOT NULL DEFAULT '',
    priority        SMALLINT NOT NULL,
    status          SMALLINT NOT NULL,
    category        SMALLINT NOT NULL,
    assignee        TEXT NOT NULL DEFAULT '',
    ticket_version  BIGINT NOT NULL,
    routing_seq     BIGINT NOT NULL DEFAULT 0,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A tenant's webhook endpoints. Secrets are kept to sign with (they cannot
-- be hashed); the previous one signs too until previous_expires_at.
CREATE TABLE webhook_endpoints (
    endpoint_id          UUID PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    url                  TEXT NOT NULL,
    event_kinds          SMALLINT[] NOT NULL,
    secret               TEXT NOT NULL,
    secret_issued_at     TIMESTAMPTZ NOT NULL,
    previous_secret      TEXT,
    previous_expires_at  TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at           TIMESTAMPTZ
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at) WHERE deleted_at IS NULL;

-- A tenant's override of a shipped template.
CREATE TABLE template_overrides (
    tenant_id   TEXT NOT NULL,
    event_kind  SMALLINT NOT NULL,
    channel     SMALLINT NOT NULL,
    subject     TEXT NOT NULL DEFAULT '',
    body        TEXT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_kind, channel)
);

-- One message to one recipient (or endpoint) on one channel for one event.
-- UNIQUE (source_event_id, target, channel) is the de-duplication rule: a
-- redelivered or replayed event can never create a second delivery.
CREATE TABLE deliveries (
    delivery_id       UUID PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    source_event_id   UUID NOT NULL,
    event_kind        SMALLINT NOT NULL,
    channel           SMALLINT NOT NULL,
    recipient_id      UUID,
    endpoint_id       UUID,
    -- recipient_id or endpoint_id as text: the de-duplication target.
    target            TEXT NOT NULL,
    address           TEXT NOT NULL,
    ticket_id         UUID,
    number            TEXT NOT NULL DEFAULT '',
    priority          SMALLINT NOT NULL DEFAULT 0,
    -- Template variables (ids, number, codes, links only).
    vars              JSONB NOT NULL,
    -- 1 pending, 2 retry scheduled, 3 deferred (quiet hours), 4 finished.
    state             SMALLINT NOT NULL,
    -- DeliveryStatus once finished (1 delivered, 2 failed, 3 dead-lettered).
    outcome           SMALLINT NOT NULL DEFAULT 0,
    attempt_count     INT NOT NULL DEFAULT 0,
    -- attempt_count when the current retry schedule started (RetryDelivery).
    attempts_base     INT NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ,
    -- Set while an attempt is in flight (claimed, not yet recorded). A row
    -- whose claim is older than the lease lost its sender: the reconciler
    -- records that attempt as interrupted and schedules the next.
    sending_since     TIMESTAMPTZ,
    -- Trace context of the transaction that recorded it: every attempt's
    -- span continues the ticket's trace.
    traceparent       TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at       TIMESTAMPTZ,
    UNIQUE (source_event_id, target, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state <> 4 AND sending_since IS NULL;
CREATE INDEX deliveries_in_flight ON deliveries (sending_since) WHERE sending_since IS NOT NULL;
CREATE INDEX deliveries_tenant_created ON deliveries (tenant_id, created_at DESC, delivery_id DESC);
CREATE INDEX deliveries_dead ON deliveries (tenant_id, finished_at DESC, delivery_id DESC) WHERE outcome = 3;

-- Every attempt of a delivery. A row is written (outcome NULL) when the
-- attempt starts, before anything is sent, and completed after.
CREATE TABLE delivery_attempts (
    delivery_id    UUID NOT NULL REFERENCES deliveries (delivery_id) ON DELETE CASCADE,
    attempt        INT NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ,
    -- AttemptOutcome; NULL while in flight.
    outcome        SMALLINT,
    status_code    INT NOT NULL DEFAULT 0,
    error_class    SMALLINT NOT NULL DEFAULT 0,
    next_retry_at  TIMESTAMPTZ,
    PRIMARY KEY (delivery_id, attempt)
);

-- Wake the sender when deliveries commit (NOTIFY is delivered at commit).
CREATE FUNCTION wardline_deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wardline_deliveries', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_notify AFTER INSERT OR UPDATE OF next_attempt_at ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION wardline_deliveries_notify();
