//! The consumer loop against a real PostgreSQL and a private nats-server:
//! every delivery ends applied or dead-lettered, whatever failed, and an
//! outage of PostgreSQL drops nothing.
//!
//! The handler is scripted by the event's aggregate id: `ok` applies,
//! `db-error` fails with a database error that is not a lost connection,
//! `retry` asks to retry, `poison` refuses, `panic` panics, `hang` never
//! finishes, `flaky` fails twice and then applies.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use prost::Message as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use wardline_kit::consumer::{self, Batch, ConsumerSpec, EventHandler, HandleError, Incoming};
use wardline_proto::events::EventEnvelope;
use wardline_proto::events::event_envelope::Payload;
use wardline_testkit::{TestDb, TestNats, TestPgCluster, eventually};

struct Scripted;

impl EventHandler for Scripted {
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        sqlx::query("INSERT INTO batches (size) VALUES ($1)")
            .bind(events.len() as i32)
            .execute(batch.conn())
            .await?;
        for event in events {
            script(batch.conn(), event).await?;
        }
        Ok(())
    }
}

async fn script(conn: &mut PgConnection, event: &Incoming) -> Result<(), HandleError> {
    {
        match event.envelope.aggregate_id.as_str() {
            "ok" => apply(conn, event).await?,
            "db-error" => {
                // A missing relation: SQLSTATE 42P01, not a lost connection
                // and not about the event's data (a migration may be late).
                sqlx::query("SELECT * FROM not_migrated_yet")
                    .execute(conn)
                    .await?;
            }
            "bad-data" => {
                // Division by zero: SQLSTATE 22012, about the data, the
                // same on every delivery.
                sqlx::query("SELECT 1 / 0").execute(conn).await?;
            }
            "retry" => return Err(HandleError::Retry("an earlier event is missing".into())),
            "poison" => return Err(HandleError::Poison("cannot ever apply".into())),
            "panic" => panic!("scripted panic"),
            "hang" => std::future::pending::<()>().await,
            "flaky" if event.delivered < 3 => {
                return Err(HandleError::Retry("not yet".into()));
            }
            "flaky" => apply(conn, event).await?,
            "ordered" => {
                sqlx::query("INSERT INTO arrivals (version) VALUES ($1)")
                    .bind(event.envelope.aggregate_version as i64)
                    .execute(&mut *conn)
                    .await?;
                apply(conn, event).await?;
            }
            other => return Err(HandleError::Poison(format!("unscripted {other}"))),
        }
        Ok(())
    }
}

async fn apply(conn: &mut PgConnection, event: &Incoming) -> Result<(), HandleError> {
    sqlx::query("INSERT INTO applied (event_id) VALUES ($1::uuid)")
        .bind(&event.envelope.event_id)
        .execute(conn)
        .await?;
    Ok(())
}

const DURABLE: &str = "kit-test";
const FILTER: &str = "wardline.events.*.ticket.created";

struct Harness {
    _nats: TestNats,
    pool: PgPool,
    js: jetstream::Context,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn migrated_pool(url: &str) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(1))
        .connect(url)
        .await
        .expect("test database");
    wardline_kit::db::migrate(&pool, &sqlx::migrate::Migrator::with_migrations(vec![]))
        .await
        .expect("kit migrations");
    sqlx::raw_sql(
        "CREATE TABLE applied (event_id UUID PRIMARY KEY);
         CREATE TABLE batches (size INT NOT NULL);
         CREATE TABLE arrivals (n BIGINT GENERATED ALWAYS AS IDENTITY, version BIGINT NOT NULL);",
    )
    .execute(&pool)
    .await
    .expect("test tables");
    pool
}

fn spec(tune: impl FnOnce(&mut ConsumerSpec)) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new("kittest", DURABLE, vec![FILTER.to_owned()]);
    spec.max_failures = 3;
    spec.ack_wait = Duration::from_secs(2);
    spec.workers = 2;
    tune(&mut spec);
    spec
}

async fn start(pool: PgPool, spec: ConsumerSpec) -> Harness {
    let mut h = prepare(pool).await;
    h.run(spec).await;
    h
}

/// NATS with the streams, no consumer yet.
async fn prepare(pool: PgPool) -> Harness {
    // The server runs the shipped permissions and TLS and has provisioned
    // the streams; the test's consumer (durable `kit-test`, no service's)
    // runs as the harness identity.
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    Harness {
        _nats: nats,
        pool,
        js,
        stop: CancellationToken::new(),
        task: None,
    }
}

fn event(tenant: &str, script: &str) -> EventEnvelope {
    wardline_kit::events::envelope(
        "kittest",
        tenant,
        script,
        1,
        Payload::TicketCreated(Default::default()),
    )
}

impl Harness {
    /// Starts the consumer loop and waits for its durable.
    async fn run(&mut self, spec: ConsumerSpec) {
        self.task = Some(tokio::spawn({
            let (js, pool, stop) = (self.js.clone(), self.pool.clone(), self.stop.clone());
            async move {
                consumer::run(js, pool, spec, Arc::new(Scripted), stop)
                    .await
                    .expect("consumer runs");
            }
        }));
        eventually(10, "the durable consumer", || async {
            let stream = self
                .js
                .get_stream(wardline_kit::nats::EVENTS_STREAM)
                .await
                .ok()?;
            stream
                .get_consumer::<jetstream::consumer::pull::Config>(DURABLE)
                .await
                .ok()
        })
        .await;
    }

    async fn publish_on(&self, subject: String, env: &EventEnvelope, msg_id: &str) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(subject, headers, env.encode_to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("PubAck");
    }

    async fn publish(&self, env: &EventEnvelope) {
        let subject = wardline_kit::events::subject(env).expect("a subject");
        self.publish_on(subject, env, &env.event_id.clone()).await;
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    async fn dead_letter_reason(&self, event_id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT reason FROM dead_letters WHERE event_id = $1::uuid")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .expect("dead letters")
    }

    async fn wait_dead_letter(&self, event_id: &str, secs: u64) -> String {
        eventually(secs, "a dead letter", || self.dead_letter_reason(event_id)).await
    }

    /// Waits until the durable has nothing pending and nothing unacknowledged.
    async fn wait_settled(&self) {
        eventually(20, "the consumer to settle", || async {
            let info = self.consumer_info().await;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        })
        .await;
    }

    async fn consumer_info(&self) -> jetstream::consumer::Info {
        let stream = self
            .js
            .get_stream(wardline_kit::nats::EVENTS_STREAM)
            .await
            .expect("stream");
        let mut consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer(DURABLE).await.expect("durable");
        consumer.info().await.expect("consumer info").clone()
    }

    /// The dead-letter stream's copy for `tenant`: its reason header.
    async fn dead_letter_on_stream(&self, tenant: &str) -> Option<String> {
        let stream = self
            .js
            .get_stream(wardline_kit::nats::DEADLETTER_STREAM)
            .await
            .ok()?;
        let msg = stream
            .get_last_raw_message_by_subject(&wardline_kit::nats::deadletter_subject(
                "kittest", tenant,
            ))
            .await
            .ok()?;
        msg.headers
            .get("Wardline-Reason")
            .map(|v| v.as_str().to_owned())
    }
}

#[tokio::test]
async fn a_database_error_that_is_not_a_lost_connection_ends_as_a_dead_letter() {
    let db = TestDb::create("kit_dberr").await;
    let h = start(migrated_pool(&db.superuser_url()).await, spec(|_| {})).await;
    let bad = event("stmarys", "db-error");
    h.publish(&bad).await;

    let reason = h.wait_dead_letter(&bad.event_id, 30).await;
    assert!(
        reason.starts_with("gave up after 3 failures") && reason.contains("not_migrated_yet"),
        "{reason}"
    );
    h.wait_settled().await;
    let on_stream = h.dead_letter_on_stream("stmarys").await;
    assert_eq!(on_stream.as_deref(), Some(reason.as_str()));
    assert_eq!(h.count("SELECT count(*) FROM consumer_failures").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM inbox").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM applied").await, 0);
}

#[tokio::test]
async fn data_the_database_refuses_is_dead_lettered_at_once_naming_only_the_sqlstate() {
    let db = TestDb::create("kit_baddata").await;
    let h = start(migrated_pool(&db.superuser_url()).await, spec(|_| {})).await;
    let bad = event("stmarys", "bad-data");
    h.publish(&bad).await;

    let reason = h.wait_dead_letter(&bad.event_id, 30).await;
    // Not retried against the budget, and PostgreSQL's message (which may
    // quote the value) is not copied.
    assert_eq!(
        reason, "the database refuses the event's data (SQLSTATE 22012)",
        "{reason}"
    );
    h.wait_settled().await;
    assert_eq!(h.count("SELECT count(*) FROM consumer_failures").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM applied").await, 0);
}

#[tokio::test]
async fn an_event_that_fails_then_applies_is_applied_once_and_its_count_cleared() {
    let db = TestDb::create("kit_flaky").await;
    let h = start(migrated_pool(&db.superuser_url()).await, spec(|_| {})).await;
    let flaky = event("stmarys", "flaky");
    h.publish(&flaky).await;
    eventually(20, "the flaky event applied", || async {
        (h.count("SELECT count(*) FROM applied").await == 1).then_some(())
    })
    .await;
    h.wait_settled().await;
    assert_eq!(h.count("SELECT count(*) FROM consumer_failures").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM dead_letters").await, 0);
}

#[tokio::test]
async fn poison_a_broken_envelope_and_a_forged_tenant_are_dead_lettered_at_once() {
    let db = TestDb::create("kit_poison").await;
    let h = start(migrated_pool(&db.superuser_url()).await, spec(|_| {})).await;

    let poison = event("stmarys", "poison");
    h.publish(&poison).await;
    // An envelope claiming lakeside on stmarys's subject.
    let forged = event("lakeside", "ok");
    h.publish_on(
        "wardline.events.stmarys.ticket.created".into(),
        &forged,
        &forged.event_id,
    )
    .await;
    let garbage_id = uuid::Uuid::now_v7().to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", garbage_id.as_str());
    h.js.publish_with_headers(
        "wardline.events.stmarys.ticket.created",
        headers,
        bytes::Bytes::from_static(b"\xff\x01not protobuf"),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let reason = h.wait_dead_letter(&poison.event_id, 10).await;
    assert_eq!(reason, "cannot ever apply");
    let reason = h.wait_dead_letter(&forged.event_id, 10).await;
    assert!(reason.starts_with("tenant mismatch"), "{reason}");
    let reason = h.wait_dead_letter(&garbage_id, 10).await;
    assert!(reason.starts_with("undecodable envelope"), "{reason}");
    h.wait_settled().await;
    assert_eq!(h.count("SELECT count(*) FROM applied").await, 0);
    let tenants: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM dead_letters ORDER BY 1")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(tenants, vec!["stmarys"], "the subject's tenant is recorded");
}

#[tokio::test]
async fn a_panicking_handler_is_counted_and_dead_lettered_and_the_worker_lives_on() {
    let db = TestDb::create("kit_panic").await;
    let h = start(
        migrated_pool(&db.superuser_url()).await,
        spec(|s| {
            s.workers = 1;
            s.max_failures = 2;
        }),
    )
    .await;
    let panics = event("stmarys", "panic");
    h.publish(&panics).await;
    let reason = h.wait_dead_letter(&panics.event_id, 20).await;
    assert!(reason.contains("the handler panicked"), "{reason}");

    let ok = event("stmarys", "ok");
    h.publish(&ok).await;
    eventually(10, "the next event applied by the same worker", || async {
        (h.count("SELECT count(*) FROM applied").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_or_republished_event_is_applied_once() {
    let db = TestDb::create("kit_dup").await;
    let h = start(migrated_pool(&db.superuser_url()).await, spec(|_| {})).await;
    let ok = event("stmarys", "ok");
    h.publish(&ok).await;
    // Past the stream's duplicate window: another message id, same event.
    let subject = wardline_kit::events::subject(&ok).unwrap();
    h.publish_on(subject, &ok, "another-message-id").await;
    h.wait_settled().await;
    assert_eq!(h.count("SELECT count(*) FROM applied").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM inbox").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM dead_letters").await, 0);
}

#[tokio::test]
async fn postgres_down_for_longer_than_the_budget_loses_nothing() {
    let cluster = TestPgCluster::start();
    let db = cluster.create_db("kit_outage").await;
    let h = start(
        migrated_pool(&db.superuser_url()).await,
        spec(|s| {
            s.max_failures = 2;
            s.ack_wait = Duration::from_secs(1);
        }),
    )
    .await;
    let before = event("stmarys", "ok");
    h.publish(&before).await;
    eventually(10, "the first event applied", || async {
        (h.count("SELECT count(*) FROM applied").await == 1).then_some(())
    })
    .await;

    cluster.stop_immediate();
    let during: Vec<EventEnvelope> = (0..20).map(|_| event("stmarys", "ok")).collect();
    for e in &during {
        h.publish(e).await;
    }
    // Far longer than the budget's retry delays (250 + 500 ms) and several
    // ack waits: every event is delivered, fails to reach PostgreSQL, and
    // comes back again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.start_again();

    eventually(60, "every event of the outage applied", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
            .fetch_one(&h.pool)
            .await
            .ok()?;
        (n == 21).then_some(())
    })
    .await;
    h.wait_settled().await;
    assert_eq!(h.count("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM consumer_failures").await, 0);
    let redelivered = h.consumer_info().await.num_redelivered;
    eprintln!("redeliveries during the outage: {redelivered}");
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_leaves_the_event_in_jetstream() {
    let db = TestDb::create("kit_dlfail").await;
    let pool = migrated_pool(&db.superuser_url()).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'dead letters refused by the test'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON dead_letters
           FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let h = start(pool, spec(|_| {})).await;
    let poison = event("stmarys", "poison");
    h.publish(&poison).await;

    eventually(20, "the refused dead letter to be redelivered", || async {
        (h.consumer_info().await.num_redelivered >= 1).then_some(())
    })
    .await;
    assert_eq!(h.dead_letter_reason(&poison.event_id).await, None);
    let info = h.consumer_info().await;
    assert_eq!(
        info.num_ack_pending + info.num_pending as usize,
        1,
        "the event is still held by JetStream"
    );

    sqlx::raw_sql("DROP TRIGGER refuse ON dead_letters")
        .execute(&h.pool)
        .await
        .unwrap();
    let reason = h.wait_dead_letter(&poison.event_id, 30).await;
    assert_eq!(reason, "cannot ever apply");
    h.wait_settled().await;
}

#[tokio::test]
async fn an_event_jetstream_gives_up_on_is_dead_lettered_from_the_advisory() {
    let db = TestDb::create("kit_advisory").await;
    // A budget JetStream's ceiling undercuts: only the advisory can end it.
    let h = start(
        migrated_pool(&db.superuser_url()).await,
        spec(|s| {
            s.max_failures = 100;
            s.max_deliver = 2;
            s.ack_wait = Duration::from_secs(1);
        }),
    )
    .await;
    let hangs = event("stmarys", "hang");
    h.publish(&hangs).await;
    let reason = h.wait_dead_letter(&hangs.event_id, 30).await;
    assert!(
        reason.starts_with("JetStream stopped redelivering after 2 deliveries"),
        "{reason}"
    );
    assert_eq!(h.count("SELECT count(*) FROM applied").await, 0);
}

#[tokio::test]
async fn what_is_in_hand_is_applied_in_one_transaction_and_a_poison_event_spoils_no_neighbour() {
    let db = TestDb::create("kit_batch").await;
    let mut h = prepare(migrated_pool(&db.superuser_url()).await).await;
    // Everything waits in the stream before the consumer starts, so the
    // first pulls bring many at once.
    let mut oks = Vec::new();
    for i in 0..40 {
        if i == 17 {
            h.publish(&event("stmarys", "poison")).await;
        }
        let e = event(if i % 2 == 0 { "stmarys" } else { "lakeside" }, "ok");
        h.publish(&e).await;
        oks.push(e);
    }
    h.run(spec(|s| {
        s.workers = 1;
        s.batch = 64;
    }))
    .await;
    eventually(20, "every good event applied", || async {
        (h.count("SELECT count(*) FROM applied").await == 40).then_some(())
    })
    .await;
    h.wait_settled().await;
    assert_eq!(h.count("SELECT count(*) FROM dead_letters").await, 1);
    let largest = h.count("SELECT max(size)::bigint FROM batches").await;
    assert!(
        largest > 1,
        "events in hand were applied together ({largest})"
    );
    assert_eq!(h.count("SELECT count(*) FROM inbox").await, 40);
}

#[tokio::test]
async fn one_aggregates_events_are_applied_in_stream_order_across_workers() {
    let db = TestDb::create("kit_order").await;
    let mut h = prepare(migrated_pool(&db.superuser_url()).await).await;
    for version in 1..=60u64 {
        let mut e = event("stmarys", "ordered");
        e.aggregate_version = version;
        h.publish(&e).await;
        // Other aggregates interleaved, for the other workers.
        h.publish(&event("stmarys", "ok")).await;
    }
    h.run(spec(|s| {
        s.workers = 4;
        s.batch = 8;
    }))
    .await;
    eventually(30, "every event applied", || async {
        (h.count("SELECT count(*) FROM applied").await == 120).then_some(())
    })
    .await;
    let order: Vec<i64> = sqlx::query_scalar("SELECT version FROM arrivals ORDER BY n")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(order, (1..=60).collect::<Vec<i64>>());
}
