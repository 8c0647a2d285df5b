//! What this machine's PostgreSQL and JetStream can do at most, measured in
//! the same run, so the pipeline's throughput can be read as a fraction of
//! the floor it stands on.
//!
//! - PostgreSQL: a few connections each running single-statement,
//!   multi-row inserts of ticket-sized rows plus one outbox-sized row per
//!   ticket (the shape of intake's group commit), into regular tables of a
//!   scratch schema, so WAL and fsync at commit are as real as the
//!   services'. The schema is dropped afterwards, also on failure.
//! - JetStream: pipelined publishes of ~500-byte messages (many PubAcks
//!   outstanding, each with a `Nats-Msg-Id` like the relays send) to a
//!   scratch file-backed stream on its own subjects, deleted afterwards.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use async_nats::jetstream::{self, stream};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// Connections of the PostgreSQL probe.
pub const PG_CONNECTIONS: usize = 4;
/// Tickets (and outbox rows) per INSERT statement.
pub const PG_BATCH: usize = 100;
/// Size of the probe's JetStream messages (a ticket.created envelope is ~400-600 bytes).
pub const JS_MESSAGE_BYTES: usize = 500;
/// PubAcks outstanding at once.
pub const JS_WINDOW: usize = 2048;

/// A measured ceiling.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Rows or messages per second, when measured.
    pub per_second: Option<f64>,
    /// How it was measured, or why it could not be.
    pub note: String,
}

/// Ticket rows (each with its outbox row) per second PostgreSQL commits at
/// `url` over `duration`.
pub async fn postgres(url: &str, duration: Duration) -> Limit {
    match postgres_probe(url, duration).await {
        Ok(rate) => Limit {
            per_second: Some(rate),
            note: format!(
                "{PG_CONNECTIONS} connections, {PG_BATCH} ticket rows + {PG_BATCH} outbox rows per INSERT statement, regular tables"
            ),
        },
        Err(e) => Limit {
            per_second: None,
            note: format!("not measured: {}", wardctl::error_text(&e)),
        },
    }
}

/// True when the PostgreSQL at `url` answers and has autovacuum off: then
/// the rows the services update (outbox, deliveries, tickets, timers) are
/// never cleaned up, scans slow down run after run, and the numbers are not
/// what a deployment would see. False when it cannot tell.
pub async fn autovacuum_off(url: &str) -> bool {
    let check = async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let on: String = sqlx::query_scalar("SHOW autovacuum")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(on == "off")
    };
    tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false)
}

async fn postgres_probe(url: &str, duration: Duration) -> Result<f64> {
    let pool = PgPoolOptions::new()
        .max_connections(PG_CONNECTIONS as u32)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    let schema = format!("wardline_load_probe_{}", Uuid::new_v4().simple());
    let setup = format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.tickets (
            ticket_id UUID PRIMARY KEY, tenant_id TEXT NOT NULL, number TEXT NOT NULL,
            facility_id TEXT NOT NULL, caller_id TEXT NOT NULL, caller_name TEXT NOT NULL,
            caller_role SMALLINT NOT NULL, channel SMALLINT NOT NULL, application TEXT NOT NULL,
            category SMALLINT NOT NULL, urgency SMALLINT NOT NULL, impact SMALLINT NOT NULL,
            priority SMALLINT NOT NULL, status SMALLINT NOT NULL, description TEXT NOT NULL,
            version BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE INDEX ON {schema}.tickets (tenant_id, created_at DESC);
         CREATE TABLE {schema}.outbox (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id UUID NOT NULL UNIQUE,
            subject TEXT NOT NULL, payload BYTEA NOT NULL, traceparent TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(), sent_at TIMESTAMPTZ);"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&pool)
        .await
        .context("creating the probe's scratch schema")?;
    let result = postgres_load(&pool, &schema, duration).await;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await;
    pool.close().await;
    let rate = result?;
    dropped.with_context(|| format!("dropping the probe's schema {schema}"))?;
    Ok(rate)
}

async fn postgres_load(pool: &sqlx::PgPool, schema: &str, duration: Duration) -> Result<f64> {
    let sql = format!(
        "WITH t AS (
           INSERT INTO {schema}.tickets (ticket_id, tenant_id, number, facility_id, caller_id,
             caller_name, caller_role, channel, application, category, urgency, impact, priority,
             status, description, version)
           SELECT id, 'probe', 'PRB-' || lpad(n::text, 6, '0'), 'main-campus', 'caller-0001',
             'Probe Caller', 5, 4, 'ehr', 10, 3, 4, 4, 1, $2, 1
             FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)
           RETURNING ticket_id)
         INSERT INTO {schema}.outbox (event_id, subject, payload, traceparent)
         SELECT gen_random_uuid(), 'wardline.events.probe.ticket.created', $3,
           '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' FROM t"
    );
    let description = "The wristband printer at the registration desk jams after every second \
        band; both clerks share it and are writing temporary bands by hand while patients wait \
        at the desk. Restarted it twice, cleared the path, no change."
        .to_owned();
    let payload = vec![0x5au8; 450];
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..PG_CONNECTIONS {
        let (pool, sql, description, payload) = (
            pool.clone(),
            sql.clone(),
            description.clone(),
            payload.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rows = 0u64;
            while Instant::now() < deadline {
                let ids: Vec<Uuid> = (0..PG_BATCH).map(|_| Uuid::now_v7()).collect();
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(ids)
                    .bind(&description)
                    .bind(&payload)
                    .execute(&pool)
                    .await?;
                rows += PG_BATCH as u64;
            }
            Ok::<_, sqlx::Error>(rows)
        }));
    }
    let mut rows = 0;
    for w in workers {
        rows += w.await.context("probe worker")??;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second JetStream acknowledges at `nats_url` over `duration`.
pub async fn jetstream(nats_url: &str, duration: Duration) -> Limit {
    match jetstream_probe(nats_url, duration).await {
        Ok(rate) => Limit {
            per_second: Some(rate),
            note: format!(
                "{JS_MESSAGE_BYTES}-byte messages, up to {JS_WINDOW} PubAcks outstanding, file storage, 1 replica"
            ),
        },
        Err(e) => Limit {
            per_second: None,
            note: format!("not measured: {}", wardctl::error_text(&e)),
        },
    }
}

async fn jetstream_probe(nats_url: &str, duration: Duration) -> Result<f64> {
    let client = wardctl::grpc::nats_options(nats_url, "wardline-load-probe")?
        .connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {nats_url}"))?;
    let js = jetstream::new(client.clone());
    let id = Uuid::new_v4().simple().to_string();
    let name = format!("WARDLINE_LOAD_PROBE_{id}");
    let subject = format!("wardline_load.probe.{id}.msg");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("wardline_load.probe.{id}.>")],
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("creating the probe's scratch stream")?;
    let result = jetstream_load(&js, &subject, duration).await;
    let deleted = js.delete_stream(&name).await;
    let _ = client.drain().await;
    let rate = result?;
    deleted
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("deleting the probe's stream {name}"))?;
    Ok(rate)
}

async fn jetstream_load(js: &jetstream::Context, subject: &str, duration: Duration) -> Result<f64> {
    let body = bytes::Bytes::from(vec![0xa5u8; JS_MESSAGE_BYTES]);
    let started = Instant::now();
    let deadline = started + duration;
    let mut pending = FuturesUnordered::new();
    let mut acked = 0u64;
    let mut n = 0u64;
    loop {
        while pending.len() < JS_WINDOW && Instant::now() < deadline {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("probe-{n}").as_str());
            n += 1;
            let ack = js
                .publish_with_headers(subject.to_owned(), headers, body.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("publishing to the probe's stream")?;
            pending.push(ack.into_future());
        }
        match pending.next().await {
            Some(r) => {
                r.map_err(|e| anyhow::anyhow!("{e}"))
                    .context("waiting for a PubAck")?;
                acked += 1;
            }
            None => break,
        }
    }
    Ok(acked as f64 / started.elapsed().as_secs_f64())
}

/// A connection URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact("postgres://wardline:s3cret@db:5432/postgres"),
            "postgres://wardline:***@db:5432/postgres"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            redact("postgres://127.0.0.1/postgres"),
            "postgres://127.0.0.1/postgres"
        );
    }
}
