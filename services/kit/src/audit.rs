//! The audit trail (45 CFR 164.312(b)): who read or changed what.
//!
//! A handler that reads patient text or changes anything calls [`record`]
//! on the connection or transaction it works in, so the record commits with
//! the change (and a request whose record cannot be written fails: the
//! caller sees an error, nothing goes unrecorded). Records name ids only,
//! never text. Where the call came from (the RPC, the peer address) is put
//! in scope for the handler by the auth layer ([`scope`]), so handlers pass
//! only what they know: the caller, the tenant, the rows, the request id.
//!
//! The table is append-only (a trigger, `migrations/0003_audit_log.sql`)
//! and kept `WARDLINE_AUDIT_RETENTION_DAYS` (six years by default, never
//! less than one). Every service serves its records as
//! `wardline.common.v1.AuditService` ([`Service`]).

use chrono::{DateTime, Utc};
use opentelemetry::trace::TraceContextExt as _;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use tonic::Status;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use wardline_proto::common::audit_service_server::{AuditService, AuditServiceServer};
use wardline_proto::common::{AuditRecord, ListAuditRecordsRequest, ListAuditRecordsResponse};

use crate::auth::{Caller, Role};
use crate::db::Scope;
use crate::events::from_timestamp;
use crate::grpc::db_status;

/// Where a call came from, as the auth layer saw it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The RPC, `Service/Method` (package left out).
    pub method: String,
    /// The peer's address, if the transport knows it.
    pub peer: String,
}

tokio::task_local! {
    static ORIGIN: Origin;
}

impl Origin {
    /// The origin of an HTTP/2 request reaching a gRPC service.
    pub fn of<B>(req: &http::Request<B>) -> Self {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let path = req.uri().path().trim_start_matches('/');
        let method = match path.split_once('/') {
            Some((service, m)) => {
                let short = service.rsplit('.').next().unwrap_or(service);
                format!("{short}/{m}")
            }
            None => path.to_owned(),
        };
        let ext = req.extensions();
        let peer = ext
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|t| t.get_ref().remote_addr())
            })
            .map(|a| a.to_string())
            .unwrap_or_default();
        Self { method, peer }
    }
}

/// Runs a request's handler with its [`Origin`] in scope.
pub async fn scope<F: std::future::Future>(origin: Origin, handler: F) -> F::Output {
    ORIGIN.scope(origin, handler).await
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::VendorAdmin => "vendor_admin",
        Role::TenantAdmin => "tenant_admin",
        Role::Analyst => "analyst",
        Role::Requester => "requester",
        Role::Billing => "billing",
    }
}

/// The current span's trace id (32 hex digits), or empty.
fn trace_id() -> String {
    let cx = tracing::Span::current().context();
    let id = cx.span().span_context().trace_id();
    if id == opentelemetry::trace::TraceId::INVALID {
        String::new()
    } else {
        id.to_string()
    }
}

/// One record, taken in the request's scope (its RPC, peer and trace).
#[derive(Debug, Clone)]
pub struct Entry {
    tenant_id: String,
    subject: String,
    roles: Vec<&'static str>,
    method: String,
    resource_ids: Vec<String>,
    peer: String,
    request_id: String,
    trace_id: String,
}

impl Entry {
    /// That `caller` read or changed `resource_ids` of `tenant` in the RPC
    /// in scope (call it inside the handler, not in a spawned task).
    pub fn new(caller: &Caller, tenant: &str, resource_ids: Vec<String>, request_id: &str) -> Self {
        let origin = ORIGIN.try_with(Clone::clone).unwrap_or_default();
        Self {
            tenant_id: tenant.to_owned(),
            subject: caller.subject.clone(),
            roles: caller.roles.iter().map(|r| role_name(*r)).collect(),
            method: origin.method,
            resource_ids,
            peer: origin.peer,
            request_id: request_id.to_owned(),
            trace_id: trace_id(),
        }
    }
}

/// Appends `entries` in one statement. Call it on the request's (or the
/// batch's) transaction for changes, after the read for reads, and fail
/// the request if it fails.
pub async fn append(conn: &mut PgConnection, entries: &[Entry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO audit_log (tenant_id, subject, roles, method, resource_ids, peer, request_id, trace_id) ",
    );
    q.push_values(entries, |mut b, e| {
        b.push_bind(&e.tenant_id)
            .push_bind(&e.subject)
            .push_bind(&e.roles)
            .push_bind(&e.method)
            .push_bind(&e.resource_ids)
            .push_bind(&e.peer)
            .push_bind(&e.request_id)
            .push_bind(&e.trace_id);
    });
    q.build().execute(conn).await?;
    Ok(())
}

/// [`append`] of one [`Entry::new`].
pub async fn record(
    conn: &mut PgConnection,
    caller: &Caller,
    tenant: &str,
    resource_ids: Vec<String>,
    request_id: &str,
) -> Result<(), sqlx::Error> {
    append(
        conn,
        &[Entry::new(caller, tenant, resource_ids, request_id)],
    )
    .await
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    at: DateTime<Utc>,
    tenant_id: String,
    subject: String,
    roles: Vec<String>,
    method: String,
    resource_ids: Vec<String>,
    peer: String,
    request_id: String,
    trace_id: String,
}

/// The tenant of records about calls that named no tenant (the vendor's
/// every-tenant reads).
pub const VENDOR_TENANT: &str = "_vendor";

/// Who reads audit records: the vendor (an all-tenants token) and a
/// tenant's admins (their tenant).
pub const READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

/// `AuditService` over a service's `audit_log`.
#[derive(Clone)]
pub struct Service {
    pool: PgPool,
}

impl Service {
    /// Serves `pool`'s audit records.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The tonic server (add it behind the service's auth layer).
    pub fn server(self) -> AuditServiceServer<Self> {
        AuditServiceServer::new(self)
    }
}

fn parse_cursor(token: &str) -> Result<i64, Status> {
    token
        .parse()
        .map_err(|_| Status::invalid_argument("page_token: not a token from a previous response"))
}

#[tonic::async_trait]
impl AuditService for Service {
    async fn list_audit_records(
        &self,
        req: tonic::Request<ListAuditRecordsRequest>,
    ) -> Result<tonic::Response<ListAuditRecordsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = crate::dead_letters::visible_tenant(&caller, READERS)?;
        let r = req.into_inner();
        let size = crate::api::page_size(r.page_size, 100, 500).map_err(Status::from)?;
        if r.resource_id.len() > 128 {
            return Err(Status::invalid_argument(
                "resource_id: at most 128 characters",
            ));
        }
        if r.subject.len() > 256 {
            return Err(Status::invalid_argument("subject: at most 256 characters"));
        }
        let bound = |ts: Option<&prost_types::Timestamp>, field: &str| {
            ts.map(|t| {
                from_timestamp(t)
                    .ok_or_else(|| Status::invalid_argument(format!("{field}: out of range")))
            })
            .transpose()
        };
        let from = bound(r.at.as_ref().and_then(|a| a.start.as_ref()), "at.start")?;
        let to = bound(r.at.as_ref().and_then(|a| a.end.as_ref()), "at.end")?;
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT seq, at, tenant_id, subject, roles, method, resource_ids, peer, request_id, trace_id
               FROM audit_log WHERE TRUE",
        );
        if let Some(t) = &tenant {
            q.push(" AND tenant_id = ").push_bind(t.clone());
        }
        if !r.resource_id.is_empty() {
            q.push(" AND resource_ids @> ARRAY[")
                .push_bind(r.resource_id.clone())
                .push("]");
        }
        if !r.subject.is_empty() {
            q.push(" AND subject = ").push_bind(r.subject.clone());
        }
        if let Some(f) = from {
            q.push(" AND at >= ").push_bind(f);
        }
        if let Some(t) = to {
            q.push(" AND at < ").push_bind(t);
        }
        if !r.page_token.is_empty() {
            q.push(" AND seq < ")
                .push_bind(parse_cursor(&r.page_token)?);
        }
        q.push(" ORDER BY seq DESC LIMIT ").push_bind(size + 1);
        // The read and its own record in one transaction, in the caller's
        // scope: a tenant admin's tenant, or every tenant for the vendor.
        let scope = tenant.as_deref().map_or(Scope::AllTenants, Scope::Tenant);
        let mut conn = crate::db::begin(&self.pool, scope)
            .await
            .map_err(|e| db_status(&e))?;
        let rows: Vec<Row> = q
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_status(&e))?;
        // Looking at the trail is on the trail too (the filter as the
        // resource), before the answer; the vendor's every-tenant reads
        // under `_vendor`.
        let looked_at: Vec<String> = [r.resource_id.clone(), r.subject.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        record(
            &mut conn,
            &caller,
            tenant.as_deref().unwrap_or(VENDOR_TENANT),
            looked_at,
            "",
        )
        .await
        .map_err(|e| db_status(&e))?;
        conn.commit().await.map_err(|e| db_status(&e))?;
        let (rows, next_page_token) =
            crate::api::page(rows, size, |last: &Row| last.seq.to_string());
        Ok(tonic::Response::new(ListAuditRecordsResponse {
            records: rows
                .into_iter()
                .map(|row| AuditRecord {
                    at: Some(crate::events::timestamp(row.at)),
                    tenant_id: row.tenant_id,
                    subject: row.subject,
                    roles: row.roles,
                    method: row.method,
                    resource_ids: row.resource_ids,
                    peer: row.peer,
                    request_id: row.request_id,
                    trace_id: row.trace_id,
                })
                .collect(),
            next_page_token,
        }))
    }
}
