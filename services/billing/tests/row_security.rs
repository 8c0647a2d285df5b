//! Row-level security under billing's own store functions, as the
//! service's runtime role: St Mary's rows (its time zone, contract, calls,
//! breaches and periods) are invisible to a transaction scoped to Lakeside
//! and to one that set no tenant at all, and Lakeside cannot write a row
//! of St Mary's. The workspace-level check that every tenant table is
//! protected is `tests/row_security.rs` at the top.

mod common;

use chrono::{NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use wardline_billing::domain::calendar::Period;
use wardline_billing::events::BillingEvents;
use wardline_billing::invoice::{self, InvoiceError};
use wardline_billing::store;
use wardline_kit::consumer::Incoming;
use wardline_kit::db::{self, Scope};
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::Priority;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{EventEnvelope, SlaBreached, SlaTarget};
use wardline_testkit::build::{snapshot, tenant_created, ticket_created};
use wardline_testkit::rls::{begin, changes_nothing};

use common::migrated;

const TENANT: &str = "stmarys";
const OTHER: &str = "lakeside";

/// Billing's tables, all of them one tenant's rows.
const TABLES: &[&str] = &[
    "tenants",
    "contract_versions",
    "calls",
    "breaches",
    "periods",
];

/// `events` (one tenant's) as one batch of the consumer loop.
async fn apply(pool: &PgPool, events: &[EventEnvelope]) {
    let incoming: Vec<Incoming> = events.iter().map(|e| Incoming::new(e.clone(), 1)).collect();
    let mut tx = db::begin(pool, Scope::Tenant(&events[0].tenant_id))
        .await
        .unwrap();
    wardline_kit::consumer::apply_with(&BillingEvents, &mut tx, &incoming)
        .await
        .expect("handled");
    tx.commit().await.unwrap();
}

/// St Mary's, with a contract, a call and its breach, billed this month.
async fn st_marys(prefix: &str) -> (wardline_testkit::TestDb, PgPool, Period) {
    let (db, pool) = migrated(prefix).await;
    apply(&pool, &[tenant_created(TENANT, "America/Chicago")]).await;
    let mut tx = db::begin(&pool, Scope::Tenant(TENANT)).await.unwrap();
    let mut contract = wardline_billing::contract::example("USD", "2026-01-01");
    contract.contract_id = Uuid::now_v7().to_string();
    contract.version = 1;
    store::insert_version(
        &mut tx,
        TENANT,
        &contract,
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    )
    .await
    .expect("contract stored");
    tx.commit().await.unwrap();
    let now = Utc::now();
    let ticket = Uuid::now_v7().to_string();
    let created = ticket_created(TENANT, snapshot(&ticket, "STM-000001", Priority::P1, now));
    let breached = envelope(
        "routing",
        TENANT,
        &ticket,
        2,
        Payload::SlaBreached(SlaBreached {
            ticket_id: ticket.clone(),
            number: "STM-000001".into(),
            priority: Priority::P1 as i32,
            target: SlaTarget::Response as i32,
            deadline: None,
            breached_at: Some(timestamp(now)),
            internal: false,
        }),
    );
    apply(&pool, &[created, breached]).await;
    let mut tx = db::begin(&pool, Scope::Tenant(TENANT)).await.unwrap();
    let tz = store::tenant_zone(&mut tx, TENANT).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let period = Period::of(wardline_billing::domain::calendar::local_date(tz, now));
    (db, pool, period)
}

/// How many of St Mary's rows `conn`'s transaction sees, per table.
async fn rows(conn: &mut PgConnection) -> Vec<(&'static str, i64)> {
    let mut rows = Vec::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE tenant_id = '{TENANT}'"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        rows.push((*table, n));
    }
    rows
}

/// A transaction as `scope`, or one that set no tenant at all (`None`).
#[tokio::test]
async fn another_tenant_and_no_tenant_see_none_of_st_marys_rows() {
    let (_db, pool, period) = st_marys("bl_rls_read").await;

    let mut own = begin(&pool, Some(Scope::Tenant(TENANT))).await;
    assert!(rows(&mut own).await.iter().all(|(_, n)| *n > 0));
    assert_eq!(store::versions(&mut own, TENANT).await.unwrap().len(), 1);
    let calls = store::calls_billed_on(&mut own, TENANT, period).await;
    assert_eq!(calls.unwrap().len(), 1);
    let (invoice, _) = invoice::current(&mut own, TENANT, period).await.unwrap();
    assert_eq!(invoice.tenant_id, TENANT);

    for scope in [Some(Scope::Tenant(OTHER)), None] {
        let mut tx = begin(&pool, scope).await;
        let seen = rows(&mut tx).await;
        assert!(seen.iter().all(|(_, n)| *n == 0), "{scope:?}: {seen:?}");
        assert!(store::tenant_zone(&mut tx, TENANT).await.unwrap().is_none());
        assert!(store::versions(&mut tx, TENANT).await.unwrap().is_empty());
        let calls = store::calls_billed_on(&mut tx, TENANT, period).await;
        assert!(calls.unwrap().is_empty());
        let breaches = store::response_breaches_billed_on(&mut tx, TENANT, period).await;
        assert!(breaches.unwrap().is_empty());
        // St Mary's does not exist for it: no invoice, nothing computed.
        assert!(matches!(
            invoice::current(&mut tx, TENANT, period).await,
            Err(InvoiceError::UnknownTenant(_))
        ));
    }
}

#[tokio::test]
async fn another_tenant_writes_no_row_of_st_marys() {
    let (_db, pool, period) = st_marys("bl_rls_write").await;
    for scope in [Some(Scope::Tenant(OTHER)), None] {
        let mut tx = begin(&pool, scope).await;
        let e = store::upsert_tenant(&mut tx, TENANT, "UTC")
            .await
            .unwrap_err();
        let code = e.as_database_error().and_then(|d| d.code());
        assert_eq!(code.as_deref(), Some("42501"), "{scope:?}: {e}");
        drop(tx);
        // Updates and deletes find nothing to change.
        changes_nothing(
            &pool,
            scope,
            &[
                "UPDATE periods SET status = 2 WHERE tenant_id = 'stmarys'",
                "DELETE FROM calls WHERE tenant_id = 'stmarys'",
                "DELETE FROM breaches WHERE tenant_id = 'stmarys'",
            ],
        )
        .await;
    }
    let mut own = begin(&pool, Some(Scope::Tenant(TENANT))).await;
    assert!(rows(&mut own).await.iter().all(|(_, n)| *n > 0));
    let (invoice, _) = invoice::current(&mut own, TENANT, period).await.unwrap();
    assert_eq!(
        invoice.status,
        wardline_proto::billing::InvoiceStatus::Draft as i32
    );
}
