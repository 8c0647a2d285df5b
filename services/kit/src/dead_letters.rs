//! A service's dead letters (the `dead_letters` table the consumer loop
//! fills), served as `wardline.common.v1.EventDeadLetterService` by every
//! service from this one implementation ([`Service`]).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tonic::Status;
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::db::Scope;
use crate::events::from_timestamp;
use crate::grpc::db_status;
use wardline_proto::common::event_dead_letter_service_server::{
    EventDeadLetterService, EventDeadLetterServiceServer,
};
use wardline_proto::common::{
    EventDeadLetter, ListEventDeadLettersRequest, ListEventDeadLettersResponse,
};

/// One dead letter.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadLetterRow {
    pub event_id: Uuid,
    pub subject: String,
    pub tenant_id: String,
    pub reason: String,
    pub deliveries: i32,
    pub first_seen_at: DateTime<Utc>,
}

/// A page of dead letters, newest first.
pub struct Page {
    pub rows: Vec<DeadLetterRow>,
    pub next_page_token: String,
}

fn parse_cursor(token: &str) -> Result<(DateTime<Utc>, Uuid), Status> {
    let bad = || Status::invalid_argument("page_token: not a token from a previous response");
    let (micros, id) = token.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok((
        DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

/// The tenant `caller` may see dead letters of: `None` (every tenant) only
/// for an all-tenants vendor admin who names no tenant.
pub fn visible_tenant(caller: &Caller, readers: &[Role]) -> Result<Option<String>, Status> {
    caller.require(readers)?;
    if caller.is_vendor(Role::VendorAdmin) {
        Ok(caller.tenant.clone())
    } else {
        Ok(Some(caller.tenant()?.to_owned()))
    }
}

/// Lists dead letters visible to `caller`, first seen in `range`, paged.
pub async fn list(
    pool: &PgPool,
    caller: &Caller,
    readers: &[Role],
    range: Option<&wardline_proto::common::TimeRange>,
    page_size: u32,
    page_token: &str,
) -> Result<Page, Status> {
    let tenant = visible_tenant(caller, readers)?;
    let size: i64 = match page_size {
        0 => 100,
        1..=500 => i64::from(page_size),
        _ => return Err(Status::invalid_argument("page_size: 1-500")),
    };
    let bound = |ts: Option<&prost_types::Timestamp>, field: &str| {
        ts.map(|t| {
            from_timestamp(t)
                .ok_or_else(|| Status::invalid_argument(format!("{field}: out of range")))
        })
        .transpose()
    };
    let from = bound(range.and_then(|r| r.start.as_ref()), "first_seen.start")?;
    let to = bound(range.and_then(|r| r.end.as_ref()), "first_seen.end")?;
    let cursor = if page_token.is_empty() {
        None
    } else {
        Some(parse_cursor(page_token)?)
    };
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT event_id, subject, tenant_id, reason, deliveries, first_seen_at FROM dead_letters WHERE TRUE",
    );
    let tenant_scope = tenant.clone();
    if let Some(t) = tenant {
        q.push(" AND tenant_id = ").push_bind(t);
    }
    if let Some(f) = from {
        q.push(" AND first_seen_at >= ").push_bind(f);
    }
    if let Some(t) = to {
        q.push(" AND first_seen_at < ").push_bind(t);
    }
    if let Some((at, id)) = cursor {
        q.push(" AND (first_seen_at, event_id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY first_seen_at DESC, event_id DESC LIMIT ")
        .push_bind(size + 1);
    // Row-level security agrees with the predicate above: a tenant's
    // caller reads in its tenant's scope, only the all-tenants vendor in
    // every tenant's.
    let scope = tenant_scope
        .as_deref()
        .map_or(Scope::AllTenants, Scope::Tenant);
    let mut tx = crate::db::begin(pool, scope)
        .await
        .map_err(|e| db_status(&e))?;
    let mut rows: Vec<DeadLetterRow> = q
        .build_query_as()
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_status(&e))?;
    tx.commit().await.map_err(|e| db_status(&e))?;
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => format!(
            "{}_{}",
            last.first_seen_at.timestamp_micros(),
            last.event_id
        ),
        _ => String::new(),
    };
    Ok(Page {
        rows,
        next_page_token,
    })
}

/// `EventDeadLetterService` over a service's `dead_letters` table; each
/// service names who may read (its admins).
#[derive(Clone)]
pub struct Service {
    pool: PgPool,
    readers: &'static [Role],
}

impl Service {
    /// Serves `pool`'s dead letters to callers holding one of `readers`.
    pub fn new(pool: PgPool, readers: &'static [Role]) -> Self {
        Self { pool, readers }
    }

    /// The tonic server (add it behind the service's auth interceptor).
    pub fn server(self) -> EventDeadLetterServiceServer<Self> {
        EventDeadLetterServiceServer::new(self)
    }
}

fn to_proto(r: &DeadLetterRow) -> EventDeadLetter {
    EventDeadLetter {
        event_id: r.event_id.to_string(),
        subject: r.subject.clone(),
        tenant_id: r.tenant_id.clone(),
        reason: r.reason.clone(),
        attempts: u32::try_from(r.deliveries).unwrap_or(0),
        first_seen_at: Some(crate::events::timestamp(r.first_seen_at)),
    }
}

#[tonic::async_trait]
impl EventDeadLetterService for Service {
    async fn list_event_dead_letters(
        &self,
        req: tonic::Request<ListEventDeadLettersRequest>,
    ) -> Result<tonic::Response<ListEventDeadLettersResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let page = list(
            &self.pool,
            &caller,
            self.readers,
            r.first_seen.as_ref(),
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(tonic::Response::new(ListEventDeadLettersResponse {
            dead_letters: page.rows.iter().map(to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: Option<&str>, all: bool, roles: &[Role]) -> Caller {
        Caller {
            subject: "someone".into(),
            tenant: tenant.map(str::to_owned),
            all_tenants: all,
            roles: roles.to_vec(),
            email: None,
            phone: None,
        }
    }

    #[test]
    fn who_sees_which_tenant() {
        let readers = [Role::VendorAdmin, Role::TenantAdmin];
        assert_eq!(
            visible_tenant(&caller(None, true, &[Role::VendorAdmin]), &readers).unwrap(),
            None
        );
        assert_eq!(
            visible_tenant(
                &caller(Some("stmarys"), true, &[Role::VendorAdmin]),
                &readers
            )
            .unwrap()
            .as_deref(),
            Some("stmarys")
        );
        assert_eq!(
            visible_tenant(
                &caller(Some("lakeside"), false, &[Role::TenantAdmin]),
                &readers
            )
            .unwrap()
            .as_deref(),
            Some("lakeside")
        );
        assert_eq!(
            visible_tenant(
                &caller(Some("lakeside"), false, &[Role::VendorAdmin]),
                &readers
            )
            .unwrap()
            .as_deref(),
            Some("lakeside")
        );
        let e = visible_tenant(&caller(Some("lakeside"), false, &[Role::Analyst]), &readers)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            parse_cursor(&format!("{}_{id}", at.timestamp_micros())).unwrap(),
            (at, id)
        );
        assert_eq!(
            parse_cursor("nope").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
