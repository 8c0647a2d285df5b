//! The timer scanner: an assignment not acknowledged in time is re-routed
//! (and the analyst's slot handed to their queue); a missed response or
//! resolution target is published as a breach and escalated. A timer row is
//! deleted in the same transaction as its effect, so a crash fires it again.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use wardline_kit::events::timestamp;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{EscalationLevel, SlaBreached, SlaTarget, TicketEscalated};
use wardline_proto::routing::{AssignmentState, DecisionTrigger};

use crate::assignment::{publish, release, route};
use crate::cache::PolicyCache;
use crate::queue::hand_over;
use crate::store::assignments;
use crate::store::tickets::{self, TicketRow, state};
use crate::store::timers::{self, timer};

/// Fires due timers (at most a batch). Returns how many fired.
pub async fn fire_due(pool: &PgPool, cache: &PolicyCache) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due = timers::due(&mut tx).await?;
    let mut fired = 0;
    for d in due {
        // A ticket being changed right now is left for the next round
        // (locking it while holding the timer could deadlock with a consumer).
        let Some(mut t) = tickets::lock(&mut tx, d.ticket_id, true).await? else {
            continue;
        };
        timers::delete(&mut tx, d.ticket_id, d.kind).await?;
        fired += 1;
        match d.kind {
            timer::ACK => ack_timeout(&mut tx, cache, &mut t, d.assignment_id).await?,
            timer::RESPONSE if t.responded_at.is_none() && t.state != state::DONE => {
                breach(
                    &mut tx,
                    &mut t,
                    SlaTarget::Response,
                    d.due_at,
                    EscalationLevel::Supervisor,
                )
                .await?
            }
            timer::RESOLUTION if t.state != state::DONE => {
                breach(
                    &mut tx,
                    &mut t,
                    SlaTarget::Resolution,
                    d.due_at,
                    EscalationLevel::Tier2,
                )
                .await?
            }
            _ => {}
        }
        tickets::save(&mut tx, &t).await?;
    }
    tx.commit().await?;
    Ok(fired)
}

/// The assigned analyst did not acknowledge in time: re-route to the next one.
async fn ack_timeout(
    conn: &mut PgConnection,
    cache: &PolicyCache,
    t: &mut TicketRow,
    assignment: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let live = assignments::pending(conn, t.ticket_id).await?;
    if t.state != state::ASSIGNED || live.is_none() || live != assignment {
        return Ok(()); // acknowledged or re-assigned meanwhile
    }
    let timed_out = t.assignee.clone();
    release(conn, t, AssignmentState::TimedOut).await?;
    if !t.excluded_analysts.contains(&timed_out) {
        t.excluded_analysts.push(timed_out.clone());
    }
    t.previous_analyst_id.clear();
    metrics::counter!("wardline_routing_reroutes_total").increment(1);
    tracing::warn!(ticket_id = %t.ticket_id, analyst_id = %timed_out, "assignment not acknowledged in time; re-routing");
    let payload = Payload::TicketEscalated(TicketEscalated {
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        priority: i32::from(t.priority.get()),
        level: EscalationLevel::Reroute as i32,
        reason_code: "ack_timeout".into(),
        to_analyst_id: String::new(),
    });
    publish(conn, t, payload).await?;
    t.state = state::WAITING;
    t.queued_at = None;
    let mut policy = cache.policy(conn, &t.tenant_id).await?;
    route(conn, t, DecisionTrigger::AckTimeout, &mut policy).await?;
    // The ticket is saved by the caller; until then it is not waiting, so
    // the hand-over below cannot pick it back up for the analyst excluded from it.
    tickets::save(conn, t).await?;
    hand_over(conn, cache, &timed_out).await?;
    Ok(())
}

/// An SLA target was missed: publish the breach and escalate.
async fn breach(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    target: SlaTarget,
    deadline: DateTime<Utc>,
    level: EscalationLevel,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let target_label = if target == SlaTarget::Response {
        "response"
    } else {
        "resolution"
    };
    metrics::counter!("wardline_sla_breaches_total", "target" => target_label, "priority" => t.label()).increment(1);
    metrics::counter!("wardline_routing_escalations_total", "level" => if level == EscalationLevel::Supervisor { "supervisor" } else { "tier2" })
        .increment(1);
    tracing::warn!(ticket_id = %t.ticket_id, target = target_label, "SLA target missed; escalating");
    let supervisor =
        assignments::escalation_target(conn, &t.tenant_id, level == EscalationLevel::Tier2).await?;
    publish(
        conn,
        t,
        Payload::SlaBreached(SlaBreached {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            priority: i32::from(t.priority.get()),
            target: target as i32,
            deadline: Some(timestamp(deadline)),
            breached_at: Some(timestamp(now)),
            internal: false,
        }),
    )
    .await?;
    publish(
        conn,
        t,
        Payload::TicketEscalated(TicketEscalated {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            priority: i32::from(t.priority.get()),
            level: level as i32,
            reason_code: format!("{target_label}_target_missed"),
            to_analyst_id: supervisor.unwrap_or_default(),
        }),
    )
    .await?;
    t.escalation_level = t.escalation_level.max(level as i16);
    Ok(())
}
