-- Row-level security (docs/access-model.md, "Row-level security"): every
-- table of billing holds one tenant's rows, and shows a transaction only
-- the tenant it set (wardline_kit::db::begin), or every tenant when it set
-- '*' (the unbilled-calls gauge). wardline_protect comes with the kit's
-- migrations.

SELECT wardline_protect('tenants');
SELECT wardline_protect('contract_versions');
SELECT wardline_protect('calls');
SELECT wardline_protect('breaches');
SELECT wardline_protect('periods');
