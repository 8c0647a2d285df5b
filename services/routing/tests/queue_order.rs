//! The queue keeps its promise: a freed slot goes to the head of that
//! analyst's eligible queue (priority, then age), in the transaction that
//! frees it, also when several analysts free slots at the same moment.
//!
//! Real PostgreSQL; intake's events are handed to routing's handler the way
//! the consumer loop does (one transaction per delivery). No drainer runs,
//! so whatever is assigned was assigned by the freeing transaction itself.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use wardline_kit::consumer::Incoming;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{TicketCreated, TicketResolved, TicketSnapshot};
use wardline_proto::routing as pb;
use wardline_proto::routing::queue_service_server::QueueService;
use wardline_routing::cache::PolicyCache;
use wardline_routing::events::TicketEvents;
use wardline_routing::grpc::Api;
use wardline_testkit::TestDb;

use common::{TENANT, all_tenants, analyst, apply, req, routing};

/// A ticket as intake describes it.
#[derive(Clone)]
struct Ticket {
    id: Uuid,
    number: String,
    category: Category,
    priority: Priority,
    created_at: DateTime<Utc>,
    version: u64,
}

impl Ticket {
    fn snapshot(&self, status: TicketStatus) -> TicketSnapshot {
        TicketSnapshot {
            ticket_id: self.id.to_string(),
            number: self.number.clone(),
            facility_id: "main".into(),
            category: self.category as i32,
            priority: self.priority as i32,
            status: status as i32,
            caller_role: CallerRole::NonClinical as i32,
            created_at: Some(timestamp(self.created_at)),
            ..Default::default()
        }
    }

    /// Queue order: priority, then age.
    fn key(&self) -> (i32, DateTime<Utc>) {
        (self.priority as i32, self.created_at)
    }
}

struct Hospital {
    _db: TestDb,
    pool: PgPool,
    api: Api,
    routing: Arc<TicketEvents>,
    n: usize,
    epoch: DateTime<Utc>,
}

impl Hospital {
    async fn new(prefix: &str) -> Self {
        let (db, pool, api, routing) = routing(prefix).await;
        Self {
            api,
            routing,
            _db: db,
            pool,
            n: 0,
            epoch: Utc::now() - Duration::hours(1),
        }
    }

    async fn analyst(&self, id: &str, module: pb::SkillModule, capacity: u32) {
        analyst(&self.api, id, module, 3, capacity).await;
    }

    /// Intake's `ticket.created`, delivered; each ticket one minute younger
    /// than the one before.
    async fn call(&mut self, category: Category, priority: Priority) -> Ticket {
        self.n += 1;
        let t = Ticket {
            id: Uuid::now_v7(),
            number: format!("STM-{:04}", self.n),
            category,
            priority,
            created_at: self.epoch + Duration::minutes(self.n as i64),
            version: 1,
        };
        let payload = Payload::TicketCreated(TicketCreated {
            ticket: Some(t.snapshot(TicketStatus::New)),
            caller: None,
            category_classified: false,
        });
        deliver(&self.pool, &self.routing, &t, payload).await;
        t
    }

    /// Who holds the ticket now (`None` while it waits).
    async fn assignee(&self, t: &Ticket) -> Option<String> {
        let (state, assignee): (String, String) =
            sqlx::query_as("SELECT state, assignee FROM tickets WHERE ticket_id = $1")
                .bind(t.id)
                .fetch_one(&mut *all_tenants(&self.pool).await)
                .await
                .unwrap();
        (state != "waiting").then_some(assignee)
    }

    /// Ticket ids in GetQueue's order.
    async fn queue(&self) -> Vec<String> {
        self.api
            .get_queue(req(pb::GetQueueRequest::default()))
            .await
            .expect("queue")
            .into_inner()
            .tickets
            .into_iter()
            .map(|q| q.ticket_id)
            .collect()
    }
}

/// One delivery, as the consumer loop applies it: one transaction.
async fn deliver(pool: &PgPool, routing: &TicketEvents, t: &Ticket, payload: Payload) {
    let env = envelope("intake", TENANT, &t.id.to_string(), t.version, payload);
    apply(pool, routing, &[Incoming::new(env, 1)]).await;
}

/// Intake's `ticket.resolved` of `t` by `analyst`.
async fn resolve(pool: &PgPool, routing: &TicketEvents, t: &mut Ticket, analyst: &str) {
    t.version += 1;
    let payload = Payload::TicketResolved(TicketResolved {
        ticket: Some(t.snapshot(TicketStatus::Resolved)),
        analyst_id: analyst.into(),
        resolution_code: 0,
        first_contact_resolution: false,
    });
    deliver(pool, routing, t, payload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_slot_goes_to_the_p1_at_the_head_of_the_queue_never_to_the_p2() {
    let mut h = Hospital::new("rt_queue_head").await;
    h.analyst("an.solo", pb::SkillModule::Printing, 1).await;
    let mut busy = h.call(Category::Printing, Priority::P3).await;
    assert_eq!(h.assignee(&busy).await.as_deref(), Some("an.solo"));
    let mut p1 = h.call(Category::Printing, Priority::P1).await;
    let p2 = h.call(Category::Printing, Priority::P2).await;
    let mut younger_p1 = h.call(Category::Printing, Priority::P1).await;
    assert_eq!(
        h.queue().await,
        [&p1, &younger_p1, &p2].map(|t| t.id.to_string()),
        "GetQueue: the P1s by age, then the P2"
    );

    // Each resolution hands the slot over in its own transaction (no
    // drainer runs here): to the head of GetQueue, every time.
    let routing = h.routing.clone();
    resolve(&h.pool, &routing, &mut busy, "an.solo").await;
    assert_eq!(h.assignee(&p1).await.as_deref(), Some("an.solo"));
    assert_eq!(h.assignee(&p2).await, None, "the P2 waits behind a P1");
    assert_eq!(
        h.queue().await,
        [&younger_p1, &p2].map(|t| t.id.to_string())
    );

    resolve(&h.pool, &routing, &mut p1, "an.solo").await;
    assert_eq!(h.assignee(&younger_p1).await.as_deref(), Some("an.solo"));
    assert_eq!(h.assignee(&p2).await, None);

    resolve(&h.pool, &routing, &mut younger_p1, "an.solo").await;
    assert_eq!(h.assignee(&p2).await.as_deref(), Some("an.solo"));
    assert!(h.queue().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resolutions_serve_each_analysts_queue_in_order() {
    let mut h = Hospital::new("rt_queue_concurrent").await;
    // Two skill groups, so "that analyst's eligible queue" is not the whole
    // queue: printers take printing calls, network analysts network calls.
    let mut analysts = Vec::new();
    for i in 0..4 {
        analysts.push((format!("an.print{i}"), Category::Printing));
        h.analyst(&analysts[i * 2].0, pb::SkillModule::Printing, 1)
            .await;
        analysts.push((format!("an.net{i}"), Category::Network));
        h.analyst(&analysts[i * 2 + 1].0, pb::SkillModule::Network, 1)
            .await;
    }
    // Everyone busy with one call of their own kind.
    let mut held: Vec<(String, Ticket)> = Vec::new();
    for (id, category) in &analysts {
        let t = h.call(*category, Priority::P4).await;
        assert_eq!(h.assignee(&t).await.as_deref(), Some(id.as_str()));
        held.push((id.clone(), t));
    }
    // Forty waiting calls, priorities and kinds mixed, each younger than the last.
    let priorities = [
        Priority::P2,
        Priority::P1,
        Priority::P3,
        Priority::P1,
        Priority::P2,
    ];
    let mut waiting = Vec::new();
    for i in 0..40 {
        let category = if i % 3 == 0 {
            Category::Network
        } else {
            Category::Printing
        };
        let t = h.call(category, priorities[i % priorities.len()]).await;
        assert_eq!(h.assignee(&t).await, None);
        waiting.push(t);
    }

    // The periodic drain runs all along, as in the service: it must neither
    // hand a slot out of order nor deadlock with the hand-overs.
    let stop = tokio_util::sync::CancellationToken::new();
    let drainer = {
        let (pool, stop) = (h.pool.clone(), stop.clone());
        let cache = Arc::new(PolicyCache::new());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                wardline_routing::queue::drain(&pool, &cache)
                    .await
                    .expect("drain");
            }
        })
    };
    // Rounds: every analyst resolves what they hold at the same moment.
    for round in 0..5 {
        let expected: Vec<usize> = [Category::Printing, Category::Network]
            .iter()
            .map(|k| waiting.iter().filter(|w| w.category == *k).count().min(4))
            .collect();
        let tasks: Vec<_> = held
            .drain(..)
            .map(|(analyst, mut t)| {
                let (pool, routing) = (h.pool.clone(), h.routing.clone());
                tokio::spawn(async move {
                    resolve(&pool, &routing, &mut t, &analyst).await;
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("resolution applied");
        }
        // Who got what, and what still waits.
        let mut still = Vec::new();
        for t in waiting.drain(..) {
            match h.assignee(&t).await {
                Some(who) => held.push((who, t)),
                None => still.push(t),
            }
        }
        waiting = still;
        let got: Vec<usize> = [Category::Printing, Category::Network]
            .iter()
            .map(|k| held.iter().filter(|(_, t)| t.category == *k).count())
            .collect();
        assert_eq!(
            got, expected,
            "round {round}: every freed slot with an eligible waiting call was handed over"
        );
        for (who, got) in &held {
            let kind = analysts.iter().find(|(id, _)| id == who).unwrap().1;
            assert_eq!(got.category, kind, "round {round}: {who} is eligible");
            if let Some(ahead) = waiting
                .iter()
                .find(|w| w.category == kind && w.key() < got.key())
            {
                panic!(
                    "round {round}: {who} got {} ({:?}) while {} ({:?}) waits ahead of it in their queue",
                    got.number, got.priority, ahead.number, ahead.priority
                );
            }
        }
    }
    stop.cancel();
    drainer.await.expect("drainer stopped");
}
