//! Assigning one ticket: the decision over the tenant's policy, the
//! capacity taken atomically from the best-ranked analyst who still has
//! some (so replicas never over-assign), the assignment with its recorded
//! explanation, or the queue when nobody qualifies.

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{EventEnvelope, TicketAssigned, TicketQueued};
use wardline_proto::routing::{AssignmentExplanation, AssignmentState, Candidate, DecisionTrigger};

use crate::cache::Policy;
use crate::domain::decision::{self, Decision, TicketFacts};
use crate::policy;
use crate::store::assignments::{self, NewAssignment};
use crate::store::tickets::{self, TicketRow, state};

/// One of routing's events about `t`, numbered with its next routing sequence.
pub(crate) fn next_event(t: &mut TicketRow, payload: Payload) -> EventEnvelope {
    t.routing_seq += 1;
    envelope(
        "routing",
        &t.tenant_id,
        &t.ticket_id.to_string(),
        t.routing_seq as u64,
        payload,
    )
}

/// Publishes one of routing's events about `t` (next routing sequence).
pub(crate) async fn publish(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    payload: Payload,
) -> Result<(), sqlx::Error> {
    let env = next_event(t, payload);
    wardline_kit::outbox::enqueue(conn, &env)
        .await
        .map_err(|e| match e {
            wardline_kit::outbox::OutboxError::Db(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })
}

/// Frees the assignee's capacity and ends their live assignment with `end`.
/// Returns the analyst whose capacity was freed, if any: the caller hands
/// that slot to the head of their queue ([`crate::queue::hand_over`]) in
/// this transaction.
pub(crate) async fn release(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    end: AssignmentState,
) -> Result<Option<String>, sqlx::Error> {
    if t.assignee.is_empty() {
        return Ok(None);
    }
    let held = matches!(t.state, state::ASSIGNED | state::ACKNOWLEDGED);
    if held {
        assignments::free_slot(conn, &t.assignee).await?;
    }
    assignments::end_live(conn, t.ticket_id, end).await?;
    t.previous_analyst_id = std::mem::take(&mut t.assignee);
    Ok(held.then(|| t.previous_analyst_id.clone()))
}

/// The result of trying to route a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Assigned to this analyst.
    Assigned(String),
    /// Nobody eligible; waiting with this reason.
    Queued(&'static str),
}

pub(crate) fn explanation(
    t: &TicketRow,
    rule: &crate::domain::rules::Rule,
    d: &Decision,
    chosen: &str,
    now: DateTime<Utc>,
) -> AssignmentExplanation {
    AssignmentExplanation {
        assignment: None,
        decided_at: Some(timestamp(now)),
        facility_id: t.facility_id.clone(),
        caller_role: i32::from(t.caller_role.get()),
        clinical_category: t.clinical_category,
        rule: Some(policy::rule_to_proto(rule)),
        credential_required: d.credential_required,
        previous_analyst_id: t.previous_analyst_id.clone(),
        ranking_order: decision::RANKING_ORDER.iter().map(|k| *k as i32).collect(),
        candidates: d
            .verdicts
            .iter()
            .map(|v| Candidate {
                analyst_id: v.analyst_id.clone(),
                eligible: v.eligible,
                reasons: v.reasons.iter().map(|r| *r as i32).collect(),
                skill_gaps: v.skill_gaps.iter().map(|m| *m as i32).collect(),
                skill_level: v.skill_level,
                current_load: v.current_load,
                max_concurrent_tickets: v.max_concurrent,
                idle_since: Some(timestamp(v.idle_since)),
                previous_analyst: v.previous_analyst,
                rank: v.rank,
                availability: v.availability as i32,
            })
            .collect(),
        chosen_analyst_id: chosen.to_owned(),
        queued_seconds: t
            .queued_at
            .map(|q| (now - q).num_seconds().max(0) as u64)
            .unwrap_or(0),
        escalation_level: i32::from(t.escalation_level),
    }
}

/// Decides and records: assigns the best analyst who still has capacity,
/// or queues the ticket. The ticket row must be locked by the caller;
/// `policy` is the tenant's (see [`crate::cache`]).
pub async fn route(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    trigger: DecisionTrigger,
    policy: &mut Policy,
) -> Result<Routed, sqlx::Error> {
    let routed = decide_and_write(conn, t, trigger, policy, Write::Update { wait: true }).await?;
    Ok(routed.expect("an update always writes"))
}

/// [`route`] for a queued ticket the caller holds locked with other queued
/// tickets: never waits for an analyst's row (see [`take_capacity`]).
pub(crate) async fn route_queued(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    policy: &mut Policy,
) -> Result<Routed, sqlx::Error> {
    let routed = decide_and_write(
        conn,
        t,
        DecisionTrigger::QueueDrain,
        policy,
        Write::Update { wait: false },
    )
    .await?;
    Ok(routed.expect("an update always writes"))
}

/// How [`decide_and_write`] stores its outcome.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// The ticket is new: one `INSERT` with the outcome.
    Insert,
    /// The ticket is stored and locked; `wait` as in [`take_capacity`].
    Update { wait: bool },
}

/// [`route`] for a ticket not yet stored: the ticket, its SLA timers and
/// the outcome are written by one `INSERT`. `None` when the ticket was
/// inserted meanwhile by a concurrent event (the caller rolls back).
pub(crate) async fn route_new(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    policy: &mut Policy,
) -> Result<Option<Routed>, sqlx::Error> {
    decide_and_write(
        conn,
        t,
        DecisionTrigger::TicketCreated,
        policy,
        Write::Insert,
    )
    .await
}

/// What the decision needs to know about a ticket.
pub(crate) fn facts_of(t: &TicketRow) -> TicketFacts {
    TicketFacts {
        tenant_id: t.tenant_id.clone(),
        facility_id: t.facility_id.clone(),
        caller_role: t.caller_role.get(),
        previous_analyst: Some(t.previous_analyst_id.clone()).filter(|p| !p.is_empty()),
        excluded: t.excluded_analysts.clone(),
    }
}

async fn decide_and_write(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    trigger: DecisionTrigger,
    policy: &mut Policy,
    write: Write,
) -> Result<Option<Routed>, sqlx::Error> {
    let now = Utc::now();
    let (new, wait) = match write {
        Write::Insert => (true, true),
        Write::Update { wait } => (false, wait),
    };
    let category = t.category.get();
    let rule = policy.rule(category).into_owned();
    let d = decision::decide(&facts_of(t), &rule, &policy.analysts, now);
    metrics::counter!("wardline_routing_decisions_total").increment(1);
    let ranked: Vec<&str> = d.ranked().map(|v| v.analyst_id.as_str()).collect();
    let Some((chosen, attempt)) =
        assignments::take_capacity(conn, t.ticket_id, &ranked, wait).await?
    else {
        return queue(conn, t, d.queue_reason(), new, now).await;
    };
    policy.took(&chosen);
    let a = NewAssignment {
        id: Uuid::now_v7(),
        explanation: explanation(t, &rule, &d, &chosen, now).encode_to_vec(),
        analyst: chosen,
        attempt: attempt as i32,
        trigger,
        at: now,
        ack_deadline: policy.targets().ack_deadline(now),
    };
    assign(conn, t, a, new).await
}

/// Records assignment `a` of `t` (inserting the ticket when `new`) and
/// publishes `ticket.assigned`.
async fn assign(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    a: NewAssignment,
    new: bool,
) -> Result<Option<Routed>, sqlx::Error> {
    let payload = mark_assigned(t, &a);
    publish(conn, t, payload).await?;
    if new {
        if !tickets::insert_routed(conn, t, Some(&a)).await? {
            return Ok(None);
        }
    } else {
        // The assignment, its acknowledgement timer and the ticket in one statement.
        assignments::save_assigned(conn, t, &a).await?;
    }
    Ok(Some(Routed::Assigned(a.analyst)))
}

/// `t` as assigned by `a`, and the `ticket.assigned` to publish.
pub(crate) fn mark_assigned(t: &mut TicketRow, a: &NewAssignment) -> Payload {
    t.state = state::ASSIGNED;
    t.assignee = a.analyst.clone();
    t.queued_at = None;
    t.queue_reason.clear();
    metrics::histogram!("wardline_routing_time_to_assign_seconds", "priority" => t.label())
        .record((a.at - t.created_at).num_milliseconds().max(0) as f64 / 1000.0);
    tracing::info!(ticket_id = %t.ticket_id, analyst_id = %a.analyst, assignment_id = %a.id, "ticket assigned");
    Payload::TicketAssigned(TicketAssigned {
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        assignment_id: a.id.to_string(),
        analyst_id: a.analyst.clone(),
        priority: i32::from(t.priority.get()),
        ack_deadline: Some(timestamp(a.ack_deadline)),
        attempt: a.attempt as u32,
        ticket_version: t.ticket_version as u64,
    })
}

/// `t` as waiting, and the `ticket.queued` to publish when it was not
/// waiting already.
pub(crate) fn mark_queued(
    t: &mut TicketRow,
    reason: &'static str,
    now: DateTime<Utc>,
) -> Option<Payload> {
    let newly_queued = t.state != state::WAITING || t.queued_at.is_none();
    t.state = state::WAITING;
    t.assignee.clear();
    if !newly_queued {
        return None;
    }
    t.queued_at = Some(now);
    t.queue_reason = reason.to_owned();
    tracing::info!(ticket_id = %t.ticket_id, reason, "ticket queued");
    Some(Payload::TicketQueued(TicketQueued {
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        priority: i32::from(t.priority.get()),
        reason_code: reason.to_owned(),
        ticket_version: t.ticket_version as u64,
    }))
}

/// Leaves `t` waiting (inserting it when `new`); publishes `ticket.queued`
/// when it was not waiting already.
async fn queue(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    reason: &'static str,
    new: bool,
    now: DateTime<Utc>,
) -> Result<Option<Routed>, sqlx::Error> {
    if let Some(payload) = mark_queued(t, reason, now) {
        publish(conn, t, payload).await?;
    }
    if new {
        if !tickets::insert_routed(conn, t, None).await? {
            return Ok(None);
        }
    } else {
        tickets::save(conn, t).await?;
    }
    Ok(Some(Routed::Queued(reason)))
}

/// What [`route_new_batch`] did with a batch.
pub(crate) struct BatchRouted {
    /// `ticket.assigned` or `ticket.queued` of the stored tickets, with
    /// their position in the batch (the cause to publish them for).
    pub events: Vec<(usize, EventEnvelope)>,
    /// Tickets left to route one by one, with their position in the batch.
    pub one_by_one: Vec<(usize, TicketRow)>,
}

/// Routes a batch of one tenant's new tickets, in order, over one live read
/// (`policy`, whose loads count in the batch's own picks as it goes): the
/// slots of all of them are taken in one conditional `UPDATE`
/// ([`assignments::take_many`]) and the tickets, timers and assignments
/// written in one `INSERT` ([`tickets::insert_routed_many`]). A ticket whose
/// pick was not granted (another replica filled that analyst meanwhile) is
/// returned unwritten, for [`route_new`] one by one. `spans[i]` is the span
/// of ticket `i`'s event. `None` when a ticket was stored meanwhile by a
/// concurrent event (the caller rolls back).
pub(crate) async fn route_new_batch(
    conn: &mut PgConnection,
    policy: &mut Policy,
    batch: Vec<TicketRow>,
    spans: &[tracing::Span],
) -> Result<Option<BatchRouted>, sqlx::Error> {
    let now = Utc::now();
    let mut picks = Vec::with_capacity(batch.len());
    let mut wants: Vec<(String, i32)> = Vec::new();
    for t in &batch {
        let category = t.category.get();
        let rule = policy.rule(category).into_owned();
        let d = decision::decide(&facts_of(t), &rule, &policy.analysts, now);
        metrics::counter!("wardline_routing_decisions_total").increment(1);
        let chosen = d.ranked().next().map(|v| v.analyst_id.clone());
        if let Some(c) = &chosen {
            policy.took(c);
            match wants.iter_mut().find(|(a, _)| a == c) {
                Some((_, n)) => *n += 1,
                None => wants.push((c.clone(), 1)),
            }
        }
        picks.push((rule, d, chosen));
    }
    let granted = if wants.is_empty() {
        Vec::new()
    } else {
        assignments::take_many(conn, &wants).await?
    };
    let mut rows = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    let mut one_by_one = Vec::new();
    for (i, (mut t, (rule, d, chosen))) in batch.into_iter().zip(picks).enumerate() {
        let _span = spans[i].enter();
        let (assignment, payload) = match chosen {
            Some(c) if granted.contains(&c) => {
                let a = NewAssignment {
                    id: Uuid::now_v7(),
                    explanation: explanation(&t, &rule, &d, &c, now).encode_to_vec(),
                    analyst: c,
                    attempt: 1,
                    trigger: DecisionTrigger::TicketCreated,
                    at: now,
                    ack_deadline: policy.targets().ack_deadline(now),
                };
                let payload = mark_assigned(&mut t, &a);
                (Some(a), payload)
            }
            Some(_) => {
                one_by_one.push((i, t));
                continue;
            }
            None => {
                let payload = mark_queued(&mut t, d.queue_reason(), now)
                    .expect("a new ticket was not waiting");
                (None, payload)
            }
        };
        events.push((i, next_event(&mut t, payload)));
        rows.push((t, assignment));
    }
    if !rows.is_empty() && tickets::insert_routed_many(conn, &rows).await? < rows.len() as i64 {
        return Ok(None);
    }
    Ok(Some(BatchRouted { events, one_by_one }))
}
