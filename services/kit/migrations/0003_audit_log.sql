-- The audit trail (45 CFR 164.312(b)): who read or changed what, appended
-- by the request that did it, in its own transaction (a request whose
-- record cannot be written fails). Ids only, never text: `resource_ids`
-- are row ids (ticket ids, ...), `subject` the token's subject, `peer`
-- the caller's address as the service saw it.
CREATE TABLE audit_log (
    seq           BIGSERIAL PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    tenant_id     TEXT NOT NULL,
    subject       TEXT NOT NULL,
    roles         TEXT[] NOT NULL,
    method        TEXT NOT NULL,
    resource_ids  TEXT[] NOT NULL DEFAULT '{}',
    peer          TEXT NOT NULL DEFAULT '',
    request_id    TEXT NOT NULL DEFAULT '',
    trace_id      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at DESC, seq DESC);
CREATE INDEX audit_log_resources ON audit_log USING GIN (resource_ids);

-- Append-only: no record is ever changed, and none is removed before it
-- is a year old (the retention purge, WARDLINE_AUDIT_RETENTION_DAYS, may
-- not go below that). Until the services run as a role without ownership
-- (issue 15, row-level security), this is what stops the application
-- from rewriting its own history.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'audit_log is append-only';
    END IF;
    IF OLD.at > now() - interval '365 days' THEN
        RAISE EXCEPTION 'audit_log keeps every record for at least 365 days';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
