//! Invoices: a period computed from its rated events, issued (frozen for
//! ever), exported, and checked against a rebuild.
//!
//! What must hold: an issued invoice never changes. Issuing takes the
//! period row `FOR UPDATE` while recording a call takes it `FOR SHARE`, so
//! no call can land in a period during or after its issue; a call that
//! arrives later is billed on the next open period as a late charge.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;
use wardline_kit::events::timestamp;
use wardline_proto::billing::{
    AfterHoursReason, BillingTier, Charge, Invoice, InvoiceDifference, InvoiceLine, InvoiceStatus,
    LineKind, RebuildCheckResponse,
};
use wardline_proto::common::Money;

use crate::domain::calendar::{AfterHours, Period};
use crate::domain::rating::{self, RatedPeriod, Tier};
use crate::store;

/// Errors computing or issuing.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    /// The tenant is unknown to billing.
    #[error("tenant {0} not found")]
    UnknownTenant(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A period rated from its rated events, with the period's row.
pub struct Computed {
    pub tz: Tz,
    pub rated: RatedPeriod,
    pub row: store::PeriodRow,
    pub contract_id: String,
}

/// Rates `period` of `tenant` from the stored calls and breaches.
pub async fn compute(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
    lock: bool,
) -> Result<Computed, InvoiceError> {
    let tz = store::tenant_zone(conn, tenant)
        .await?
        .ok_or_else(|| InvoiceError::UnknownTenant(tenant.to_owned()))?;
    let row = store::period_row(conn, tenant, period, lock).await?;
    let versions = store::versions(conn, tenant).await?;
    let terms: Vec<rating::Terms> = versions.iter().map(|v| v.terms.clone()).collect();
    let calls = store::calls_billed_on(conn, tenant, period).await?;
    let breaches = store::response_breaches_billed_on(conn, tenant, period).await?;
    let rated = rating::rate_period(tz, period, &terms, &calls, &breaches);
    let contract_id = versions
        .first()
        .map(|v| v.contract.contract_id.clone())
        .unwrap_or_default();
    Ok(Computed {
        tz,
        rated,
        row,
        contract_id,
    })
}

fn money(currency: &str, minor: i64) -> Option<Money> {
    Some(Money {
        currency: currency.to_owned(),
        minor_units: minor,
    })
}

fn tier(t: Option<Tier>) -> i32 {
    match t {
        Some(Tier::Clinical) => BillingTier::Clinical as i32,
        Some(Tier::Technical) => BillingTier::Technical as i32,
        None => BillingTier::Unspecified as i32,
    }
}

fn kind(k: rating::LineKind) -> i32 {
    use rating::LineKind as K;
    (match k {
        K::CallsIncluded => LineKind::CallsIncluded,
        K::Overage => LineKind::Overage,
        K::TierPrice => LineKind::TierPrice,
        K::AfterHoursSurcharge => LineKind::AfterHoursSurcharge,
        K::SlaCredit => LineKind::SlaCredit,
        K::MinimumTopUp => LineKind::MinimumTopUp,
        K::Adjustment => LineKind::Adjustment,
    }) as i32
}

/// The invoice message of a computed period (a draft unless issued).
pub fn to_proto(
    tenant: &str,
    c: &Computed,
    status: InvoiceStatus,
    computed_at: DateTime<Utc>,
) -> Invoice {
    let r = &c.rated;
    let cur = r.currency.as_str();
    Invoice {
        invoice_id: c.row.invoice_id.to_string(),
        tenant_id: tenant.to_owned(),
        period: r.period.to_string(),
        status: status as i32,
        currency: cur.to_owned(),
        contract_id: c.contract_id.clone(),
        lines: r
            .lines
            .iter()
            .map(|l| InvoiceLine {
                kind: kind(l.kind),
                description_code: l.description_code.clone(),
                tier: tier(l.tier),
                priority: i32::from(l.priority),
                quantity: l.quantity,
                unit_price: money(cur, l.unit_price),
                amount: money(cur, l.amount),
                contract_version: l.contract_version,
            })
            .collect(),
        subtotal: money(cur, r.subtotal),
        credits: money(cur, r.credits),
        total: money(cur, r.total),
        calls: r.calls,
        issued_at: None,
        computed_at: Some(timestamp(computed_at)),
    }
}

/// The charges of a computed period.
pub fn charges(c: &Computed, invoice_id: Option<&str>) -> Vec<Charge> {
    let r = &c.rated;
    let cur = r.currency.as_str();
    r.charges
        .iter()
        .map(|ch| Charge {
            // Deterministic id: the same charge has the same id on every computation.
            charge_id: Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("{}:{}:{}", ch.event_id, ch.rule_code, ch.kind as i32).as_bytes(),
            )
            .to_string(),
            kind: kind(ch.kind),
            ticket_id: ch.ticket_id.clone(),
            number: ch.number.clone(),
            source_event_id: ch.event_id.clone(),
            occurred_at: Some(timestamp(ch.occurred_at)),
            local_date: ch.local_date.format("%Y-%m-%d").to_string(),
            period: r.period.to_string(),
            tier: tier(ch.tier),
            priority: i32::from(ch.priority),
            category: ch.category,
            after_hours: (match ch.after_hours {
                AfterHours::No => AfterHoursReason::Unspecified,
                AfterHours::OutsideHours => AfterHoursReason::OutsideHours,
                AfterHours::ClosedDay => AfterHoursReason::ClosedDay,
                AfterHours::Holiday => AfterHoursReason::Holiday,
            }) as i32,
            sla_target: if ch.kind == rating::LineKind::SlaCredit {
                wardline_proto::events::SlaTarget::Response as i32
            } else {
                0
            },
            contract_version: ch.contract_version,
            rule_code: ch.rule_code.clone(),
            rate: money(cur, ch.rate),
            rate_bps: ch.rate_bps,
            amount: money(cur, ch.amount),
            invoice_id: invoice_id.unwrap_or_default().to_owned(),
        })
        .collect()
}

/// The invoice of a period as it stands: the frozen one when issued, else
/// the draft computed now.
pub async fn current(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
) -> Result<(Invoice, Computed), InvoiceError> {
    let c = compute(conn, tenant, period, false).await?;
    let invoice = match (&c.row.invoice, c.row.status) {
        (Some(bytes), 2) => {
            Invoice::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
        }
        _ => to_proto(tenant, &c, InvoiceStatus::Draft, Utc::now()),
    };
    Ok((invoice, c))
}

/// Outcome of issuing.
pub enum Issued {
    /// Issued now.
    Now(Box<Invoice>),
    /// It was issued before.
    Already,
}

/// Freezes the period's invoice and records the InvoiceIssued event in the
/// same transaction.
pub async fn issue(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
) -> Result<Issued, InvoiceError> {
    let c = compute(conn, tenant, period, true).await?;
    if c.row.status == 2 {
        return Ok(Issued::Already);
    }
    let now = Utc::now();
    let mut invoice = to_proto(tenant, &c, InvoiceStatus::Issued, now);
    invoice.issued_at = Some(timestamp(now));
    sqlx::query("UPDATE periods SET status = 2, issued_at = $3, invoice = $4 WHERE tenant_id = $1 AND period = $2")
        .bind(tenant)
        .bind(period.to_string())
        .bind(now)
        .bind(invoice.encode_to_vec())
        .execute(&mut *conn)
        .await?;
    let env = wardline_kit::events::envelope(
        "billing",
        tenant,
        &invoice.invoice_id,
        1,
        wardline_proto::events::event_envelope::Payload::InvoiceIssued(
            wardline_proto::events::InvoiceIssued {
                invoice_id: invoice.invoice_id.clone(),
                period: invoice.period.clone(),
                total: invoice.total.clone(),
                calls: invoice.calls,
            },
        ),
    );
    wardline_kit::outbox::enqueue(conn, &env)
        .await
        .map_err(|e| match e {
            wardline_kit::outbox::OutboxError::Db(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    metrics::counter!("wardline_billing_invoices_issued_total").increment(1);
    metrics::counter!("wardline_billing_invoiced_minor_units_total", "currency" => invoice.currency.clone())
        .increment(c.rated.total.max(0) as u64);
    Ok(Issued::Now(Box::new(invoice)))
}

fn amount(m: &Option<Money>) -> i64 {
    m.as_ref().map(|m| m.minor_units).unwrap_or(0)
}

/// Compares a stored invoice with a rebuild from the rated events.
pub fn compare(stored: &Invoice, rebuilt: &Invoice) -> Vec<InvoiceDifference> {
    let key = |l: &InvoiceLine| {
        (
            l.kind,
            l.description_code.clone(),
            l.tier,
            l.priority,
            amount(&l.unit_price),
            l.contract_version,
        )
    };
    let mut diffs = Vec::new();
    let cur = stored.currency.clone();
    for s in &stored.lines {
        match rebuilt.lines.iter().find(|r| key(r) == key(s)) {
            None => diffs.push(InvoiceDifference {
                kind: s.kind,
                description_code: s.description_code.clone(),
                field: "missing_in_rebuilt".into(),
                stored_quantity: s.quantity,
                stored_amount: s.amount.clone(),
                ..Default::default()
            }),
            Some(r) if r.quantity != s.quantity || amount(&r.amount) != amount(&s.amount) => diffs
                .push(InvoiceDifference {
                    kind: s.kind,
                    description_code: s.description_code.clone(),
                    field: if r.quantity != s.quantity {
                        "quantity"
                    } else {
                        "amount"
                    }
                    .into(),
                    stored_quantity: s.quantity,
                    rebuilt_quantity: r.quantity,
                    stored_amount: s.amount.clone(),
                    rebuilt_amount: r.amount.clone(),
                }),
            Some(_) => {}
        }
    }
    for r in &rebuilt.lines {
        if !stored.lines.iter().any(|s| key(s) == key(r)) {
            diffs.push(InvoiceDifference {
                kind: r.kind,
                description_code: r.description_code.clone(),
                field: "missing_in_stored".into(),
                rebuilt_quantity: r.quantity,
                rebuilt_amount: r.amount.clone(),
                ..Default::default()
            });
        }
    }
    for (code, s, r) in [
        ("subtotal", &stored.subtotal, &rebuilt.subtotal),
        ("credits", &stored.credits, &rebuilt.credits),
        ("total", &stored.total, &rebuilt.total),
    ] {
        if amount(s) != amount(r) {
            diffs.push(InvoiceDifference {
                description_code: code.into(),
                field: "amount".into(),
                stored_amount: money(&cur, amount(s)),
                rebuilt_amount: money(&cur, amount(r)),
                ..Default::default()
            });
        }
    }
    if stored.calls != rebuilt.calls {
        diffs.push(InvoiceDifference {
            description_code: "calls".into(),
            field: "quantity".into(),
            stored_quantity: stored.calls,
            rebuilt_quantity: rebuilt.calls,
            ..Default::default()
        });
    }
    diffs
}

/// Rebuilds `period` from the rated events and compares with what is stored.
pub async fn rebuild_check(
    conn: &mut PgConnection,
    tenant: &str,
    period: Period,
) -> Result<RebuildCheckResponse, InvoiceError> {
    let (stored, c) = current(conn, tenant, period).await?;
    let rebuilt = to_proto(tenant, &c, InvoiceStatus::Draft, Utc::now());
    let differences = compare(&stored, &rebuilt);
    Ok(RebuildCheckResponse {
        period: period.to_string(),
        invoice_id: stored.invoice_id.clone(),
        status: stored.status,
        matches: differences.is_empty(),
        differences,
        stored_total: stored.total.clone(),
        rebuilt_total: rebuilt.total.clone(),
        checked_at: Some(timestamp(Utc::now())),
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The amount in major units with its currency's decimals (ISO 4217:
/// `45.00` USD, `4500` JPY, `45.000` BHD).
fn decimal(minor: i64, currency: &str) -> String {
    wardline_proto::money::format(minor, currency)
}

fn kind_name(k: i32) -> &'static str {
    LineKind::try_from(k)
        .map(|k| k.as_str_name())
        .unwrap_or("LINE_KIND_UNSPECIFIED")
        .trim_start_matches("LINE_KIND_")
}

/// RFC 4180 CSV: one row per line, then subtotal, credits and total rows.
/// Amounts in major units with two decimals (ISO 4217 two-decimal currencies)
/// and in minor units, so a spreadsheet and a script both read it right.
pub fn to_csv(inv: &Invoice) -> String {
    let mut out = String::from(
        "invoice_id,tenant_id,period,status,kind,description_code,tier,priority,quantity,unit_price,amount,amount_minor_units,currency,contract_version\r\n",
    );
    let status = InvoiceStatus::try_from(inv.status)
        .map(|s| s.as_str_name())
        .unwrap_or("")
        .trim_start_matches("INVOICE_STATUS_");
    for l in &inv.lines {
        let tier = BillingTier::try_from(l.tier)
            .map(|t| t.as_str_name())
            .unwrap_or("")
            .trim_start_matches("BILLING_TIER_")
            .replace("UNSPECIFIED", "");
        let priority = if l.priority > 0 {
            format!("P{}", l.priority)
        } else {
            String::new()
        };
        out.push_str(
            &[
                csv_field(&inv.invoice_id),
                csv_field(&inv.tenant_id),
                csv_field(&inv.period),
                status.to_owned(),
                kind_name(l.kind).to_owned(),
                csv_field(&l.description_code),
                tier,
                priority,
                l.quantity.to_string(),
                decimal(amount(&l.unit_price), &inv.currency),
                decimal(amount(&l.amount), &inv.currency),
                amount(&l.amount).to_string(),
                csv_field(&inv.currency),
                l.contract_version.to_string(),
            ]
            .join(","),
        );
        out.push_str("\r\n");
    }
    for (label, m) in [
        ("SUBTOTAL", &inv.subtotal),
        ("CREDITS", &inv.credits),
        ("TOTAL", &inv.total),
    ] {
        out.push_str(&format!(
            "{},{},{},{status},{label},,,,,,{},{},{},\r\n",
            csv_field(&inv.invoice_id),
            csv_field(&inv.tenant_id),
            csv_field(&inv.period),
            decimal(amount(m), &inv.currency),
            amount(m),
            csv_field(&inv.currency)
        ));
    }
    out
}

fn money_json(m: &Option<Money>) -> serde_json::Value {
    // proto3 JSON mapping: int64 as a string.
    serde_json::json!({ "currency": m.as_ref().map(|m| m.currency.clone()).unwrap_or_default(), "minorUnits": amount(m).to_string() })
}

fn ts_json(t: &Option<prost_types::Timestamp>) -> serde_json::Value {
    match t.as_ref().and_then(wardline_kit::events::from_timestamp) {
        Some(t) => {
            serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        None => serde_json::Value::Null,
    }
}

/// The invoice in the proto3 JSON mapping (camelCase names, enums by name, int64 as strings).
pub fn to_json(inv: &Invoice) -> serde_json::Value {
    serde_json::json!({
        "invoiceId": inv.invoice_id,
        "tenantId": inv.tenant_id,
        "period": inv.period,
        "status": InvoiceStatus::try_from(inv.status).map(|s| s.as_str_name()).unwrap_or("INVOICE_STATUS_UNSPECIFIED"),
        "currency": inv.currency,
        "contractId": inv.contract_id,
        "lines": inv.lines.iter().map(|l| serde_json::json!({
            "kind": LineKind::try_from(l.kind).map(|k| k.as_str_name()).unwrap_or("LINE_KIND_UNSPECIFIED"),
            "descriptionCode": l.description_code,
            "tier": BillingTier::try_from(l.tier).map(|t| t.as_str_name()).unwrap_or("BILLING_TIER_UNSPECIFIED"),
            "priority": wardline_proto::common::Priority::try_from(l.priority).map(|p| p.as_str_name()).unwrap_or("PRIORITY_UNSPECIFIED"),
            "quantity": l.quantity.to_string(),
            "unitPrice": money_json(&l.unit_price),
            "amount": money_json(&l.amount),
            "contractVersion": l.contract_version,
        })).collect::<Vec<_>>(),
        "subtotal": money_json(&inv.subtotal),
        "credits": money_json(&inv.credits),
        "total": money_json(&inv.total),
        "calls": inv.calls.to_string(),
        "issuedAt": ts_json(&inv.issued_at),
        "computedAt": ts_json(&inv.computed_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice() -> Invoice {
        Invoice {
            invoice_id: "i1".into(),
            tenant_id: "stmarys".into(),
            period: "2026-03".into(),
            status: InvoiceStatus::Issued as i32,
            currency: "USD".into(),
            lines: vec![InvoiceLine {
                kind: LineKind::TierPrice as i32,
                description_code: "tier_price.clinical.p1".into(),
                tier: BillingTier::Clinical as i32,
                priority: 1,
                quantity: 2,
                unit_price: money("USD", 4500),
                amount: money("USD", 9000),
                contract_version: 1,
            }],
            subtotal: money("USD", 9000),
            credits: money("USD", -500),
            total: money("USD", 8500),
            calls: 2,
            ..Default::default()
        }
    }

    #[test]
    fn csv_rows_and_totals() {
        let csv = to_csv(&invoice());
        let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
        assert_eq!(rows.len(), 5);
        assert!(
            rows[1]
                .contains("TIER_PRICE,tier_price.clinical.p1,CLINICAL,P1,2,45.00,90.00,9000,USD,1"),
            "{}",
            rows[1]
        );
        assert!(
            rows[3].contains("CREDITS") && rows[3].contains("-5.00,-500"),
            "{}",
            rows[3]
        );
        assert!(rows[4].contains("TOTAL") && rows[4].contains("85.00,8500"));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(decimal(-5, "USD"), "-0.05");
        assert_eq!(decimal(-5, "JPY"), "-5");
        assert_eq!(decimal(12345, "BHD"), "12.345");
    }

    #[test]
    fn json_uses_the_proto3_mapping() {
        let j = to_json(&invoice());
        assert_eq!(j["status"], "INVOICE_STATUS_ISSUED");
        assert_eq!(j["total"]["minorUnits"], "8500");
        assert_eq!(j["lines"][0]["priority"], "PRIORITY_P1");
    }

    #[test]
    fn compare_finds_every_difference() {
        let a = invoice();
        assert!(compare(&a, &a).is_empty());
        let mut b = a.clone();
        b.lines[0].quantity = 3;
        b.lines[0].amount = money("USD", 13_500);
        b.total = money("USD", 13_000);
        let d = compare(&a, &b);
        assert!(
            d.iter()
                .any(|d| d.field == "quantity" && d.description_code == "tier_price.clinical.p1")
        );
        assert!(d.iter().any(|d| d.description_code == "total"));
    }
}
