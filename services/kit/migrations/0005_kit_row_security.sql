-- Row-level security on the kit's tenant-scoped tables (0004 defines the
-- policy). Scopes: a request's idempotency key and audit records are its
-- tenant's (the vendor's every-tenant calls use '*', under which the
-- pseudo-tenant `_vendor` rows are written); dead letters are written and
-- looked up by the consumer in every tenant's scope and listed in the
-- caller's.
--
-- Not tenant-scoped, by judgement (docs/access-model.md):
-- - outbox: written only inside a request's or a batch's transaction (so
--   under that transaction's scope), read only by the relay, which
--   publishes every tenant's events; its tenant is the subject's.
-- - inbox, consumer_failures: event ids, subjects and counters of the
--   consumer's own bookkeeping; no tenant data.
SELECT wardline_protect('idempotency_keys');
SELECT wardline_protect('audit_log');
SELECT wardline_protect('dead_letters');
