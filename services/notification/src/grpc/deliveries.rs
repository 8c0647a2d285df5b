//! DeliveryService: deliveries with their attempts, a fresh retry schedule
//! for a failed one, and the dead-lettered ones.

use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::audit;
use wardline_kit::auth::Caller;
use wardline_kit::events::timestamp;
use wardline_kit::idempotency::{self, Claim};
use wardline_proto::events::DeliveryStatus;
use wardline_proto::notification::delivery_service_server::DeliveryService;
use wardline_proto::notification::{
    Delivery, DeliveryAttempt, GetDeliveryRequest, ListDeadLettersRequest, ListDeadLettersResponse,
    ListDeliveriesRequest, ListDeliveriesResponse, RetryDeliveryRequest,
};

use super::{
    ADMINS, Api, channel, cursor, db, decode_replay, event_kind, invalid, page_size, parse_cursor,
    parse_uuid, range, require_request_id, tenant_of,
};
use crate::domain::{DeliveryState, ErrorClass, NotificationChannel, egress};
use crate::store::attempts::{self, AttemptRow};
use crate::store::deliveries::{self, DeliveryRow as Row, Filter};

fn to_proto(r: &Row, mut attempts: Vec<DeliveryAttempt>) -> Delivery {
    let opt = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    if r.channel == NotificationChannel::Webhook as i16 {
        for a in &mut attempts {
            let class = ErrorClass::try_from(a.error_class).unwrap_or_default();
            a.error_class = egress::tenant_view(class) as i32;
        }
    }
    Delivery {
        delivery_id: r.delivery_id.to_string(),
        tenant_id: r.tenant_id.clone(),
        source_event_id: r.source_event_id.to_string(),
        event_kind: i32::from(r.event_kind),
        channel: i32::from(r.channel),
        recipient_id: opt(r.recipient_id),
        endpoint_id: opt(r.endpoint_id),
        address: r.address.clone(),
        ticket_id: opt(r.ticket_id),
        number: r.number.clone(),
        priority: i32::from(r.priority),
        state: i32::from(r.state),
        outcome: i32::from(r.outcome),
        attempt_count: r.attempt_count as u32,
        next_attempt_at: if r.state == DeliveryState::Finished as i16 {
            None
        } else {
            r.next_attempt_at.map(timestamp)
        },
        attempts,
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
    }
}

fn attempt_to_proto(a: &AttemptRow) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt: a.attempt as u32,
        started_at: Some(timestamp(a.started_at)),
        finished_at: a.finished_at.map(timestamp),
        outcome: a.outcome.map(i32::from).unwrap_or(0),
        status_code: a.status_code as u32,
        error_class: i32::from(a.error_class),
        next_retry_at: a.next_retry_at.map(timestamp),
    }
}

async fn one(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    id: Uuid,
    lock: bool,
) -> Result<Row, Status> {
    deliveries::one(conn, tenant, id, lock)
        .await
        .map_err(db)?
        .ok_or_else(|| Status::not_found(format!("delivery {id} not found")))
}

async fn with_attempts(conn: &mut sqlx::PgConnection, r: &Row) -> Result<Delivery, Status> {
    let list = attempts::of(conn, &[r.delivery_id]).await.map_err(db)?;
    Ok(to_proto(r, list.iter().map(attempt_to_proto).collect()))
}

fn enums<T>(
    values: &[i32],
    field: &str,
    check: impl Fn(i32, &str) -> Result<T, Status>,
) -> Result<Vec<i16>, Status> {
    super::check_filter(field, values.len())?;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| check(*v, &format!("{field}[{i}]")).map(|_| *v as i16))
        .collect()
}

#[tonic::async_trait]
impl DeliveryService for Api {
    async fn list_deliveries(
        &self,
        req: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        let size = page_size(r.page_size, 50)?;
        let kinds = enums(&r.event_kinds, "event_kinds", event_kind)?;
        let channels = enums(&r.channels, "channels", channel)?;
        let states = enums(&r.states, "states", |v, f| {
            match DeliveryState::try_from(v) {
                Ok(DeliveryState::Unspecified) | Err(_) => {
                    Err(invalid(format!("{f}: unknown value {v}")))
                }
                Ok(s) => Ok(s),
            }
        })?;
        let outcomes = enums(
            &r.outcomes,
            "outcomes",
            |v, f| match DeliveryStatus::try_from(v) {
                Ok(DeliveryStatus::Unspecified) | Err(_) => {
                    Err(invalid(format!("{f}: unknown value {v}")))
                }
                Ok(s) => Ok(s),
            },
        )?;
        let opt_uuid = |s: &str, f: &str| {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_uuid(s, f).map(Some)
            }
        };
        let recipient = opt_uuid(&r.recipient_id, "recipient_id")?;
        let endpoint = opt_uuid(&r.endpoint_id, "endpoint_id")?;
        let ticket = opt_uuid(&r.ticket_id, "ticket_id")?;
        let source = opt_uuid(&r.source_event_id, "source_event_id")?;
        let (created_from, created_to) = range(r.created.as_ref(), "created")?;
        let filter = Filter {
            kinds,
            channels,
            states,
            outcomes,
            recipient_id: recipient,
            endpoint_id: endpoint,
            ticket_id: ticket,
            source_event_id: source,
            created_from,
            created_to,
            after: parse_cursor(&r.page_token)?,
        };
        let mut conn = self.begin(&tenant).await?;
        let rows = deliveries::list(&mut conn, &tenant, &filter, size + 1)
            .await
            .map_err(db)?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        Ok(Response::new(ListDeliveriesResponse {
            deliveries: page.iter().map(|r| to_proto(r, Vec::new())).collect(),
            next_page_token: match page.last() {
                Some(l) if more => cursor(l.created_at, l.delivery_id),
                _ => String::new(),
            },
        }))
    }

    async fn get_delivery(
        &self,
        req: Request<GetDeliveryRequest>,
    ) -> Result<Response<Delivery>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let id = parse_uuid(&req.get_ref().delivery_id, "delivery_id")?;
        tracing::Span::current().record("delivery_id", tracing::field::display(id));
        let mut conn = self.begin(&tenant).await?;
        let row = one(&mut conn, &tenant, id, false).await?;
        Ok(Response::new(with_attempts(&mut conn, &row).await?))
    }

    async fn retry_delivery(
        &self,
        req: Request<RetryDeliveryRequest>,
    ) -> Result<Response<Delivery>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let id = parse_uuid(&r.delivery_id, "delivery_id")?;
        let hash = idempotency::request_hash("RetryDelivery", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "RetryDelivery", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let row = one(&mut tx, &tenant, id, true).await?;
        let failed = row.state == DeliveryState::Finished as i16
            && (row.outcome == DeliveryStatus::Failed as i16
                || row.outcome == DeliveryStatus::DeadLettered as i16);
        if !failed {
            return Err(Status::failed_precondition(
                "delivery_id: only a FAILED or DEAD_LETTERED delivery can be retried",
            ));
        }
        deliveries::restart(&mut tx, id).await.map_err(db)?;
        let row = one(&mut tx, &tenant, id, false).await?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![id.to_string()],
            &r.request_id,
        )
        .await
        .map_err(db)?;
        let resp = with_attempts(&mut tx, &row).await?;
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(delivery_id = %id, "delivery retry scheduled by request");
        Ok(Response::new(resp))
    }

    async fn list_dead_letters(
        &self,
        req: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        let size = page_size(r.page_size, 100)?;
        let channels = enums(&r.channels, "channels", channel)?;
        let (from, to) = range(r.dead_lettered.as_ref(), "dead_lettered")?;
        let after = parse_cursor(&r.page_token)?;
        let mut conn = self.begin(&tenant).await?;
        let rows =
            deliveries::dead_letters(&mut conn, &tenant, &channels, (from, to), after, size + 1)
                .await
                .map_err(db)?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let ids: Vec<Uuid> = page.iter().map(|r| r.delivery_id).collect();
        let all = attempts::of(&mut conn, &ids).await.map_err(db)?;
        let deliveries = page
            .iter()
            .map(|r| {
                let mine = all
                    .iter()
                    .filter(|a| a.delivery_id == r.delivery_id)
                    .map(attempt_to_proto)
                    .collect();
                to_proto(r, mine)
            })
            .collect();
        Ok(Response::new(ListDeadLettersResponse {
            deliveries,
            next_page_token: match page.last() {
                Some(l) if more => cursor(l.finished_at.unwrap_or(l.updated_at), l.delivery_id),
                _ => String::new(),
            },
        }))
    }
}
