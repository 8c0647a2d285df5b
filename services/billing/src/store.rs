//! Billing's storage. Every query is scoped by tenant.

use std::collections::{HashMap, HashSet};

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

/// Where a fact of each `own` period is billed: `own` unless it was issued
/// already, then the first later period still open (a late charge, the
/// `bool`). Set-based, for a whole batch: each round creates the missing
/// period rows in one statement and takes them `FOR SHARE` in another (in
/// period order, so issuing, which takes one `FOR UPDATE`, waits for this
/// transaction and cannot deadlock with it); a round more only for periods
/// already issued. Usually one round for any number of facts.
pub async fn billing_periods(
    conn: &mut PgConnection,
    tenant: &str,
    owns: &[Period],
) -> Result<HashMap<Period, (Period, bool)>, sqlx::Error> {
    let mut out = HashMap::new();
    let mut asking: Vec<(Period, Period)> = owns.iter().map(|&p| (p, p)).collect();
    asking.sort_unstable();
    asking.dedup();
    while !asking.is_empty() {
        let mut names: Vec<String> = asking.iter().map(|(_, p)| p.to_string()).collect();
        names.sort_unstable();
        names.dedup();
        let invoices: Vec<Uuid> = names.iter().map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO periods (tenant_id, period, invoice_id)
             SELECT $1, u.period, u.invoice_id FROM UNNEST($2::text[], $3::uuid[]) AS u(period, invoice_id)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(&names)
        .bind(&invoices)
        .execute(&mut *conn)
        .await?;
        let rows: Vec<(String, i16)> = sqlx::query_as(
            "SELECT period, status FROM periods WHERE tenant_id = $1 AND period = ANY($2)
              ORDER BY period FOR SHARE",
        )
        .bind(tenant)
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?;
        let open: HashMap<String, bool> = rows.into_iter().map(|(p, s)| (p, s == 1)).collect();
        asking = asking
            .into_iter()
            .filter_map(|(own, p)| {
                if open.get(&p.to_string()).copied().unwrap_or(false) {
                    out.insert(own, (p, p != own));
                    None
                } else {
                    Some((own, p.next()))
                }
            })
            .collect();
    }
    Ok(out)
}

/// A call as recorded.
pub struct NewCall<'a> {
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

/// Records each call once per ticket, all in one statement. Returns the
/// tickets whose call is new: one recorded before (or earlier in `calls`)
/// is left as it was.
pub async fn record_calls(
    conn: &mut PgConnection,
    tenant: &str,
    calls: &[NewCall<'_>],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if calls.is_empty() {
        return Ok(HashSet::new());
    }
    let new: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO calls (ticket_id, tenant_id, number, source_event_id, created_at, local_date, tier, priority,
            category, period, billed_period, late)
         SELECT u.ticket_id, $1, u.number, u.source_event_id, u.created_at, u.local_date, u.tier, u.priority,
                u.category, u.period, u.billed_period, u.late
           FROM UNNEST($2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[], $6::date[], $7::int2[], $8::int2[],
                       $9::int2[], $10::text[], $11::text[], $12::bool[])
                AS u(ticket_id, number, source_event_id, created_at, local_date, tier, priority, category, period,
                     billed_period, late)
         ON CONFLICT (ticket_id) DO NOTHING RETURNING ticket_id",
    )
    .bind(tenant)
    .bind(calls.iter().map(|c| c.ticket_id).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.number).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.event_id).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.created_at).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.local_date).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| tier_code(c.tier)).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.priority).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.category).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.period.to_string()).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.billed.to_string()).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.late).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    Ok(new.into_iter().collect())
}

/// A breach as recorded.
pub struct NewBreach<'a> {
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

/// Records each breach once per (ticket, target), all in one statement.
/// Returns how many are new.
pub async fn record_breaches(
    conn: &mut PgConnection,
    tenant: &str,
    breaches: &[NewBreach<'_>],
) -> Result<u64, sqlx::Error> {
    if breaches.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query(
        "INSERT INTO breaches (ticket_id, target, tenant_id, number, source_event_id, detected_at, priority, period,
            billed_period, late)
         SELECT u.ticket_id, u.target, $1, u.number, u.source_event_id, u.detected_at, u.priority, u.period,
                u.billed_period, u.late
           FROM UNNEST($2::uuid[], $3::int2[], $4::text[], $5::uuid[], $6::timestamptz[], $7::int2[], $8::text[],
                       $9::text[], $10::bool[])
                AS u(ticket_id, target, number, source_event_id, detected_at, priority, period, billed_period, late)
         ON CONFLICT (ticket_id, target) DO NOTHING",
    )
    .bind(tenant)
    .bind(breaches.iter().map(|b| b.ticket_id).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.target).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.number).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.event_id).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.detected_at).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.priority).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.period.to_string()).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.billed.to_string()).collect::<Vec<_>>())
    .bind(breaches.iter().map(|b| b.late).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
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

/// The version in force on each of `dates` (the latest `effective_from`
/// not after it), for the dates that have one: the terms a call of that
/// day is rated under. One statement for a whole batch.
pub async fn versions_in_force(
    conn: &mut PgConnection,
    tenant: &str,
    dates: &[NaiveDate],
) -> Result<HashMap<NaiveDate, Terms>, sqlx::Error> {
    if dates.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(NaiveDate, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT DISTINCT ON (d.day) d.day, cv.version, cv.body
           FROM UNNEST($2::date[]) AS d(day)
           JOIN contract_versions cv ON cv.tenant_id = $1 AND cv.effective_from <= d.day
          ORDER BY d.day, cv.effective_from DESC, cv.version DESC",
    )
    .bind(tenant)
    .bind(dates)
    .fetch_all(conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (day, version, body) in rows {
        let contract =
            Contract::decode(body.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let terms = crate::contract::terms_from_proto(&contract, version as u32).map_err(|e| {
            sqlx::Error::Protocol(format!("stored contract version {version} is invalid: {e}"))
        })?;
        out.insert(day, terms);
    }
    Ok(out)
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
