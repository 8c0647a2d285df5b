//! A tenant's own internal SLA targets (issue 15): a tenant admin sets them,
//! no looser than the contract's; a missed one raises exactly one alert (an
//! `SlaBreached` marked `internal`), with no escalation, and nothing for a
//! ticket that is done. Billing's and intake's side (never credited, never
//! counted) are tested with their handlers.
//!
//! Real PostgreSQL; intake's events go through routing's handler as the
//! consumer loop applies them; the watcher is called directly.

mod common;

use chrono::{Duration, Utc};
use prost::Message;
use tonic::Code;
use uuid::Uuid;
use wardline_kit::auth::Role;
use wardline_kit::consumer::Incoming;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    EventEnvelope, SlaTarget, TicketCreated, TicketResolved, TicketSnapshot,
};
use wardline_proto::routing::sla_target_service_server::SlaTargetService;
use wardline_proto::routing::{
    GetInternalSlaTargetsRequest, PriorityTargets, SetInternalSlaTargetsRequest,
};
use wardline_routing::jobs::internal_sla::alert_due;

use common::{TENANT, apply, req, req_as, routing};

fn targets(p: Priority, response: u32, resolution: u32) -> PriorityTargets {
    PriorityTargets {
        priority: p as i32,
        response_minutes: response,
        resolution_minutes: resolution,
    }
}

fn set(targets: Vec<PriorityTargets>) -> SetInternalSlaTargetsRequest {
    SetInternalSlaTargetsRequest {
        request_id: Uuid::now_v7().to_string(),
        targets,
        expected_version: 0,
    }
}

/// `ticket.created` of a ticket of `priority` created `age` ago.
fn created(
    id: Uuid,
    number: &str,
    priority: Priority,
    age: Duration,
    status: TicketStatus,
) -> TicketSnapshot {
    TicketSnapshot {
        ticket_id: id.to_string(),
        number: number.into(),
        facility_id: "main".into(),
        category: Category::Printing as i32,
        priority: priority as i32,
        status: status as i32,
        caller_role: CallerRole::NonClinical as i32,
        created_at: Some(timestamp(Utc::now() - age)),
        ..Default::default()
    }
}

/// The breach events routing has written to its outbox.
async fn breaches(pool: &sqlx::PgPool) -> Vec<wardline_proto::events::SlaBreached> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM outbox ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .filter_map(
            |b| match EventEnvelope::decode(b.as_slice()).ok()?.payload {
                Some(Payload::SlaBreached(b)) => Some(b),
                _ => None,
            },
        )
        .collect()
}

async fn escalations(pool: &sqlx::PgPool) -> usize {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .filter(|b| {
            matches!(
                EventEnvelope::decode(b.as_slice())
                    .ok()
                    .and_then(|e| e.payload),
                Some(Payload::TicketEscalated(_))
            )
        })
        .count()
}

#[tokio::test]
async fn a_tenant_admin_sets_internal_targets_no_looser_than_the_contract() {
    let (_db, _pool, api, _) = routing("rt_internal_set").await;

    let none = api
        .get_internal_sla_targets(req(GetInternalSlaTargetsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(none.targets.is_empty());
    assert_eq!(none.version, 0);

    // The shipped contract: P1 15 min / 4 h, P2 30 min / 8 h.
    let stored = api
        .set_internal_sla_targets(req(set(vec![
            targets(Priority::P1, 5, 60),
            targets(Priority::P2, 30, 480),
        ])))
        .await
        .expect("stricter targets")
        .into_inner();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.targets.len(), 2);
    let read = api
        .get_internal_sla_targets(req(GetInternalSlaTargetsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.targets, stored.targets);

    for (bad, field) in [
        (
            vec![targets(Priority::P1, 16, 60)],
            "targets[P1].response_minutes",
        ),
        (
            vec![targets(Priority::P2, 10, 481)],
            "targets[P2].resolution_minutes",
        ),
        (
            vec![targets(Priority::P3, 10, 10)],
            "targets[P3].resolution_minutes",
        ),
        (
            vec![targets(Priority::P1, 5, 60), targets(Priority::P1, 5, 60)],
            "targets[1].priority",
        ),
        (
            vec![targets(Priority::Unspecified, 5, 60)],
            "targets[0].priority",
        ),
    ] {
        let err = api
            .set_internal_sla_targets(req(set(bad)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    let err = api
        .set_internal_sla_targets(req_as(
            "an.jones",
            Role::Analyst,
            set(vec![targets(Priority::P1, 5, 60)]),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An empty list removes them.
    let cleared = api
        .set_internal_sla_targets(req(set(vec![])))
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.targets.is_empty());
    assert_eq!(cleared.version, 2);
}

#[tokio::test]
async fn a_missed_internal_target_alerts_once_and_never_escalates() {
    let (_db, pool, api, handler) = routing("rt_internal_alert").await;
    api.set_internal_sla_targets(req(set(vec![targets(Priority::P1, 5, 60)])))
        .await
        .expect("internal targets");

    // Ten minutes old: past the internal 5, not the contract's 15. Nobody
    // covers printing, so it waits (not acknowledged).
    let late = Uuid::now_v7();
    let fresh = Uuid::now_v7();
    let done = Uuid::now_v7();
    let p2 = Uuid::now_v7();
    for (id, number, priority, age) in [
        (late, "STM-0001", Priority::P1, Duration::minutes(10)),
        (fresh, "STM-0002", Priority::P1, Duration::minutes(1)),
        (done, "STM-0003", Priority::P1, Duration::minutes(10)),
        (p2, "STM-0004", Priority::P2, Duration::minutes(100)),
    ] {
        let payload = Payload::TicketCreated(TicketCreated {
            ticket: Some(created(id, number, priority, age, TicketStatus::New)),
            caller: None,
            category_classified: false,
        });
        let env = envelope("intake", TENANT, &id.to_string(), 1, payload);
        apply(&pool, &handler, &[Incoming::new(env, 1)]).await;
    }
    let resolved = Payload::TicketResolved(TicketResolved {
        ticket: Some(created(
            done,
            "STM-0003",
            Priority::P1,
            Duration::minutes(10),
            TicketStatus::Resolved,
        )),
        analyst_id: "an.jones".into(),
        resolution_code: 0,
        first_contact_resolution: false,
    });
    let env = envelope("intake", TENANT, &done.to_string(), 2, resolved);
    apply(&pool, &handler, &[Incoming::new(env, 1)]).await;
    let escalated_before = escalations(&pool).await;

    assert_eq!(alert_due(&pool).await.unwrap(), 1);
    let alerts = breaches(&pool).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert!(a.internal);
    assert_eq!(a.ticket_id, late.to_string());
    assert_eq!(a.number, "STM-0001");
    assert_eq!(a.target, SlaTarget::Response as i32);
    assert_eq!(
        escalations(&pool).await,
        escalated_before,
        "an alert escalates nothing"
    );

    // Once only, also after the watcher runs again.
    assert_eq!(alert_due(&pool).await.unwrap(), 0);
    assert_eq!(breaches(&pool).await.len(), 1);
}
