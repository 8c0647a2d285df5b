//! Notification's gRPC edge: RecipientService, WebhookService,
//! TemplateService and DeliveryService. Statuses as
//! everywhere in Wardline: bad input INVALID_ARGUMENT naming the field,
//! unknown or another tenant's ids NOT_FOUND, wrong state
//! FAILED_PRECONDITION, stale `expected_version` ABORTED. Every mutating
//! call is idempotent on `request_id` (the kit's idempotency keys, in the
//! call's own transaction).

mod deliveries;
mod recipients;
mod templates;
pub(crate) mod webhooks;

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgPool;
use tonic::{Response, Status};
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::events::from_timestamp;

use crate::domain::{EventKind, NotificationChannel};

/// Implements notification's gRPC services.
#[derive(Clone)]
pub struct Api {
    pub(crate) pool: PgPool,
    /// Accept `http://` webhook URLs (development and tests).
    pub(crate) webhook_allow_http: bool,
    /// Attempts a retried delivery gets, for cancelling with a recorded attempt.
    pub(crate) policy: crate::domain::retry::RetryPolicy,
    /// Where webhooks may point (`NOTIFICATION_EGRESS_ALLOW_HOSTS`).
    pub(crate) egress: std::sync::Arc<crate::domain::egress::Policy>,
    /// Seals webhook secrets (`NOTIFICATION_SECRET_KEYS`).
    pub(crate) secret_keys: std::sync::Arc<crate::domain::sealing::Keyring>,
}

impl Api {
    /// The API over `pool`.
    pub fn new(
        pool: PgPool,
        webhook_allow_http: bool,
        policy: crate::domain::retry::RetryPolicy,
        egress: std::sync::Arc<crate::domain::egress::Policy>,
        secret_keys: std::sync::Arc<crate::domain::sealing::Keyring>,
    ) -> Self {
        Self {
            pool,
            webhook_allow_http,
            policy,
            egress,
            secret_keys,
        }
    }
}

impl Api {
    /// A transaction that sees `tenant`'s rows only (row-level security):
    /// every request's reads and writes run in one.
    pub(crate) async fn begin(
        &self,
        tenant: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Status> {
        wardline_kit::db::begin(&self.pool, wardline_kit::db::Scope::of(tenant))
            .await
            .map_err(db)
    }
}

/// Roles that administer a tenant's notification settings.
pub(crate) const ADMINS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

pub(crate) fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

pub(crate) fn db(e: sqlx::Error) -> Status {
    wardline_kit::grpc::db_status(&e)
}

/// The caller's tenant, after checking `roles`; recorded on the span.
pub(crate) fn tenant_of(caller: &Caller, roles: &[Role]) -> Result<String, Status> {
    caller.require(roles)?;
    let t = caller.tenant()?.to_owned();
    tracing::Span::current().record("tenant", t.as_str());
    Ok(t)
}

pub(crate) fn require_request_id(id: &str) -> Result<(), Status> {
    if wardline_kit::validate::is_request_id(id) {
        Ok(())
    } else {
        Err(invalid(
            "request_id: required, 1-128 printable ASCII characters",
        ))
    }
}

pub(crate) fn decode_replay<M: Message + Default>(bytes: &[u8]) -> Result<Response<M>, Status> {
    M::decode(bytes)
        .map(Response::new)
        .map_err(|_| Status::internal("stored response is unreadable"))
}

pub(crate) fn parse_uuid(s: &str, field: &str) -> Result<Uuid, Status> {
    if s.is_empty() {
        return Err(invalid(format!("{field}: required")));
    }
    Uuid::parse_str(s).map_err(|_| invalid(format!("{field}: not a UUID")))
}

pub(crate) fn event_kind(v: i32, field: &str) -> Result<EventKind, Status> {
    match EventKind::try_from(v) {
        Ok(EventKind::Unspecified) => Err(invalid(format!("{field}: required"))),
        Ok(k) => Ok(k),
        Err(_) => Err(invalid(format!("{field}: unknown value {v}"))),
    }
}

pub(crate) fn channel(v: i32, field: &str) -> Result<NotificationChannel, Status> {
    match NotificationChannel::try_from(v) {
        Ok(NotificationChannel::Unspecified) => Err(invalid(format!("{field}: required"))),
        Ok(c) => Ok(c),
        Err(_) => Err(invalid(format!("{field}: unknown value {v}"))),
    }
}

pub(crate) fn page_size(n: u32, default: i64) -> Result<i64, Status> {
    let default = u32::try_from(default).unwrap_or(crate::limits::PAGE_SIZE);
    Ok(wardline_kit::api::page_size(
        n,
        default,
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

/// Start and end of a time range, each optional.
pub(crate) type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Bounds of an optional time range; errors name `field.start|end`.
pub(crate) fn range(
    r: Option<&wardline_proto::common::TimeRange>,
    field: &str,
) -> Result<Bounds, Status> {
    let bound = |ts: Option<&prost_types::Timestamp>, which: &str| {
        ts.map(|t| {
            from_timestamp(t).ok_or_else(|| invalid(format!("{field}.{which}: out of range")))
        })
        .transpose()
    };
    Ok((
        bound(r.and_then(|r| r.start.as_ref()), "start")?,
        bound(r.and_then(|r| r.end.as_ref()), "end")?,
    ))
}

/// A newest-first cursor `<µs>_<uuid>`.
pub(crate) fn parse_cursor(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid("page_token: not a token from a previous response");
    let (micros, id) = token.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(Some((
        DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    )))
}

pub(crate) fn cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{id}", at.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(parse_cursor(&cursor(at, id)).unwrap(), Some((at, id)));
        assert_eq!(parse_cursor("").unwrap(), None);
        for bad in ["abc", "12_x", "x_0190b3c2-0000-7000-8000-000000000000"] {
            let e = parse_cursor(bad).unwrap_err();
            assert!(e.message().starts_with("page_token"));
        }
    }

    #[test]
    fn enums_and_sizes_name_their_field() {
        assert!(
            event_kind(0, "event_kind")
                .unwrap_err()
                .message()
                .starts_with("event_kind: required")
        );
        assert!(
            channel(99, "channel")
                .unwrap_err()
                .message()
                .starts_with("channel: unknown")
        );
        assert_eq!(page_size(0, 50).unwrap(), 50);
        assert!(page_size(501, 50).is_err());
        assert!(
            parse_uuid("", "delivery_id")
                .unwrap_err()
                .message()
                .starts_with("delivery_id")
        );
    }
}
