//! Routing killed with SIGKILL mid-flow and restarted: no timer is lost and
//! nothing is assigned twice.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use common::*;
use wardline_proto::common::{CallerRole, Category, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::routing::SkillModule;
use wardline_testkit::{ServiceProcess, TestDb, TestNats, events, free_port};

fn start_routing_process(
    db: &TestDb,
    nats: &TestNats,
    grpc: SocketAddr,
    admin: SocketAddr,
    log: &Path,
) -> ServiceProcess {
    spawn_process(
        "wardline-routing",
        routing_env(db, nats),
        &[],
        admin,
        grpc,
        log,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flow_loses_no_timer_and_assigns_nothing_twice() {
    let nats = TestNats::start();
    let intake_db = TestDb::create("intake").await;
    let routing_db = TestDb::create("routing").await;
    let intake = start_intake(&intake_db, &nats).await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("routing.log");
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut routing = start_routing_process(&routing_db, &nats, grpc, admin, &log);

    let s = Stack {
        nats,
        intake_db,
        routing_db,
        intake,
        routing: None,
        routing_grpc: grpc,
    };
    s.create_tenant("stmarys", "STM").await;
    for i in 0..3 {
        let mut a = analyst(&format!("an.{i}"), "stmarys", SkillModule::Printing, 3 - i);
        a.max_concurrent_tickets = 3;
        s.upsert(a).await;
    }
    let mut tickets = s.tickets(&nurse_token("stmarys"));
    let first = tickets
        .create_ticket(ticket_request(
            "first",
            CallerRole::NonClinical,
            Category::Printing,
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    let assigned = s
        .ticket_until("stmarys", &first.ticket_id, "first assigned", |t| {
            t.status() == TicketStatus::Assigned
        })
        .await;
    assert_eq!(assigned.assignee_analyst_id, "an.0");

    // A burst of tickets, and routing dies in the middle of it.
    let burst = tickets.clone();
    let filing = tokio::spawn(async move {
        let mut c = burst;
        let mut ids = Vec::new();
        for i in 0..6 {
            let t = c
                .create_ticket(ticket_request(
                    &format!("burst-{i}"),
                    CallerRole::NonClinical,
                    Category::Printing,
                    false,
                ))
                .await
                .unwrap();
            ids.push(t.into_inner().ticket_id);
        }
        ids
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    routing.kill9();
    let mut ids = filing.await.unwrap();
    // While it is down, the first assignment's acknowledgement deadline passes.
    s.expire_timer(&first.ticket_id, "ack").await;

    let mut routing = start_routing_process(&s.routing_db, &s.nats, grpc, admin, &log);
    // The timer fired after the restart: the first ticket moved on.
    s.ticket_until(
        "stmarys",
        &first.ticket_id,
        "re-routed after restart",
        |t| t.assignee_analyst_id != "an.0" && !t.assignee_analyst_id.is_empty(),
    )
    .await;
    ids.push(first.ticket_id.clone());
    let pool = s.routing_db.pool().await;
    wardline_testkit::eventually(20, "every ticket routed", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tickets WHERE state IN ('waiting', 'assigned')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 7).then_some(())
    })
    .await;

    // Capacity held, one live assignment per ticket, and every TicketAssigned
    // event matches one assignment row (nothing assigned twice).
    let over: i64 =
        sqlx::query_scalar("SELECT count(*) FROM analysts WHERE current_load > max_concurrent")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(over, 0);
    let live: Vec<(String, i64)> = sqlx::query_as(
        "SELECT ticket_id::text, count(*) FROM assignments WHERE state IN ('pending-ack', 'acknowledged') GROUP BY ticket_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(live.iter().all(|(_, n)| *n == 1));
    let load_sum: i64 = sqlx::query_scalar("SELECT sum(current_load)::bigint FROM analysts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(load_sum, live.len() as i64, "loads match live assignments");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT ticket_id::text, count(*) FROM assignments GROUP BY ticket_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let rows: HashMap<String, i64> = rows.into_iter().collect();
    let seen = events::wait_for(
        &s.nats,
        "wardline.events.stmarys.ticket.assigned",
        rows.values().sum::<i64>() as usize,
        15,
    )
    .await;
    let mut per_ticket: HashMap<String, i64> = HashMap::new();
    for e in &seen {
        let Some(Payload::TicketAssigned(a)) = &e.envelope.payload else {
            panic!("not an assignment")
        };
        *per_ticket.entry(a.ticket_id.clone()).or_default() += 1;
    }
    assert_eq!(
        per_ticket,
        rows,
        "each assignment published exactly once; log:\n{}",
        routing.log_tail()
    );
    assert_eq!(
        routing.terminate(20),
        Some(0),
        "graceful stop; log:\n{}",
        routing.log_tail()
    );
}
