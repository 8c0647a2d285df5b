//! Billing's gRPC edge. Only the billing and vendor_admin roles see billing
//! data across the board; a tenant admin sees their own tenant's contract,
//! usage and invoices. Statuses as everywhere in Wardline.

mod contracts;
mod invoices;
mod usage;

use chrono::Utc;
use prost::Message;
use sqlx::{PgConnection, PgPool};
use tonic::{Response, Status};
use wardline_kit::auth::{Caller, Role};
use wardline_kit::db::{self, Scope};
use wardline_kit::grpc::db_status;

use crate::domain::calendar::{Period, local_date};
use crate::invoice::InvoiceError;

/// Readers of a tenant's billing data.
pub(crate) const READERS: &[Role] = &[Role::VendorAdmin, Role::Billing, Role::TenantAdmin];

/// Implements billing's gRPC services.
#[derive(Clone)]
pub struct Api {
    pub(crate) pool: PgPool,
}

impl Api {
    /// The API over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A transaction that sees `tenant`'s rows only (row-level security):
    /// every statement of a handler acting for one tenant runs in one.
    pub(crate) async fn begin(
        &self,
        tenant: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Status> {
        self.begin_scoped(Scope::Tenant(tenant)).await
    }

    /// [`Api::begin`] for any scope (ListUnbilled across tenants).
    pub(crate) async fn begin_scoped(
        &self,
        scope: Scope<'_>,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Status> {
        db::begin(&self.pool, scope)
            .await
            .map_err(|e| db_status(&e))
    }
}

pub(crate) fn require_request_id(id: &str) -> Result<(), Status> {
    if wardline_kit::validate::is_request_id(id) {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "request_id: required, 1-128 printable ASCII characters",
        ))
    }
}

pub(crate) fn decode_replay<M: Message + Default>(bytes: &[u8]) -> Result<Response<M>, Status> {
    M::decode(bytes)
        .map(Response::new)
        .map_err(|_| Status::internal("stored response is unreadable"))
}

pub(crate) fn invoice_status(e: InvoiceError) -> Status {
    match e {
        InvoiceError::UnknownTenant(t) => Status::not_found(format!("tenant {t} not found")),
        InvoiceError::Db(e) => db_status(&e),
    }
}

/// The caller's tenant, after the role check.
pub(crate) fn tenant_of(caller: &Caller, roles: &[Role]) -> Result<String, Status> {
    caller.require(roles)?;
    let t = caller.tenant()?.to_owned();
    tracing::Span::current().record("tenant", t.as_str());
    Ok(t)
}

/// The page size of a List RPC (0: the default).
pub(crate) fn page_size(n: u32) -> Result<i64, Status> {
    Ok(wardline_kit::api::page_size(
        n,
        crate::limits::DEFAULT_PAGE,
        crate::limits::PAGE_SIZE,
    )?)
}

/// At most [`crate::limits::FILTER_VALUES`] values in the repeated filter `field`.
pub(crate) fn check_filter(field: &str, n: usize) -> Result<(), Status> {
    Ok(wardline_kit::api::at_most(
        field,
        n,
        crate::limits::FILTER_VALUES,
    )?)
}

/// `field` as a period, or the tenant's current one when empty.
pub(crate) async fn period_or_current(
    conn: &mut PgConnection,
    tenant: &str,
    field: &str,
    value: &str,
) -> Result<Period, Status> {
    if !value.is_empty() {
        return Period::parse(value)
            .ok_or_else(|| Status::invalid_argument(format!("{field}: a period YYYY-MM")));
    }
    let tz = crate::store::tenant_zone(conn, tenant)
        .await
        .map_err(|e| db_status(&e))?
        .ok_or_else(|| Status::not_found(format!("tenant {tenant} not found")))?;
    Ok(Period::of(local_date(tz, Utc::now())))
}
