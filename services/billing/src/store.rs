//! Billing's storage. Every query is scoped by tenant.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;
use wardline_proto::billing::Contract;

use crate::domain::calendar::Period;
use crate::domain::rating::{Breach, Call, Terms, Tier};

/// Records (or updates) a tenant's time zone.
pub async fn upsert_tenant(
    conn: &mut PgConnection,
    tenant: &str,
    time_zone: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (tenant_id, time_zone) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET time_zone = EXCLUDED.time_zone, updated_at = now()",
    )
    .bind(tenant)
    .bind(time_zone)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant's zone, if billing has heard of the tenant.
pub async fn tenant_zone(conn: &mut PgConnection, tenant: &str) -> Result<Option<Tz>, sqlx::Error> {
    let zone: Option<String> =
        sqlx::query_scalar("SELECT time_zone FROM tenants WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(conn)
            .await?;
    Ok(zone.map(|z| z.parse().unwrap_or(chrono_tz::UTC)))
}

/// The period a fact of `own` period is billed on: `own` unless it was
/// issued already, then the first later period still open (a late charge).
/// Takes each period row `FOR SHARE`, so issuing waits for this transaction.
pub async fn billing_period(
    conn: &mut PgConnection,
    tenant: &str,
    own: Period,
) -> Result<(Period, bool), sqlx::Error> {
    let mut p = own;
    loop {
        sqlx::query("INSERT INTO periods (tenant_id, period, invoice_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(tenant)
            .bind(p.to_string())
            .bind(Uuid::now_v7())
            .execute(&mut *conn)
            .await?;
        let status: i16 = sqlx::query_scalar(
            "SELECT status FROM periods WHERE tenant_id = $1 AND period = $2 FOR SHARE",
        )
        .bind(tenant)
        .bind(p.to_string())
        .fetch_one(&mut *conn)
        .await?;
        if status == 1 {
            return Ok((p, p != own));
        }
        p = p.next();
    }
}

/// A call as recorded.
pub struct NewCall<'a> {
    pub tenant: &'a str,
    pub ticket_id: Uuid,
    pub number: &'a str,
    pub event_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub local_date: NaiveDate,
    pub tier: Tier,
    pub priority: i16,
    pub category: i16,
    pub period: Period,
    pub billed: Period,
    pub late: bool,
}

/// Records a call once per ticket. False when it was recorded before.
pub async fn record_call(conn: &mut PgConnection, c: &NewCall<'_>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO calls (ticket_id, tenant_id, number, source_event_id, created_at, local_date, tier, priority,
            category, period, billed_period, late)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (ticket_id) DO NOTHING",
    )
    .bind(c.ticket_id)
    .bind(c.tenant)
    .bind(c.number)
    .bind(c.event_id)
    .bind(c.created_at)
    .bind(c.local_date)
    .bind(tier_code(c.tier))
    .bind(c.priority)
    .bind(c.category)
    .bind(c.period.to_string())
    .bind(c.billed.to_string())
    .bind(c.late)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A breach as recorded.
pub struct NewBreach<'a> {
    pub tenant: &'a str,
    pub ticket_id: Uuid,
    pub target: i16,
    pub number: &'a str,
    pub event_id: Uuid,
    pub detected_at: DateTime<Utc>,
    pub priority: i16,
    pub period: Period,
    pub billed: Period,
    pub late: bool,
}

/// Records a breach once per (ticket, target).
pub async fn record_breach(
    conn: &mut PgConnection,
    b: &NewBreach<'_>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO breaches (ticket_id, target, tenant_id, number, source_event_id, detected_at, priority, period,
            billed_period, late)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (ticket_id, target) DO NOTHING",
    )
    .bind(b.ticket_id)
    .bind(b.target)
    .bind(b.tenant)
    .bind(b.number)
    .bind(b.event_id)
    .bind(b.detected_at)
    .bind(b.priority)
    .bind(b.period.to_string())
    .bind(b.billed.to_string())
    .bind(b.late)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Tier as stored (1 clinical, 2 technical, like the API enum).
pub fn tier_code(t: Tier) -> i16 {
    match t {
        Tier::Clinical => 1,
        Tier::Technical => 2,
    }
}

fn tier_of(code: i16) -> Tier {
    if code == 1 {
        Tier::Clinical
    } else {
        Tier::Technical
    }
}

#[derive(sqlx::FromRow)]
struct CallRow {
    ticket_id: Uuid,
    number: String,
    source_event_id: Uuid,
    created_at: DateTime<Utc>,
    tier: i16,
    priority: i16,
    category: i16,
    late: bool,
}

/// Calls billed on `period`.
pub async fn calls_billed_on(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
) -> Result<Vec<Call>, sqlx::Error> {
    let rows: Vec<CallRow> = sqlx::query_as(
        "SELECT ticket_id, number, source_event_id, created_at, tier, priority, category, late
           FROM calls WHERE tenant_id = $1 AND billed_period = $2",
    )
    .bind(tenant)
    .bind(period.to_string())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Call {
            ticket_id: r.ticket_id.to_string(),
            number: r.number,
            event_id: r.source_event_id.to_string(),
            created_at: r.created_at,
            tier: tier_of(r.tier),
            priority: r.priority.clamp(1, 4) as u8,
            category: i32::from(r.category),
            late: r.late,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct BreachRow {
    ticket_id: Uuid,
    number: String,
    source_event_id: Uuid,
    detected_at: DateTime<Utc>,
    priority: i16,
    late: bool,
}

/// Response-target breaches billed on `period` (the ones credits are for).
pub async fn response_breaches_billed_on(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
) -> Result<Vec<Breach>, sqlx::Error> {
    let rows: Vec<BreachRow> = sqlx::query_as(
        "SELECT ticket_id, number, source_event_id, detected_at, priority, late
           FROM breaches WHERE tenant_id = $1 AND billed_period = $2 AND target = 1",
    )
    .bind(tenant)
    .bind(period.to_string())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Breach {
            ticket_id: r.ticket_id.to_string(),
            number: r.number,
            event_id: r.source_event_id.to_string(),
            detected_at: r.detected_at,
            priority: r.priority.clamp(1, 4) as u8,
            late: r.late,
        })
        .collect())
}

/// A stored contract version.
#[derive(Debug, Clone)]
pub struct Version {
    pub contract: Contract,
    pub terms: Terms,
}

/// Every version of the tenant's contract, oldest first.
pub async fn versions(conn: &mut PgConnection, tenant: &str) -> Result<Vec<Version>, sqlx::Error> {
    let rows: Vec<(i32, Vec<u8>)> = sqlx::query_as(
        "SELECT version, body FROM contract_versions WHERE tenant_id = $1 ORDER BY version",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<Version> = Vec::with_capacity(rows.len());
    for (version, body) in rows {
        let contract =
            Contract::decode(body.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let terms = crate::contract::terms_from_proto(&contract, version as u32).map_err(|e| {
            sqlx::Error::Protocol(format!("stored contract version {version} is invalid: {e}"))
        })?;
        out.push(Version { contract, terms });
    }
    // effective_until of each version is the next one's effective_from.
    for i in 0..out.len() {
        let next = out
            .get(i + 1)
            .map(|v| v.contract.effective_from.clone())
            .unwrap_or_default();
        out[i].contract.effective_until = next;
    }
    Ok(out)
}

/// The version in force on `date` (the latest `effective_from` not after
/// it), if any: the one a call of that day is rated under.
pub async fn version_in_force(
    conn: &mut PgConnection,
    tenant: &str,
    date: NaiveDate,
) -> Result<Option<Terms>, sqlx::Error> {
    let row: Option<(i32, Vec<u8>)> = sqlx::query_as(
        "SELECT version, body FROM contract_versions WHERE tenant_id = $1 AND effective_from <= $2
          ORDER BY effective_from DESC, version DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(date)
    .fetch_optional(conn)
    .await?;
    let Some((version, body)) = row else {
        return Ok(None);
    };
    let contract =
        Contract::decode(body.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    crate::contract::terms_from_proto(&contract, version as u32)
        .map(Some)
        .map_err(|e| {
            sqlx::Error::Protocol(format!("stored contract version {version} is invalid: {e}"))
        })
}

/// Stores a new version (the body carries every output field).
pub async fn insert_version(
    conn: &mut PgConnection,
    tenant: &str,
    c: &Contract,
    effective_from: NaiveDate,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contract_versions (tenant_id, version, contract_id, effective_from, body, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant)
    .bind(c.version as i32)
    .bind(Uuid::parse_str(&c.contract_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?)
    .bind(effective_from)
    .bind(c.encode_to_vec())
    .bind(&c.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// A period's row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PeriodRow {
    pub invoice_id: Uuid,
    pub status: i16,
    pub issued_at: Option<DateTime<Utc>>,
    pub invoice: Option<Vec<u8>>,
}

/// The period's row, created as a draft when missing.
pub async fn period_row(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
    lock: bool,
) -> Result<PeriodRow, sqlx::Error> {
    sqlx::query("INSERT INTO periods (tenant_id, period, invoice_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .bind(period.to_string())
        .bind(Uuid::now_v7())
        .execute(&mut *conn)
        .await?;
    let sql = if lock {
        "SELECT invoice_id, status, issued_at, invoice FROM periods WHERE tenant_id = $1 AND period = $2 FOR UPDATE"
    } else {
        "SELECT invoice_id, status, issued_at, invoice FROM periods WHERE tenant_id = $1 AND period = $2"
    };
    sqlx::query_as(sql)
        .bind(tenant)
        .bind(period.to_string())
        .fetch_one(conn)
        .await
}
