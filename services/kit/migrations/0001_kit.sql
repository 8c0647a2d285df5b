-- Tables every Wardline service has, owned by wardline-kit. Their history
-- lives in _wardline_kit_migrations, apart from the service's own.

-- Transactional outbox: a state change and its event commit together; the
-- relay publishes unsent rows to JetStream and marks them sent after the PubAck.
CREATE TABLE outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    traceparent  TEXT,
    tracestate   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at      TIMESTAMPTZ,
    attempts     INT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Inbox: ids of events this service has applied. A consumer's transaction
-- inserts here first; a redelivered event conflicts and changes nothing.
CREATE TABLE inbox (
    event_id     UUID PRIMARY KEY,
    subject      TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Poison or exhausted events, with the reason; served by the service's API
-- and counted in metrics. Never silently dropped.
CREATE TABLE dead_letters (
    event_id      UUID PRIMARY KEY,
    subject       TEXT NOT NULL,
    tenant_id     TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL,
    deliveries    INT NOT NULL,
    payload       BYTEA NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Idempotency keys of mutating RPCs: the first response is kept and
-- returned to retries; a different request under the same key is refused.
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    operation    TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    response     BYTEA,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Wake the relay when outbox rows commit (NOTIFY is delivered at commit,
-- once per transaction), so publishing never waits for the polling interval.
CREATE FUNCTION wardline_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wardline_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION wardline_outbox_notify();
