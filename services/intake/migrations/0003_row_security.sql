-- Row-level security on every intake table (all are tenant-scoped; the
-- policy is the kit's, migration 0004 of wardline-kit): a transaction sees
-- and writes only the rows of the tenant it set, or every row for '*'
-- (the vendor's tenant list and creation, the group-commit writer).
SELECT wardline_protect('tenants');
SELECT wardline_protect('facilities');
SELECT wardline_protect('tickets');
SELECT wardline_protect('notes');
