-- Row-level security (docs/access-model.md, "Row-level security"): every
-- table of routing that holds a tenant's rows shows a transaction only the
-- tenant it set (wardline_kit::db::begin), or every tenant when it set '*'
-- (the directory's RPCs, the drainer, the timer scanner, the gauges, a
-- hand-over). wardline_protect comes with the kit's migrations.

SELECT wardline_protect('tickets');
SELECT wardline_protect('assignments');
SELECT wardline_protect('timers');
SELECT wardline_protect('category_rules');
SELECT wardline_protect('sla_targets');

-- Which tenants an analyst covers. A tenant's transaction sees its own
-- coverage rows and, through the second policy (read only), the '*' rows
-- of the vendor's analysts who cover every tenant (a transaction that set
-- no tenant sees none of them either): both are what a decision for
-- that tenant looks at (`tenant_id IN ($1, '*')`). No
-- tenant's transaction sees (or can write) another tenant's coverage. The
-- directory's RPCs run with '*' (grpc/analysts.rs, DIRECTORY): what a
-- tenant may see or change of an analyst depends on the coverage
-- elsewhere (covers_only), and their events go to every tenant covered.
SELECT wardline_protect('analyst_coverage');
DROP POLICY IF EXISTS coverage_of_every_tenant ON analyst_coverage;
CREATE POLICY coverage_of_every_tenant ON analyst_coverage FOR SELECT
    USING (tenant_id = '*' AND current_setting('wardline.tenant', true) <> '');

-- Not protected, on purpose (no tenant column):
-- - analysts, analyst_skills, analyst_shifts: the vendor's staff directory.
--   Analyst ids are global (one person serves many hospitals) and their
--   load, capacity and availability are shared by every tenant's decisions;
--   which of them a tenant may see is decided by analyst_coverage above and
--   by the handlers' reach (docs/access-model.md, "The analyst directory").
-- - policy_generation: one counter, no tenant data.
