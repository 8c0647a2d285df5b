//! The cache never hides a change: two replicas (two caches over one
//! database) decide, a change is made through the gRPC API, and the next
//! decision of each replica follows it.

use std::sync::Arc;

use chrono::{Datelike, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::Request;
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::consumer::Incoming;
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{Availability, TicketCreated, TicketSnapshot};
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_server::AnalystService;
use wardline_proto::routing::routing_rule_service_server::RoutingRuleService;
use wardline_proto::routing::sla_target_service_server::SlaTargetService;
use wardline_testkit::TestDb;

use super::PolicyCache;
use crate::events::TicketEvents;
use crate::grpc::Api;

const TENANT: &str = "stmarys";

struct Setup {
    _db: TestDb,
    /// The runtime role's pool (row-level security applies).
    pool: PgPool,
    /// The superuser's, for looking at what was stored.
    rows: PgPool,
    api: Api,
    /// Two replicas: each its own cache, one database.
    replicas: [Arc<TicketEvents>; 2],
    n: usize,
}

fn req<T>(msg: T, caller: &Caller) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(caller.clone());
    r
}

fn admin() -> Caller {
    Caller {
        subject: "boss".into(),
        tenant: Some(TENANT.into()),
        all_tenants: false,
        roles: vec![Role::TenantAdmin],
        email: None,
        phone: None,
    }
}

/// The vendor's all-tenants admin acting on [`TENANT`] (SLA targets are theirs).
fn vendor() -> Caller {
    Caller {
        subject: "vendor".into(),
        tenant: Some(TENANT.into()),
        all_tenants: true,
        roles: vec![Role::VendorAdmin],
        email: None,
        phone: None,
    }
}

fn analyst(id: &str, skills: &[(pb::SkillModule, u32)]) -> pb::Analyst {
    pb::Analyst {
        analyst_id: id.into(),
        name: id.into(),
        time_zone: "UTC".into(),
        coverage: vec![pb::TenantCoverage {
            tenant_id: TENANT.into(),
            facility_ids: vec![],
        }],
        skills: skills
            .iter()
            .map(|(m, l)| pb::Skill {
                module: *m as i32,
                level: *l,
            })
            .collect(),
        max_concurrent_tickets: 50,
        availability: Availability::Available as i32,
        ..Default::default()
    }
}

/// Intake's `ticket.created` of printing ticket number `n`.
fn created(n: usize) -> (Uuid, Incoming) {
    let id = Uuid::now_v7();
    let env = wardline_kit::events::envelope(
        "intake",
        TENANT,
        &id.to_string(),
        1,
        Payload::TicketCreated(TicketCreated {
            ticket: Some(TicketSnapshot {
                ticket_id: id.to_string(),
                number: format!("STM-{n:04}"),
                facility_id: "main".into(),
                category: Category::Printing as i32,
                priority: Priority::P3 as i32,
                status: TicketStatus::New as i32,
                caller_role: CallerRole::NonClinical as i32,
                created_at: Some(wardline_kit::events::timestamp(Utc::now())),
                ..Default::default()
            }),
            caller: None,
            category_classified: false,
        }),
    );
    (id, Incoming::new(env, 1))
}

/// Applies an event as the consumer loop does: in one transaction that
/// sees the event's tenant's rows.
async fn deliver(pool: &PgPool, replica: &TicketEvents, incoming: &Incoming) {
    let scope = wardline_kit::db::Scope::Tenant(&incoming.envelope.tenant_id);
    let mut tx = wardline_kit::db::begin(pool, scope).await.unwrap();
    wardline_kit::consumer::apply_with(replica, &mut tx, std::slice::from_ref(incoming))
        .await
        .expect("handled");
    tx.commit().await.unwrap();
}

impl Setup {
    async fn new(prefix: &str) -> Self {
        let db = TestDb::create(prefix).await;
        let pool = db.runtime_pool(&crate::MIGRATOR).await;
        let rows = db.pool().await;
        let replica = || {
            Arc::new(TicketEvents {
                cache: Arc::new(PolicyCache::new()),
            })
        };
        let s = Self {
            api: Api::new(pool.clone(), Arc::new(Notify::new())),
            _db: db,
            pool,
            rows,
            replicas: [replica(), replica()],
            n: 0,
        };
        // "hi" is the better printer; only "lo" knows networks.
        s.upsert(analyst("hi", &[(pb::SkillModule::Printing, 5)]))
            .await;
        s.upsert(analyst(
            "lo",
            &[
                (pb::SkillModule::Printing, 2),
                (pb::SkillModule::Network, 1),
            ],
        ))
        .await;
        s
    }

    async fn upsert(&self, a: pb::Analyst) {
        self.api
            .upsert_analyst(req(
                pb::UpsertAnalystRequest {
                    request_id: Uuid::now_v7().to_string(),
                    analyst: Some(a),
                    expected_version: 0,
                },
                &admin(),
            ))
            .await
            .expect("analyst upserted");
    }

    /// A new printing ticket delivered to `replica`; returns the ticket id.
    async fn ticket(&mut self, replica: usize) -> Uuid {
        self.n += 1;
        let (id, incoming) = created(self.n);
        deliver(&self.pool, &self.replicas[replica], &incoming).await;
        id
    }

    /// Who replica `replica` assigns the next ticket to ("" when queued).
    async fn next_assignee(&mut self, replica: usize) -> String {
        let id = self.ticket(replica).await;
        sqlx::query_scalar("SELECT assignee FROM tickets WHERE ticket_id = $1")
            .bind(id)
            .fetch_one(&self.rows)
            .await
            .unwrap()
    }

    /// Both replicas' next decisions.
    async fn both(&mut self) -> [String; 2] {
        [self.next_assignee(0).await, self.next_assignee(1).await]
    }

    async fn set_printing_rule(&self, module: pb::SkillModule) {
        self.api
            .set_category_rule(req(
                pb::SetCategoryRuleRequest {
                    request_id: Uuid::now_v7().to_string(),
                    rule: Some(pb::CategoryRule {
                        category: Category::Printing as i32,
                        required_skills: vec![pb::SkillRequirement {
                            module: module as i32,
                            min_level: 1,
                        }],
                        credential_policy: pb::CredentialPolicy::None as i32,
                        ..Default::default()
                    }),
                    expected_version: 0,
                },
                &admin(),
            ))
            .await
            .expect("rule set");
    }
}

#[tokio::test]
async fn a_rule_changed_through_the_api_is_followed_by_the_next_ticket_on_every_replica() {
    let mut s = Setup::new("routing_cache_rules").await;
    // Both caches warm, both on the default rule: the better printer.
    assert_eq!(s.both().await, ["hi", "hi"]);
    s.set_printing_rule(pb::SkillModule::Network).await;
    assert_eq!(s.both().await, ["lo", "lo"]);
    s.set_printing_rule(pb::SkillModule::Printing).await;
    assert_eq!(s.both().await, ["hi", "hi"]);
    s.set_printing_rule(pb::SkillModule::Network).await;
    assert_eq!(s.both().await, ["lo", "lo"]);
    s.api
        .reset_category_rule(req(
            pb::ResetCategoryRuleRequest {
                request_id: "reset".into(),
                category: Category::Printing as i32,
            },
            &admin(),
        ))
        .await
        .unwrap();
    assert_eq!(s.both().await, ["hi", "hi"]);
}

#[tokio::test]
async fn directory_changes_through_the_api_are_seen_by_the_next_decision() {
    let mut s = Setup::new("routing_cache_directory").await;
    assert_eq!(s.both().await, ["hi", "hi"]);

    // Off shift: a shift on another day only.
    let other_day = Utc::now().weekday().number_from_monday() % 7 + 1; // tomorrow
    let shifts = |days: &[u32]| pb::SetShiftsRequest {
        request_id: Uuid::now_v7().to_string(),
        analyst_id: "hi".into(),
        shifts: days
            .iter()
            .map(|d| pb::Shift {
                day_of_week: *d as i32,
                start: "00:00".into(),
                end: "23:59".into(),
            })
            .collect(),
        expected_version: 0,
    };
    s.api
        .set_shifts(req(shifts(&[other_day]), &admin()))
        .await
        .unwrap();
    assert_eq!(s.both().await, ["lo", "lo"]);
    s.api.set_shifts(req(shifts(&[]), &admin())).await.unwrap();
    assert_eq!(s.both().await, ["hi", "hi"]);

    // Away (availability is read fresh by every decision, never cached).
    let availability = |a: Availability| pb::SetAvailabilityRequest {
        request_id: Uuid::now_v7().to_string(),
        analyst_id: "hi".into(),
        availability: a as i32,
        expected_version: 0,
    };
    s.api
        .set_availability(req(availability(Availability::Away), &admin()))
        .await
        .unwrap();
    assert_eq!(s.both().await, ["lo", "lo"]);
    s.api
        .set_availability(req(availability(Availability::Available), &admin()))
        .await
        .unwrap();
    assert_eq!(s.both().await, ["hi", "hi"]);

    // Skills replaced by an upsert: "hi" forgets printing.
    s.upsert(analyst("hi", &[(pb::SkillModule::Network, 5)]))
        .await;
    assert_eq!(s.both().await, ["lo", "lo"]);

    // Capacity is the engine's atomic check, whatever a cache held: "lo"
    // (the only printer left) can take one more ticket, then nobody can.
    let mut lo = analyst(
        "lo",
        &[
            (pb::SkillModule::Printing, 2),
            (pb::SkillModule::Network, 1),
        ],
    );
    let held: i32 = sqlx::query_scalar("SELECT current_load FROM analysts WHERE analyst_id = 'lo'")
        .fetch_one(&s.rows)
        .await
        .unwrap();
    lo.max_concurrent_tickets = held as u32 + 1;
    s.upsert(lo).await;
    assert_eq!(s.both().await, ["lo", ""]);
}

#[tokio::test]
async fn sla_targets_changed_through_the_api_set_the_next_tickets_deadlines() {
    let mut s = Setup::new("routing_cache_targets").await;
    let response_minutes = |s: &Setup, id: Uuid| {
        let pool = s.rows.clone();
        async move {
            let secs: f64 = sqlx::query_scalar(
                "SELECT EXTRACT(EPOCH FROM response_due - created_at)::float8 FROM tickets WHERE ticket_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            (secs / 60.0).round() as u32
        }
    };
    for replica in [0, 1] {
        let id = s.ticket(replica).await;
        assert_eq!(response_minutes(&s, id).await, 240, "shipped P3 target");
    }
    let mut mine = s
        .api
        .get_sla_targets(req(pb::GetSlaTargetsRequest {}, &admin()))
        .await
        .unwrap()
        .into_inner();
    for t in &mut mine.targets {
        if t.priority == Priority::P3 as i32 {
            t.response_minutes = 45;
        }
    }
    s.api
        .set_sla_targets(req(
            pb::SetSlaTargetsRequest {
                request_id: "sla".into(),
                targets: Some(mine),
                expected_version: 0,
            },
            &vendor(),
        ))
        .await
        .unwrap();
    for replica in [0, 1] {
        let id = s.ticket(replica).await;
        assert_eq!(response_minutes(&s, id).await, 45, "replica {replica}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_on_two_replicas_fill_capacity_exactly() {
    let s = Setup::new("routing_cache_capacity").await;
    for i in 0..4 {
        let mut a = analyst(
            &format!("an.{i}"),
            &[(pb::SkillModule::Printing, 1 + i % 3)],
        );
        a.max_concurrent_tickets = 2;
        s.upsert(a).await;
    }
    for id in ["hi", "lo"] {
        s.api
            .set_availability(req(
                pb::SetAvailabilityRequest {
                    request_id: format!("off-{id}"),
                    analyst_id: id.into(),
                    availability: Availability::Offline as i32,
                    expected_version: 0,
                },
                &admin(),
            ))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..24 {
        let (pool, replica) = (s.pool.clone(), s.replicas[n % 2].clone());
        tasks.spawn(async move {
            let (_, incoming) = created(n);
            deliver(&pool, &replica, &incoming).await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let loads: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT a.analyst_id, a.current_load,
                (SELECT count(*) FROM assignments x WHERE x.analyst_id = a.analyst_id AND x.state IN ('pending-ack', 'acknowledged'))
           FROM analysts a WHERE a.analyst_id LIKE 'an.%' ORDER BY 1",
    )
    .fetch_all(&s.rows)
    .await
    .unwrap();
    for (id, load, live) in &loads {
        assert_eq!((*load, *live), (2, 2), "{id}: load and live assignments");
    }
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM tickets GROUP BY 1 ORDER BY 1")
            .fetch_all(&s.rows)
            .await
            .unwrap();
    assert_eq!(
        states,
        [("assigned".to_owned(), 8), ("waiting".to_owned(), 16)],
        "8 assigned, 16 queued"
    );
}
