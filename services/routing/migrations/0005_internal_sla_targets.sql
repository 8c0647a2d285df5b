-- A tenant's own internal SLA targets (issue 15): stricter than the
-- contract's, they alert the tenant's supervisors and never credit. Minutes
-- per priority, index 1 = P1; 0 = no internal target for that priority.
-- Minutes and deadlines only: no PHI.
CREATE TABLE internal_sla_targets (
    tenant_id           TEXT PRIMARY KEY,
    response_minutes    INT[] NOT NULL CHECK (cardinality(response_minutes) = 4),
    resolution_minutes  INT[] NOT NULL CHECK (cardinality(resolution_minutes) = 4),
    version             BIGINT NOT NULL DEFAULT 1,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One alert per ticket and target, ever: the watcher claims a row here in
-- the transaction that publishes the alert, so a crash re-sends none and
-- loses none.
CREATE TABLE internal_sla_alerts (
    ticket_id   UUID NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    target      TEXT NOT NULL CHECK (target IN ('response', 'resolution')),
    tenant_id   TEXT NOT NULL,
    deadline    TIMESTAMPTZ NOT NULL,
    alerted_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, target)
);

SELECT wardline_protect('internal_sla_targets');
SELECT wardline_protect('internal_sla_alerts');
