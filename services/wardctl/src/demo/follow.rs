//! Following the calls through the services: waiting until routing placed
//! each one, billing rated it and notification told someone, then reading
//! what each holds. The demo waits for what it shows; it does not audit the
//! pipeline (the end-to-end tests do).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::Utc;
use chrono_tz::Tz;
use tonic::Code;
use wardline_proto::billing::{
    Charge, GetDraftInvoiceRequest, GetUsageRequest, Invoice, LineKind, ListChargesRequest, Usage,
};
use wardline_proto::events::ResolutionCode;
use wardline_proto::intake::{
    AcknowledgeTicketRequest, AddNoteRequest, GetTicketRequest, ResolveTicketRequest,
    StartTicketRequest, Ticket,
};
use wardline_proto::notification::{Delivery, DeliveryState, ListDeliveriesRequest};
use wardline_proto::routing::{
    AssignmentExplanation, ExplainAssignmentRequest, GetQueueRequest, ListAssignmentsRequest,
};

use super::Progress;
use crate::grpc::{Session, describe_status};
use crate::render;

/// Polls `read` every `every` until `done` holds for what it returns or
/// `wait` passes; returns the last reading. `done` may remember earlier
/// readings (to see a count stop growing).
pub async fn poll<T, F, Fut>(
    wait: Duration,
    every: Duration,
    mut read: F,
    mut done: impl FnMut(&T) -> bool,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + wait;
    loop {
        let now = read().await?;
        if done(&now) || Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(every).await;
    }
}

/// True once routing has decided: an assignee, or a place in the queue.
pub fn routed(t: &Ticket) -> bool {
    !t.assignee_analyst_id.is_empty() || t.queued
}

/// The tickets as intake shows them once each is [`routed`] (or `wait` passed).
pub async fn routed_tickets(
    intake: &Session,
    created: &[Ticket],
    wait: Duration,
) -> Result<Vec<Ticket>> {
    let read = || async {
        let mut now = Vec::with_capacity(created.len());
        for t in created {
            let req = GetTicketRequest {
                ticket_id: t.ticket_id.clone(),
                number: String::new(),
            };
            let session = intake.for_tenant(Some(&t.tenant_id))?;
            now.push(session.tickets().get_ticket(req).await?.into_inner());
        }
        anyhow::Ok(now)
    };
    poll(
        wait,
        Duration::from_millis(300),
        read,
        |now: &Vec<Ticket>| now.iter().all(routed),
    )
    .await
}

/// Why each queued ticket waits (`ticket_id -> reason_code`), and each
/// tenant's queue by priority (`Err` when unreadable).
pub async fn queues(
    routing: &Session,
    tenants: &[String],
) -> Vec<(
    String,
    Result<Vec<(String, u32)>, String>,
    HashMap<String, String>,
)> {
    let mut out = Vec::new();
    for tenant in tenants {
        let read = async {
            let req = GetQueueRequest {
                page_size: 500,
                ..Default::default()
            };
            anyhow::Ok(
                routing
                    .for_tenant(Some(tenant))?
                    .queues()
                    .get_queue(req)
                    .await?
                    .into_inner(),
            )
        };
        match read.await {
            Ok(q) => {
                let per = q
                    .by_priority
                    .iter()
                    .map(|c| (render::priority(c.priority).to_owned(), c.count))
                    .collect();
                let reasons = q
                    .tickets
                    .into_iter()
                    .map(|t| (t.ticket_id, t.reason_code))
                    .collect();
                out.push((tenant.clone(), Ok(per), reasons));
            }
            Err(e) => out.push((tenant.clone(), Err(crate::error_text(&e)), HashMap::new())),
        }
    }
    out
}

/// Routing's recorded decision about `ticket`'s latest assignment.
pub async fn explanation(
    routing: &Session,
    ticket: &Ticket,
) -> Result<Option<AssignmentExplanation>> {
    let session = routing.for_tenant(Some(&ticket.tenant_id))?;
    let req = ListAssignmentsRequest {
        ticket_id: ticket.ticket_id.clone(),
        page_size: 1,
        ..Default::default()
    };
    let latest = session
        .queues()
        .list_assignments(req)
        .await?
        .into_inner()
        .assignments;
    let Some(a) = latest.into_iter().next() else {
        return Ok(None);
    };
    let req = ExplainAssignmentRequest {
        assignment_id: a.assignment_id,
    };
    Ok(Some(
        session.queues().explain_assignment(req).await?.into_inner(),
    ))
}

/// Acknowledge, start, a public note, resolve, as far as the ticket's
/// state allows (a refusal is shown and ends the chain, the note aside).
/// Returns the steps that happened.
pub async fn work(
    session: &Session,
    ticket: &Ticket,
    note: &str,
    resolution: ResolutionCode,
    run: &str,
    p: &Progress,
) -> Result<Vec<String>> {
    let id = ticket.ticket_id.clone();
    let mut tickets = session.tickets();
    let mut steps = Vec::new();
    let req = AcknowledgeTicketRequest {
        request_id: format!("demo-ack-{run}"),
        ticket_id: id.clone(),
        expected_version: 0,
    };
    let mut flowing = step(
        p,
        "acknowledged",
        tickets.acknowledge_ticket(req).await,
        &mut steps,
    )?;
    if flowing {
        let req = StartTicketRequest {
            request_id: format!("demo-start-{run}"),
            ticket_id: id.clone(),
            expected_version: 0,
        };
        flowing = step(p, "started", tickets.start_ticket(req).await, &mut steps)?;
    }
    let req = AddNoteRequest {
        request_id: format!("demo-note-{run}"),
        ticket_id: id.clone(),
        body: note.to_owned(),
        public: true,
    };
    let added = tickets
        .add_note(req)
        .await
        .context("adding the note")?
        .into_inner();
    p.line(&format!("note_added   public, {}", added.note_id));
    steps.push("note_added".to_owned());
    if flowing {
        let req = ResolveTicketRequest {
            request_id: format!("demo-resolve-{run}"),
            ticket_id: id,
            expected_version: 0,
            resolution_code: resolution as i32,
            first_contact_resolution: false,
        };
        step(p, "resolved", tickets.resolve_ticket(req).await, &mut steps)?;
    }
    Ok(steps)
}

/// Reports one lifecycle call: FAILED_PRECONDITION (the wrong state) is
/// shown and stops the chain; any other failure ends the demo.
fn step(
    p: &Progress,
    what: &str,
    result: Result<tonic::Response<Ticket>, tonic::Status>,
    steps: &mut Vec<String>,
) -> Result<bool> {
    match result {
        Ok(r) => {
            p.line(&format!(
                "{what:<12} {}",
                render::ticket_line(&r.into_inner())
            ));
            steps.push(what.to_owned());
            Ok(true)
        }
        Err(s) if s.code() == Code::FailedPrecondition => {
            p.line(&format!("{what:<12} refused: {}", describe_status(&s)));
            Ok(false)
        }
        Err(s) => Err(anyhow::anyhow!("{what}: {}", describe_status(&s))),
    }
}

/// Charges that meter a call (one per rated call).
pub fn is_base_charge(c: &Charge) -> bool {
    [
        LineKind::CallsIncluded,
        LineKind::Overage,
        LineKind::TierPrice,
    ]
    .iter()
    .any(|k| c.kind == *k as i32)
}

/// The period `YYYY-MM` of a ticket's creation in `time_zone`.
fn period_of(t: &Ticket, time_zone: &str) -> String {
    let at = render::utc(t.created_at.as_ref()).unwrap_or_else(Utc::now);
    match time_zone.parse::<Tz>() {
        Ok(tz) => at.with_timezone(&tz).format("%Y-%m").to_string(),
        Err(_) => at.format("%Y-%m").to_string(),
    }
}

/// Each call's charges (`ticket_id -> charges`) once every call of a
/// tenant with a contract has its base charge (or `wait` passed).
pub async fn charges(
    billing: &Session,
    calls: &[(Ticket, String)],
    wait: Duration,
) -> Result<HashMap<String, Vec<Charge>>> {
    let read = || async {
        let mut out = HashMap::new();
        for (t, zone) in calls {
            let req = ListChargesRequest {
                period: period_of(t, zone),
                ticket_id: t.ticket_id.clone(),
                page_size: 500,
                ..Default::default()
            };
            let session = billing.for_tenant(Some(&t.tenant_id))?;
            let got = session
                .usage()
                .list_charges(req)
                .await?
                .into_inner()
                .charges;
            out.insert(t.ticket_id.clone(), got);
        }
        anyhow::Ok(out)
    };
    let rated =
        |now: &HashMap<String, Vec<Charge>>| now.values().all(|c| c.iter().any(is_base_charge));
    poll(wait, Duration::from_millis(300), read, rated).await
}

/// A tenant's month so far: usage and the draft invoice.
pub async fn month(billing: &Session, tenant: &str) -> Result<(Usage, Invoice)> {
    let session = billing.for_tenant(Some(tenant))?;
    let usage = session
        .usage()
        .get_usage(GetUsageRequest::default())
        .await?
        .into_inner();
    let draft = session
        .invoices()
        .get_draft_invoice(GetDraftInvoiceRequest::default())
        .await?
        .into_inner();
    Ok((usage, draft))
}

/// Each call's deliveries once every call has one, none waits for its
/// first attempt, and their number stopped growing (or `wait` passed).
pub async fn deliveries(
    notification: &Session,
    created: &[Ticket],
    wait: Duration,
) -> Result<HashMap<String, Vec<Delivery>>> {
    let read = || async {
        let mut out = HashMap::new();
        for t in created {
            let req = ListDeliveriesRequest {
                ticket_id: t.ticket_id.clone(),
                ..Default::default()
            };
            let session = notification.for_tenant(Some(&t.tenant_id))?;
            let list = crate::commands::notification::list_deliveries(&session, req, 500).await?;
            out.insert(t.ticket_id.clone(), list);
        }
        anyhow::Ok(out)
    };
    let count = |d: &HashMap<String, Vec<Delivery>>| d.values().map(Vec::len).sum::<usize>();
    let mut last = 0;
    let settled = move |now: &HashMap<String, Vec<Delivery>>| {
        let sent = now
            .values()
            .all(|d| !d.is_empty() && d.iter().all(|d| d.state != DeliveryState::Pending as i32));
        let steady = std::mem::replace(&mut last, count(now)) == count(now);
        sent && steady
    };
    poll(wait, Duration::from_millis(700), read, settled).await
}
