-- Row-level security (issue 15, docs/access-model.md): every table with
-- tenant rows shows a transaction only the rows of the tenant it set
-- (wardline_kit::db::begin), or every row for '*' (the sender's rounds,
-- start-up sealing). The policy is the kit's (migration 0004 of the kit).

-- Attempts belong to their delivery's tenant; they carry it so the policy
-- can hold them without a join per row.
ALTER TABLE delivery_attempts ADD COLUMN tenant_id TEXT;
UPDATE delivery_attempts a SET tenant_id = d.tenant_id
  FROM deliveries d WHERE d.delivery_id = a.delivery_id;
ALTER TABLE delivery_attempts ALTER COLUMN tenant_id SET NOT NULL;

SELECT wardline_protect('recipients');
SELECT wardline_protect('tickets');
SELECT wardline_protect('webhook_endpoints');
SELECT wardline_protect('template_overrides');
SELECT wardline_protect('deliveries');
SELECT wardline_protect('delivery_attempts');

-- Analysts who cover every tenant are recipients of the pseudo-tenant
-- '_vendor' (never a slug, so never a tenant): every tenant's events
-- reach them (escalations, a vendor analyst's assignment), so every
-- tenant's transaction may see and refresh those rows. The API never lists
-- them to a tenant (its queries name the caller's tenant); an analyst
-- reaches only their own (SetPreferences).
CREATE POLICY vendor_recipients ON recipients USING (tenant_id = '_vendor');

-- Not protected: `analysts`, routing's directory as notification copies
-- it, has no tenant column: an analyst may cover several tenants, and the
-- rows hold which (no contact data; that lives in `recipients`).
