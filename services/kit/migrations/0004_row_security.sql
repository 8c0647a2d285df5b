-- Row-level security (docs/access-model.md): every tenant-scoped table
-- shows a transaction only the rows of the tenant it set with
-- `SET LOCAL wardline.tenant` (wardline_kit::db::begin), or every row when
-- it set '*' (the vendor's cross-tenant reads, the service's own
-- machinery). A transaction that set nothing sees and writes no row. FORCE
-- makes the policy bind the tables' owner too; only a superuser or a role
-- with BYPASSRLS passes it, and the services run as neither.
--
-- Each service's migrations call wardline_protect('<table>') for each of
-- its tables that has a tenant_id column.

CREATE OR REPLACE FUNCTION wardline_protect(target regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %s', target);
    -- The tenant comparison comes first and is what the queries' own
    -- `tenant_id = $1` meets; '*' is a constant per transaction.
    EXECUTE format(
        'CREATE POLICY tenant_rows ON %s USING (%I = current_setting(''wardline.tenant'', true) '
        'OR current_setting(''wardline.tenant'', true) = ''*'')',
        target, tenant_column);
END
$$;
