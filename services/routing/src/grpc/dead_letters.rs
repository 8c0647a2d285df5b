//! DeadLetterService: events routing could not apply, kept by the kit's
//! consumer in `dead_letters` with the reason, served newest first.
//!
//! A vendor admin sees every tenant's (or the tenant named by
//! `x-tenant-id`); anyone else only their own tenant's. The payload stays
//! in the table: it is the producer's event and only ids and codes are
//! served here.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::events::{from_timestamp, timestamp};
use wardline_kit::grpc::db_status;
use wardline_proto::routing::dead_letter_service_server::DeadLetterService;
use wardline_proto::routing::{DeadLetter, ListDeadLettersRequest, ListDeadLettersResponse};

use super::Api;

const READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

#[derive(Debug, sqlx::FromRow)]
struct Row {
    event_id: Uuid,
    subject: String,
    tenant_id: String,
    reason: String,
    deliveries: i32,
    first_seen_at: DateTime<Utc>,
}

fn dead_letter(r: &Row) -> DeadLetter {
    DeadLetter {
        event_id: r.event_id.to_string(),
        subject: r.subject.clone(),
        tenant_id: r.tenant_id.clone(),
        reason: r.reason.clone(),
        attempts: u32::try_from(r.deliveries).unwrap_or(0),
        first_seen_at: Some(timestamp(r.first_seen_at)),
    }
}

/// The position after which the next page starts (newest first):
/// `<first_seen_at in µs>_<event id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    first_seen_at: DateTime<Utc>,
    event_id: Uuid,
}

impl Cursor {
    fn of(r: &Row) -> Self {
        Self {
            first_seen_at: r.first_seen_at,
            event_id: r.event_id,
        }
    }

    fn token(&self) -> String {
        format!(
            "{}_{}",
            self.first_seen_at.timestamp_micros(),
            self.event_id
        )
    }

    fn parse(token: &str) -> Result<Self, Status> {
        let bad = || Status::invalid_argument("page_token: not a token from a previous response");
        let (micros, id) = token.split_once('_').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            first_seen_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            event_id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// Which tenant's dead letters the caller sees; `None` = every tenant.
fn visible_tenant(caller: &Caller) -> Result<Option<String>, Status> {
    caller.require(READERS)?;
    if caller.all_tenants && caller.has_any(&[Role::VendorAdmin]) {
        Ok(caller.tenant.clone())
    } else {
        Ok(Some(caller.tenant()?.to_owned()))
    }
}

fn page_size(n: u32) -> Result<i64, Status> {
    match n {
        0 => Ok(100),
        1..=500 => Ok(i64::from(n)),
        _ => Err(Status::invalid_argument("page_size: 1-500")),
    }
}

fn bound(
    ts: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, Status> {
    ts.map(|t| {
        from_timestamp(t).ok_or_else(|| Status::invalid_argument(format!("{field}: out of range")))
    })
    .transpose()
}

#[tonic::async_trait]
impl DeadLetterService for Api {
    async fn list_dead_letters(
        &self,
        req: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = visible_tenant(&caller)?;
        if let Some(t) = &tenant {
            tracing::Span::current().record("tenant", t.as_str());
        }
        let r = req.into_inner();
        let size = page_size(r.page_size)?;
        let (from, to) = match &r.first_seen {
            Some(range) => (
                bound(range.start.as_ref(), "first_seen.start")?,
                bound(range.end.as_ref(), "first_seen.end")?,
            ),
            None => (None, None),
        };
        let cursor = if r.page_token.is_empty() {
            None
        } else {
            Some(Cursor::parse(&r.page_token)?)
        };
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT event_id, subject, tenant_id, reason, deliveries, first_seen_at FROM dead_letters WHERE TRUE",
        );
        if let Some(t) = tenant {
            q.push(" AND tenant_id = ").push_bind(t);
        }
        if let Some(f) = from {
            q.push(" AND first_seen_at >= ").push_bind(f);
        }
        if let Some(t) = to {
            q.push(" AND first_seen_at < ").push_bind(t);
        }
        if let Some(c) = cursor {
            q.push(" AND (first_seen_at, event_id) < (")
                .push_bind(c.first_seen_at)
                .push(", ")
                .push_bind(c.event_id)
                .push(")");
        }
        q.push(" ORDER BY first_seen_at DESC, event_id DESC LIMIT ")
            .push_bind(size + 1);
        let rows: Vec<Row> = q
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_status(&e))?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let next_page_token = match page.last() {
            Some(last) if more => Cursor::of(last).token(),
            _ => String::new(),
        };
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: page.iter().map(dead_letter).collect(),
            next_page_token,
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
        }
    }

    #[test]
    fn who_sees_which_tenant() {
        let vendor = caller(None, true, &[Role::VendorAdmin]);
        assert_eq!(visible_tenant(&vendor).unwrap(), None);
        let named = caller(Some("stmarys"), true, &[Role::VendorAdmin]);
        assert_eq!(visible_tenant(&named).unwrap().as_deref(), Some("stmarys"));
        let admin = caller(Some("lakeside"), false, &[Role::TenantAdmin]);
        assert_eq!(visible_tenant(&admin).unwrap().as_deref(), Some("lakeside"));
        // A vendor_admin role on a tenant token reaches only that tenant.
        let narrow = caller(Some("lakeside"), false, &[Role::VendorAdmin]);
        assert_eq!(
            visible_tenant(&narrow).unwrap().as_deref(),
            Some("lakeside")
        );
        let analyst = caller(Some("lakeside"), false, &[Role::Analyst]);
        assert_eq!(
            visible_tenant(&analyst).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let row = Row {
            event_id: Uuid::now_v7(),
            subject: "wardline.events.stmarys.ticket.created".into(),
            tenant_id: "stmarys".into(),
            reason: "decode_failed".into(),
            deliveries: 5,
            first_seen_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
        };
        let c = Cursor::of(&row);
        assert_eq!(Cursor::parse(&c.token()).unwrap(), c);
        for bad in [
            "",
            "abc",
            "12_notauuid",
            "x_0190b3c2-0000-7000-8000-000000000000",
        ] {
            let e = Cursor::parse(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with("page_token"));
        }
        let d = dead_letter(&row);
        assert_eq!(d.attempts, 5);
        assert_eq!(d.tenant_id, "stmarys");
        assert_eq!(d.first_seen_at, Some(timestamp(row.first_seen_at)));
    }

    #[test]
    fn ranges_and_sizes_are_checked() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert!(page_size(501).is_err());
        let bad = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(
            bound(Some(&bad), "first_seen.start")
                .unwrap_err()
                .message()
                .starts_with("first_seen.start")
        );
        assert_eq!(bound(None, "first_seen.end").unwrap(), None);
    }
}

/// The handler against a real PostgreSQL.
#[cfg(test)]
mod db_tests {
    use super::*;
    use crate::grpc::analysts::db_tests::{api, req, who};

    #[tokio::test]
    async fn newest_first_per_tenant_with_pages() {
        let (_db, api) = api("routing_api_dead").await;
        for (i, tenant) in ["stmarys", "lakeside", "stmarys", "stmarys"]
            .iter()
            .enumerate()
        {
            sqlx::query(
                "INSERT INTO dead_letters (event_id, subject, tenant_id, reason, deliveries, payload, first_seen_at)
                 VALUES ($1, $2, $3, 'decode_failed', 5, '\\x00', now() - make_interval(mins => $4))",
            )
            .bind(Uuid::now_v7())
            .bind(format!("wardline.events.{tenant}.ticket.created"))
            .bind(tenant)
            .bind(10 - i as i32)
            .execute(&api.pool)
            .await
            .unwrap();
        }
        let vendor = who("ops", None, &[Role::VendorAdmin]);
        let all = api
            .list_dead_letters(req(ListDeadLettersRequest::default(), &vendor))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.dead_letters.len(), 4);
        assert!(all.next_page_token.is_empty());
        let seen: Vec<_> = all
            .dead_letters
            .iter()
            .map(|d| d.first_seen_at.unwrap().seconds)
            .collect();
        assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert_eq!(all.dead_letters[0].attempts, 5);
        let admin = who("boss", Some("stmarys"), &[Role::TenantAdmin]);
        let page = |token: String| ListDeadLettersRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let first = api
            .list_dead_letters(req(page(String::new()), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.dead_letters.len(), 2);
        assert!(!first.next_page_token.is_empty());
        let second = api
            .list_dead_letters(req(page(first.next_page_token), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.dead_letters.len(), 1);
        assert!(second.next_page_token.is_empty());
        let mine: Vec<_> = first
            .dead_letters
            .iter()
            .chain(&second.dead_letters)
            .collect();
        assert!(mine.iter().all(|d| d.tenant_id == "stmarys"));
        assert_eq!(mine[0].event_id, all.dead_letters[0].event_id);
        // A vendor naming a tenant sees only that one.
        let named = who("ops", Some("lakeside"), &[Role::VendorAdmin]);
        let named = Caller {
            all_tenants: true,
            ..named
        };
        let lake = api
            .list_dead_letters(req(ListDeadLettersRequest::default(), &named))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(lake.dead_letters.len(), 1);
        assert_eq!(lake.dead_letters[0].tenant_id, "lakeside");
    }
}
