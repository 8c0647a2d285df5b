//! How wardctl shows billing's messages: contracts, usage, charges,
//! unbilled calls, invoices and rebuild checks. Same conventions as the
//! rest of [`crate::render`]; amounts are shown with their currency's
//! decimals (`45.00` USD, `4500` JPY: [`wardline_proto::money`], from the
//! integer minor units, never through floating point), percentages are
//! basis points shown as percent (`25 %`), business hours compactly
//! (`mon-fri:08:00-17:00`).

use wardline_proto::ProtoEnum as _;
use wardline_proto::billing::{
    AfterHoursReason, BillingTier, Charge, Contract, Invoice, InvoiceStatus, LineKind,
    RebuildCheckResponse, RoundingRule, UnbilledCall, Usage,
};
use wardline_proto::common::{Category, Priority};

use super::{Zone, amount, amount_cur, dash, label, priority, time};
use crate::cli::{format_bps, format_hours};
use crate::table::{Table, key_values};

/// Basis points as `25 %`.
pub fn pct(bps: u32) -> String {
    format!("{} %", format_bps(bps))
}

// ------------------------------------------------------------------ contracts

/// The rate card as a table: one row per tier, one column per priority.
pub fn rate_card_table(c: &Contract) -> Table {
    let mut headers = vec!["TIER"];
    headers.extend(Priority::values().map(Priority::short_name));
    let mut table = Table::new(&headers);
    for t in BillingTier::values() {
        let mut row = vec![t.label().to_owned()];
        for p in Priority::values() {
            row.push(amount(
                c.rate_card
                    .iter()
                    .find(|x| x.tier == t as i32 && x.priority == p as i32)
                    .and_then(|x| x.price_per_call.as_ref()),
            ));
        }
        table.row(row);
    }
    table
}

fn hours_text(c: &Contract) -> String {
    let hours = format_hours(&c.business_hours);
    if hours.is_empty() {
        "none (every call is after hours)".to_owned()
    } else {
        hours.join(" ")
    }
}

fn included_text(c: &Contract) -> String {
    match c.calls_included_per_month {
        0 => "none".to_owned(),
        n => format!("{n} calls a month"),
    }
}

fn overage_text(c: &Contract) -> String {
    match &c.overage_price_per_call {
        Some(m) => format!("{} per call", amount_cur(Some(m))),
        None => "rate-card price".to_owned(),
    }
}

fn credits_text(c: &Contract) -> String {
    let Some(cr) = c.sla_credits.as_ref().filter(|cr| cr.cap_bps > 0) else {
        return "none".to_owned();
    };
    let mut parts = Vec::new();
    for (label, m) in [
        ("P1 response breach", cr.per_p1_response_breach.as_ref()),
        ("P2 response breach", cr.per_p2_response_breach.as_ref()),
    ] {
        if let Some(m) = m.filter(|m| m.minor_units > 0) {
            parts.push(format!("{} per {label}", amount(Some(m))));
        }
    }
    if parts.is_empty() {
        return "none".to_owned();
    }
    format!(
        "{}, at most {} of the subtotal",
        parts.join(", "),
        pct(cr.cap_bps)
    )
}

/// One contract version, every term, then its rate card.
pub fn contract_details(c: &Contract, zone: Zone) -> String {
    let until = if c.effective_until.is_empty() {
        "open-ended".to_owned()
    } else {
        format!("{} (the next version starts)", c.effective_until)
    };
    let mut out = key_values(&[
        ("tenant", c.tenant_id.clone()),
        ("contract", dash(&c.contract_id)),
        ("version", c.version.to_string()),
        ("effective from", c.effective_from.clone()),
        ("until", until),
        ("currency", c.currency.clone()),
        ("calls included", included_text(c)),
        ("overage", overage_text(c)),
        (
            "monthly minimum",
            c.monthly_minimum
                .as_ref()
                .map_or("none".to_owned(), |m| amount_cur(Some(m))),
        ),
        (
            "after hours",
            match c.after_hours_surcharge_bps {
                0 => "no surcharge".to_owned(),
                bps => format!("+{} of a charged call's price", pct(bps)),
            },
        ),
        ("business hours", hours_text(c)),
        (
            "holidays",
            if c.holidays.is_empty() {
                "-".to_owned()
            } else {
                c.holidays.join(" ")
            },
        ),
        ("sla credits", credits_text(c)),
        ("rounding", label::<RoundingRule>(c.rounding)),
        ("created", time(c.created_at.as_ref(), zone)),
        ("created by", dash(&c.created_by)),
    ]);
    out.push('\n');
    out.push_str(&format!("price per call ({}):\n", c.currency));
    out.push_str(&rate_card_table(c).render());
    out
}

/// Contract versions as a table.
pub fn contract_table(versions: &[Contract], zone: Zone) -> Table {
    let mut table =
        Table::of("VERSION|FROM|UNTIL|CUR|INCLUDED|OVERAGE|MINIMUM|AFTER HOURS|CREATED|BY");
    for c in versions {
        table.row([
            c.version.to_string(),
            c.effective_from.clone(),
            dash(&c.effective_until),
            c.currency.clone(),
            c.calls_included_per_month.to_string(),
            c.overage_price_per_call
                .as_ref()
                .map_or("rate card".to_owned(), |m| amount(Some(m))),
            amount(c.monthly_minimum.as_ref()),
            pct(c.after_hours_surcharge_bps),
            time(c.created_at.as_ref(), zone),
            dash(&c.created_by),
        ]);
    }
    table
}

/// One line about a contract version, for progress output.
pub fn contract_line(c: &Contract) -> String {
    let mut terms = vec![format!("v{} from {}", c.version, c.effective_from)];
    terms.push(c.currency.clone());
    if c.calls_included_per_month > 0 {
        terms.push(format!("{} calls included", c.calls_included_per_month));
    }
    if let Some(m) = &c.overage_price_per_call {
        terms.push(format!("overage {} flat", amount(Some(m))));
    }
    if let Some(m) = &c.monthly_minimum {
        terms.push(format!("minimum {}", amount(Some(m))));
    }
    if c.after_hours_surcharge_bps > 0 {
        terms.push(format!(
            "+{} after hours ({})",
            pct(c.after_hours_surcharge_bps),
            hours_text(c)
        ));
    }
    terms.join(", ")
}

// ------------------------------------------------------------------ usage

/// A period's usage: totals, then calls per tier and priority.
pub fn usage_text(u: &Usage, zone: Zone) -> String {
    let versions = if u.contract_versions.is_empty() {
        "- (no contract in force)".to_owned()
    } else {
        u.contract_versions
            .iter()
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = key_values(&[
        ("tenant", u.tenant_id.clone()),
        ("period", u.period.clone()),
        ("as of", time(u.as_of.as_ref(), zone)),
        ("contract", versions),
        ("calls", u.calls.to_string()),
        ("after hours", u.after_hours_calls.to_string()),
        (
            "included",
            format!(
                "{} of {} allowed",
                u.included_calls, u.calls_included_allowance
            ),
        ),
        ("overage", u.overage_calls.to_string()),
        ("p1 response breaches", u.p1_response_breaches.to_string()),
        ("p2 response breaches", u.p2_response_breaches.to_string()),
        (
            "unbilled",
            if u.unbilled_calls == 0 {
                "0".to_owned()
            } else {
                format!(
                    "{} (no contract in force on their day: wardctl unbilled)",
                    u.unbilled_calls
                )
            },
        ),
        ("amount", amount_cur(u.amount.as_ref())),
    ]);
    if !u.by_tier_priority.is_empty() {
        out.push('\n');
        let mut table = Table::of("TIER|PRI|CALLS|AFTER HOURS");
        for b in &u.by_tier_priority {
            table.row([
                label::<BillingTier>(b.tier),
                priority(b.priority).to_owned(),
                b.calls.to_string(),
                b.after_hours_calls.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

// ------------------------------------------------------------------ charges

/// Charges as a table, in billing's order (occurred, then id).
pub fn charge_table(charges: &[Charge], zone: Zone) -> Table {
    let mut table = Table::of("OCCURRED|TICKET|KIND|RULE|PRI|AFTER HOURS|RATE|AMOUNT|V");
    for c in charges {
        let rate = match (c.rate_bps, c.rate.as_ref()) {
            (bps, Some(r)) if bps > 0 => format!("{} of {}", pct(bps), amount(Some(r))),
            (_, r) => amount(r),
        };
        table.row([
            time(c.occurred_at.as_ref(), zone),
            c.number.clone(),
            label::<LineKind>(c.kind),
            c.rule_code.clone(),
            priority(c.priority).to_owned(),
            label::<AfterHoursReason>(c.after_hours),
            rate,
            amount(c.amount.as_ref()),
            c.contract_version.to_string(),
        ]);
    }
    table
}

/// The sum of `charges` per currency, `12.50 USD` (`0` when none).
pub fn charges_total(charges: &[Charge]) -> String {
    wardline_proto::money::total(charges.iter().filter_map(|c| c.amount.as_ref()))
}

// ------------------------------------------------------------------ unbilled

/// Unbilled calls as a table.
pub fn unbilled_table(calls: &[UnbilledCall], zone: Zone) -> Table {
    let mut table = Table::of("TENANT|TICKET|CREATED|TIER|PRI|CATEGORY|REASON");
    for c in calls {
        table.row([
            c.tenant_id.clone(),
            c.number.clone(),
            time(c.created_at.as_ref(), zone),
            label::<BillingTier>(c.tier),
            priority(c.priority).to_owned(),
            label::<Category>(c.category),
            c.reason_code.clone(),
        ]);
    }
    table
}

// ------------------------------------------------------------------ invoices

/// One invoice: header, lines, totals.
pub fn invoice_details(inv: &Invoice, zone: Zone) -> String {
    let mut header = vec![
        ("invoice", inv.invoice_id.clone()),
        ("tenant", inv.tenant_id.clone()),
        ("period", inv.period.clone()),
        ("status", label::<InvoiceStatus>(inv.status)),
        ("currency", inv.currency.clone()),
        ("contract", dash(&inv.contract_id)),
        ("calls", inv.calls.to_string()),
    ];
    if inv.issued_at.is_some() {
        header.push(("issued", time(inv.issued_at.as_ref(), zone)));
    }
    header.push(("computed", time(inv.computed_at.as_ref(), zone)));
    let mut out = key_values(&header);
    out.push('\n');
    if inv.lines.is_empty() {
        out.push_str("no lines\n");
    } else {
        let mut table = Table::of("KIND|DESCRIPTION|TIER|PRI|QTY|UNIT PRICE|AMOUNT|V");
        for l in &inv.lines {
            table.row([
                label::<LineKind>(l.kind),
                l.description_code.clone(),
                label::<BillingTier>(l.tier),
                priority(l.priority).to_owned(),
                l.quantity.to_string(),
                amount(l.unit_price.as_ref()),
                amount(l.amount.as_ref()),
                l.contract_version.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push('\n');
    out.push_str(&key_values(&[
        ("subtotal", amount_cur(inv.subtotal.as_ref())),
        ("credits", amount_cur(inv.credits.as_ref())),
        ("total", amount_cur(inv.total.as_ref())),
    ]));
    out
}

/// Invoices as a table (no lines).
pub fn invoice_table(invoices: &[Invoice], zone: Zone) -> Table {
    let mut table = Table::of("PERIOD|STATUS|CALLS|SUBTOTAL|CREDITS|TOTAL|CUR|ISSUED|INVOICE");
    for i in invoices {
        table.row([
            i.period.clone(),
            label::<InvoiceStatus>(i.status),
            i.calls.to_string(),
            amount(i.subtotal.as_ref()),
            amount(i.credits.as_ref()),
            amount(i.total.as_ref()),
            i.currency.clone(),
            time(i.issued_at.as_ref(), zone),
            i.invoice_id.clone(),
        ]);
    }
    table
}

// ------------------------------------------------------------------ rebuild check

/// A rebuild check: the verdict, the totals, and every difference.
pub fn rebuild_text(r: &RebuildCheckResponse, zone: Zone) -> String {
    let mut out = key_values(&[
        ("period", r.period.clone()),
        (
            "invoice",
            format!("{} ({})", r.invoice_id, label::<InvoiceStatus>(r.status)),
        ),
        (
            "result",
            if r.matches {
                "MATCHES: every line and total rebuilds to the minor unit".to_owned()
            } else {
                format!("DIFFERS in {} place(s)", r.differences.len())
            },
        ),
        ("stored total", amount_cur(r.stored_total.as_ref())),
        ("rebuilt total", amount_cur(r.rebuilt_total.as_ref())),
        ("checked", time(r.checked_at.as_ref(), zone)),
    ]);
    if !r.differences.is_empty() {
        out.push('\n');
        let mut table = Table::of("KIND|DESCRIPTION|FIELD|STORED QTY|REBUILT QTY|STORED|REBUILT");
        for d in &r.differences {
            table.row([
                label::<LineKind>(d.kind),
                d.description_code.clone(),
                d.field.clone(),
                d.stored_quantity.to_string(),
                d.rebuilt_quantity.to_string(),
                amount(d.stored_amount.as_ref()),
                amount(d.rebuilt_amount.as_ref()),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;
    use wardline_proto::billing::{InvoiceDifference, InvoiceLine, SlaCredits, UsageBucket};
    use wardline_proto::common::Money;

    fn usd(minor: i64) -> Option<Money> {
        Some(Money {
            currency: "USD".into(),
            minor_units: minor,
        })
    }

    fn ts(secs: i64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: secs,
            nanos: 0,
        })
    }

    fn contract() -> Contract {
        let mut c: Contract =
            serde_norway::from_str(include_str!("../../scenarios/example-contract.yaml")).unwrap();
        c.effective_from = "2026-03-01".into();
        c.contract_id = "0193c0de-0000-7000-8000-000000000001".into();
        c.tenant_id = "stmarys".into();
        c.version = 1;
        c.calls_included_per_month = 100;
        c.monthly_minimum = usd(250_000);
        c.sla_credits = Some(SlaCredits {
            per_p1_response_breach: usd(5000),
            per_p2_response_breach: None,
            cap_bps: 1000,
        });
        c.created_at = ts(1_772_323_200); // 2026-03-01T00:00:00Z
        c.created_by = "wardctl".into();
        c
    }

    #[test]
    fn amounts_show_their_currency_decimals() {
        assert_eq!(amount(usd(4500).as_ref()), "45.00");
        assert_eq!(amount(None), "-");
        assert_eq!(amount_cur(usd(-1250).as_ref()), "-12.50 USD");
        assert_eq!(pct(1250), "12.5 %");
        let yen = Money {
            currency: "JPY".into(),
            minor_units: 4500,
        };
        assert_eq!(amount_cur(Some(&yen)), "4500 JPY");
    }

    #[test]
    fn contracts_show_every_term_and_the_rate_card() {
        let c = contract();
        let d = contract_details(&c, Zone::Utc);
        for want in [
            "version:          1\n",
            "effective from:   2026-03-01\n",
            "until:            open-ended\n",
            "calls included:   100 calls a month\n",
            "overage:          rate-card price\n",
            "monthly minimum:  2500.00 USD\n",
            "after hours:      +25 % of a charged call's price\n",
            "business hours:   mon-fri:08:00-17:00\n",
            "sla credits:      50.00 per P1 response breach, at most 10 % of the subtotal\n",
            "rounding:         half-up\n",
            "created:          2026-03-01T00:00:00Z\n",
            "price per call (USD):\n",
            "TIER       P1     P2     P3     P4\n",
            "clinical   45.00  35.00  25.00  20.00\n",
            "technical  30.00  25.00  15.00  10.00\n",
        ] {
            assert!(d.contains(want), "{want:?} in\n{d}");
        }
        let row = contract_table(std::slice::from_ref(&c), Zone::Utc).render();
        assert!(
            row.lines()
                .nth(1)
                .unwrap()
                .starts_with("1        2026-03-01  -      USD  100       rate card  2500.00  25 %"),
            "{row}"
        );
        assert_eq!(
            contract_line(&c),
            "v1 from 2026-03-01, USD, 100 calls included, minimum 2500.00, +25 % after hours (mon-fri:08:00-17:00)"
        );
    }

    #[test]
    fn usage_invoices_and_charges_render() {
        let u = Usage {
            tenant_id: "lakeside".into(),
            period: "2026-03".into(),
            contract_versions: vec![1],
            calls: 3,
            by_tier_priority: vec![UsageBucket {
                tier: BillingTier::Clinical as i32,
                priority: Priority::P2 as i32,
                calls: 3,
                after_hours_calls: 1,
            }],
            after_hours_calls: 1,
            overage_calls: 3,
            amount: usd(10563),
            ..Default::default()
        };
        let t = usage_text(&u, Zone::Utc);
        assert!(t.contains("included:              0 of 0 allowed\n"), "{t}");
        assert!(t.contains("amount:                105.63 USD\n"), "{t}");
        assert!(t.contains("clinical  P2   3      1\n"), "{t}");

        let inv = Invoice {
            invoice_id: "inv-1".into(),
            tenant_id: "lakeside".into(),
            period: "2026-03".into(),
            status: InvoiceStatus::Draft as i32,
            currency: "USD".into(),
            lines: vec![
                InvoiceLine {
                    kind: LineKind::Overage as i32,
                    description_code: "overage".into(),
                    quantity: 3,
                    unit_price: usd(3250),
                    amount: usd(9750),
                    contract_version: 1,
                    ..Default::default()
                },
                InvoiceLine {
                    kind: LineKind::AfterHoursSurcharge as i32,
                    description_code: "after_hours.clinical.p2".into(),
                    tier: BillingTier::Clinical as i32,
                    priority: Priority::P2 as i32,
                    quantity: 1,
                    unit_price: usd(813),
                    amount: usd(813),
                    contract_version: 1,
                },
            ],
            subtotal: usd(10563),
            credits: usd(0),
            total: usd(10563),
            calls: 3,
            ..Default::default()
        };
        let d = invoice_details(&inv, Zone::Utc);
        assert!(
            d.contains("overage                overage                  -         -    3    32.50       97.50   1\n"),
            "{d}"
        );
        assert!(d.ends_with("total:     105.63 USD\n"), "{d}");
        assert!(!d.contains("issued:"), "{d}");
        let list = invoice_table(std::slice::from_ref(&inv), Zone::Utc).render();
        assert!(
            list.contains("2026-03  draft   3      105.63    0.00     105.63  USD  -       inv-1"),
            "{list}"
        );

        let ch = Charge {
            charge_id: "c1".into(),
            kind: LineKind::AfterHoursSurcharge as i32,
            number: "LKS-000007".into(),
            occurred_at: ts(1_772_323_200),
            priority: Priority::P2 as i32,
            after_hours: AfterHoursReason::OutsideHours as i32,
            rule_code: "after_hours".into(),
            rate: usd(3250),
            rate_bps: 2500,
            amount: usd(813),
            contract_version: 1,
            ..Default::default()
        };
        let t = charge_table(std::slice::from_ref(&ch), Zone::Utc).render();
        assert!(
            t.contains("LKS-000007  after-hours-surcharge  after_hours  P2   outside-hours  25 % of 32.50  8.13    1"),
            "{t}"
        );
        assert_eq!(charges_total(&[ch.clone(), ch]), "16.26 USD");
        assert_eq!(charges_total(&[]), "0");
    }

    #[test]
    fn rebuild_checks_show_each_difference() {
        let r = RebuildCheckResponse {
            period: "2026-02".into(),
            invoice_id: "inv-1".into(),
            status: InvoiceStatus::Issued as i32,
            matches: false,
            differences: vec![InvoiceDifference {
                kind: LineKind::Overage as i32,
                description_code: "overage".into(),
                field: "quantity".into(),
                stored_quantity: 3,
                rebuilt_quantity: 4,
                stored_amount: usd(9750),
                rebuilt_amount: usd(13000),
            }],
            stored_total: usd(9750),
            rebuilt_total: usd(13000),
            ..Default::default()
        };
        let t = rebuild_text(&r, Zone::Utc);
        assert!(t.contains("DIFFERS in 1 place(s)"), "{t}");
        assert!(t.contains("inv-1 (issued)"), "{t}");
        assert!(
            t.contains("overage  overage      quantity  3           4            97.50   130.00"),
            "{t}"
        );
    }
}
