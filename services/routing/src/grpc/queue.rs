//! QueueService: the tenant's queue, its assignments, and the recorded
//! explanation of each decision.

use chrono::{DateTime, Utc};
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::db::Scope;
use wardline_kit::events::{from_timestamp, timestamp};
use wardline_kit::grpc::db_status;
use wardline_kit::sql::Named;
use wardline_proto::common::{Category, Priority};
use wardline_proto::routing::queue_service_server::QueueService;
use wardline_proto::routing::{
    Assignment, AssignmentExplanation, AssignmentState, DecisionTrigger, ExplainAssignmentRequest,
    GetQueueRequest, GetQueueResponse, ListAssignmentsRequest, ListAssignmentsResponse,
    PriorityCount, QueuedTicket,
};

use super::Api;
use crate::limits;
use crate::store::tickets::{self, TicketRow};

const READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin, Role::Analyst];

fn page_size(n: u32, default: u32) -> Result<i64, Status> {
    Ok(wardline_kit::api::page_size(n, default, limits::PAGE_SIZE)?)
}

/// At most [`limits::FILTER_VALUES`] values in the repeated filter `field`.
fn check_filter(field: &str, n: usize) -> Result<(), Status> {
    Ok(wardline_kit::api::at_most(field, n, limits::FILTER_VALUES)?)
}

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    assignment_id: Uuid,
    ticket_id: Uuid,
    number: String,
    analyst_id: String,
    priority: Named<Priority>,
    category: Named<Category>,
    state: Named<AssignmentState>,
    attempt: i32,
    trigger: Named<DecisionTrigger>,
    assigned_at: DateTime<Utc>,
    ack_deadline: DateTime<Utc>,
    acknowledged_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    ticket_version: i64,
}

const ASSIGNMENT_SELECT: &str = "SELECT a.assignment_id, a.ticket_id, t.number, a.analyst_id, t.priority, t.category,
    a.state, a.attempt, a.trigger, a.assigned_at, a.ack_deadline, a.acknowledged_at, a.ended_at, a.ticket_version
    FROM assignments a JOIN tickets t USING (ticket_id)";

fn assignment(r: &AssignmentRow) -> Assignment {
    Assignment {
        assignment_id: r.assignment_id.to_string(),
        ticket_id: r.ticket_id.to_string(),
        number: r.number.clone(),
        analyst_id: r.analyst_id.clone(),
        priority: i32::from(r.priority.get()),
        category: i32::from(r.category.get()),
        state: r.state.get() as i32,
        attempt: r.attempt as u32,
        trigger: r.trigger.get() as i32,
        assigned_at: Some(timestamp(r.assigned_at)),
        ack_deadline: Some(timestamp(r.ack_deadline)),
        acknowledged_at: r.acknowledged_at.map(timestamp),
        ended_at: r.ended_at.map(timestamp),
        ticket_version: r.ticket_version as u64,
    }
}

/// A waiting ticket at `position` in the queue, as GetQueue shows it.
fn queued_ticket(t: &TicketRow, position: i64, now: DateTime<Utc>) -> QueuedTicket {
    QueuedTicket {
        position: position as u32,
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        facility_id: t.facility_id.clone(),
        priority: i32::from(t.priority.get()),
        category: i32::from(t.category.get()),
        caller_role: i32::from(t.caller_role.get()),
        created_at: Some(timestamp(t.created_at)),
        queued_at: t.queued_at.map(timestamp),
        waiting_seconds: t
            .queued_at
            .map(|q| (now - q).num_seconds().max(0) as u64)
            .unwrap_or(0),
        reason_code: t.queue_reason.clone(),
        response_deadline: Some(timestamp(t.response_due)),
        ticket_version: t.ticket_version as u64,
    }
}

#[tonic::async_trait]
impl QueueService for Api {
    async fn get_queue(
        &self,
        req: Request<GetQueueRequest>,
    ) -> Result<Response<GetQueueResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(READERS)?;
        let tenant = caller.tenant()?.to_owned();
        tracing::Span::current().record("tenant", tenant.as_str());
        let r = req.into_inner();
        let size = page_size(r.page_size, limits::DEFAULT_PAGE)?;
        check_filter("priorities", r.priorities.len())?;
        let offset: i64 = if r.page_token.is_empty() {
            0
        } else {
            // An offset, never negative.
            r.page_token.parse::<u32>().map(i64::from).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?
        };
        let mut priorities = Vec::new();
        for (i, p) in r.priorities.iter().enumerate() {
            match wardline_proto::common::Priority::try_from(*p) {
                Ok(p) if p != wardline_proto::common::Priority::Unspecified => {
                    priorities.push(Named(p))
                }
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "priorities[{i}]: unknown priority"
                    )));
                }
            }
        }
        let now = Utc::now();
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        let rows = tickets::queued(&mut tx, &tenant, &priorities, offset, size + 1)
            .await
            .map_err(|e| db_status(&e))?;
        let more = rows.len() as i64 > size;
        let tickets = rows
            .iter()
            .take(size as usize)
            .enumerate()
            .map(|(i, t)| queued_ticket(t, offset + i as i64 + 1, now))
            .collect();
        let counts = tickets::queue_counts(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let depth = counts.iter().map(|(_, n, _)| *n).sum::<i64>() as u32;
        Ok(Response::new(GetQueueResponse {
            tenant_id: tenant,
            as_of: Some(timestamp(now)),
            tickets,
            depth,
            by_priority: counts
                .into_iter()
                .map(|(p, n, oldest)| PriorityCount {
                    priority: i32::from(p.get()),
                    count: n as u32,
                    oldest_waiting_seconds: oldest
                        .map(|o| (now - o).num_seconds().max(0) as u64)
                        .unwrap_or(0),
                })
                .collect(),
            next_page_token: if more {
                (offset + size).to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn list_assignments(
        &self,
        req: Request<ListAssignmentsRequest>,
    ) -> Result<Response<ListAssignmentsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(READERS)?;
        let tenant = caller.tenant()?.to_owned();
        let r = req.into_inner();
        let size = page_size(r.page_size, limits::DEFAULT_ASSIGNMENTS_PAGE)?;
        check_filter("states", r.states.len())?;
        if !r.analyst_id.is_empty() && !super::analysts::is_analyst_id(&r.analyst_id) {
            return Err(Status::invalid_argument(format!(
                "analyst_id: 1-{} of [a-z0-9._-]",
                limits::ANALYST_ID
            )));
        }
        let ticket = if r.ticket_id.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&r.ticket_id)
                    .map_err(|_| Status::invalid_argument("ticket_id: not a valid ticket id"))?,
            )
        };
        let before = if r.page_token.is_empty() {
            Uuid::max()
        } else {
            Uuid::parse_str(&r.page_token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?
        };
        let mut states = Vec::new();
        for (i, s) in r.states.iter().enumerate() {
            match wardline_proto::routing::AssignmentState::try_from(*s) {
                Ok(s) if s != wardline_proto::routing::AssignmentState::Unspecified => {
                    states.push(Named(s))
                }
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "states[{i}]: unknown state"
                    )));
                }
            }
        }
        let (from, to) = match &r.assigned {
            Some(range) => (
                range.start.as_ref().and_then(from_timestamp),
                range.end.as_ref().and_then(from_timestamp),
            ),
            None => (None, None),
        };
        let sql = format!(
            "{ASSIGNMENT_SELECT} WHERE a.tenant_id = $1 AND a.assignment_id < $2
               AND ($3 = '' OR a.analyst_id = $3) AND ($4::uuid IS NULL OR a.ticket_id = $4)
               AND (cardinality($5::text[]) = 0 OR a.state = ANY($5))
               AND ($6::timestamptz IS NULL OR a.assigned_at >= $6) AND ($7::timestamptz IS NULL OR a.assigned_at < $7)
             ORDER BY a.assignment_id DESC LIMIT $8"
        );
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        let rows: Vec<AssignmentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&tenant)
            .bind(before)
            .bind(&r.analyst_id)
            .bind(ticket)
            .bind(&states)
            .bind(from)
            .bind(to)
            .bind(size + 1)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let more = rows.len() as i64 > size;
        let assignments: Vec<Assignment> =
            rows.iter().take(size as usize).map(assignment).collect();
        let next_page_token = if more {
            assignments
                .last()
                .map(|a| a.assignment_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListAssignmentsResponse {
            assignments,
            next_page_token,
        }))
    }

    async fn explain_assignment(
        &self,
        req: Request<ExplainAssignmentRequest>,
    ) -> Result<Response<AssignmentExplanation>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(READERS)?;
        let tenant = caller.tenant()?.to_owned();
        let r = req.into_inner();
        let id = Uuid::parse_str(&r.assignment_id)
            .map_err(|_| Status::invalid_argument("assignment_id: not a valid id"))?;
        let sql = format!("{ASSIGNMENT_SELECT} WHERE a.tenant_id = $1 AND a.assignment_id = $2");
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        let row: Option<AssignmentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_status(&e))?;
        let row = row.ok_or_else(|| Status::not_found(format!("assignment {id} not found")))?;
        let bytes: Vec<u8> = sqlx::query_scalar(
            "SELECT explanation FROM assignments WHERE tenant_id = $1 AND assignment_id = $2",
        )
        .bind(&tenant)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let mut exp = AssignmentExplanation::decode(bytes.as_slice())
            .map_err(|_| Status::internal("stored explanation is unreadable"))?;
        exp.assignment = Some(assignment(&row));
        Ok(Response::new(exp))
    }
}
