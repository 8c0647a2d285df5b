//! Rating a month: calls and breaches in, charges and invoice lines out.
//!
//! Pure and deterministic: the same calls, breaches and contract versions
//! give the same invoice to the minor unit, whatever order the events
//! arrived in, because calls are rated in (created_at, ticket_id) order and
//! every rounding happens once per computed amount. The steps are those of
//! the `Contract` message in `billing.proto`:
//!
//! 1. per-call terms from the version in force on the call's local date;
//!    month terms (allowance, minimum, credit cap) from the version in force
//!    on the period's last local day;
//! 2. the first `included` calls are included (amount 0);
//! 3. further calls pay the overage price when set, else the rate card;
//! 4. charged calls after hours (outside business hours, closed day,
//!    holiday) pay `surcharge_bps` of their price, rounded per call;
//! 5. a top-up brings the subtotal to the monthly minimum;
//! 6. P1/P2 response breaches are credited, capped at `cap_bps` of the
//!    subtotal (a positive correction line when the cap binds);
//! 7. total = subtotal + credits, never below zero.
//!
//! Calls whose own period was already issued when they arrived ("late")
//! are billed on a later open period as ADJUSTMENT lines ("late_charge") at
//! their rate-card price plus surcharge, outside the allowance; late breaches
//! as SLA_CREDIT lines ("late_credit"), under the same cap.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::calendar::{AfterHours, Period, Week, after_hours, local_date};
use super::money::{Rounding, share_bps};

/// Billing tier of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Clinical,
    Technical,
}

impl Tier {
    /// `"clinical"` or `"technical"`.
    pub fn code(self) -> &'static str {
        match self {
            Tier::Clinical => "clinical",
            Tier::Technical => "technical",
        }
    }
}

/// One contract version's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub version: u32,
    /// Local date from which the version applies.
    pub effective_from: NaiveDate,
    pub currency: String,
    /// Price per call: `[tier][priority - 1]` (tier 0 clinical, 1 technical).
    pub rate_card: [[i64; 4]; 2],
    pub surcharge_bps: u32,
    pub week: Week,
    pub holidays: Vec<NaiveDate>,
    pub included_per_month: u32,
    pub overage_price: Option<i64>,
    pub monthly_minimum: Option<i64>,
    pub credit_p1_response: i64,
    pub credit_p2_response: i64,
    pub credit_cap_bps: u32,
    pub rounding: Rounding,
}

impl Terms {
    fn price(&self, tier: Tier, priority: u8) -> i64 {
        self.rate_card[match tier {
            Tier::Clinical => 0,
            Tier::Technical => 1,
        }][usize::from(priority.clamp(1, 4) - 1)]
    }
}

/// The version in force on `date` (versions sorted by effective_from).
pub fn in_force(versions: &[Terms], date: NaiveDate) -> Option<&Terms> {
    versions
        .iter()
        .filter(|v| v.effective_from <= date)
        .max_by_key(|v| (v.effective_from, v.version))
}

/// A rated call (from a TicketCreated event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub ticket_id: String,
    pub number: String,
    pub event_id: String,
    pub created_at: DateTime<Utc>,
    pub tier: Tier,
    /// 1..=4.
    pub priority: u8,
    pub category: i32,
    /// Billed on a later period because its own was issued when it arrived.
    pub late: bool,
}

/// A response-target breach (from an SlaBreached event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub ticket_id: String,
    pub number: String,
    pub event_id: String,
    pub detected_at: DateTime<Utc>,
    pub priority: u8,
    pub late: bool,
}

/// Kind of a line, in invoice order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LineKind {
    CallsIncluded = 1,
    Overage = 2,
    TierPrice = 3,
    AfterHoursSurcharge = 4,
    SlaCredit = 5,
    MinimumTopUp = 6,
    Adjustment = 7,
}

/// One priced component of a call or breach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub kind: LineKind,
    pub ticket_id: String,
    pub number: String,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub local_date: NaiveDate,
    pub tier: Option<Tier>,
    pub priority: u8,
    pub category: i32,
    pub after_hours: AfterHours,
    pub contract_version: u32,
    /// e.g. "rate_card.clinical.p1", "included", "overage", "after_hours", "sla_credit.p1_response".
    pub rule_code: String,
    /// Price per call, surcharge base, or credit per breach.
    pub rate: i64,
    pub rate_bps: u32,
    pub amount: i64,
    /// The invoice line it feeds.
    pub line_code: String,
}

/// One invoice line: `amount == quantity * unit_price`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub description_code: String,
    pub tier: Option<Tier>,
    pub priority: u8,
    pub quantity: u64,
    pub unit_price: i64,
    pub amount: i64,
    pub contract_version: u32,
}

/// A call that could not be rated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbilled {
    pub call: Call,
    /// "no_contract" or "not_yet_in_force".
    pub reason: &'static str,
}

/// A rated period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedPeriod {
    pub period: Period,
    pub currency: String,
    pub charges: Vec<Charge>,
    pub lines: Vec<Line>,
    pub subtotal: i64,
    pub credits: i64,
    pub total: i64,
    /// Rated calls (included, charged and late).
    pub calls: u64,
    pub included_calls: u64,
    pub overage_calls: u64,
    pub after_hours_calls: u64,
    pub allowance: u64,
    pub p1_response_breaches: u64,
    pub p2_response_breaches: u64,
    pub contract_versions: Vec<u32>,
    pub unbilled: Vec<Unbilled>,
}

/// Rates `period` for a tenant in `tz` under `versions`: the module's
/// steps, one function each.
pub fn rate_period(
    tz: Tz,
    period: Period,
    versions: &[Terms],
    calls: &[Call],
    breaches: &[Breach],
) -> RatedPeriod {
    let month_terms = in_force(versions, period.last_day());
    let mut out = RatedPeriod {
        period,
        currency: month_terms
            .or(versions.last())
            .map(|t| t.currency.clone())
            .unwrap_or_default(),
        charges: Vec::new(),
        lines: Vec::new(),
        subtotal: 0,
        credits: 0,
        total: 0,
        calls: 0,
        included_calls: 0,
        overage_calls: 0,
        after_hours_calls: 0,
        allowance: month_terms
            .map(|t| u64::from(t.included_per_month))
            .unwrap_or(0),
        p1_response_breaches: 0,
        p2_response_breaches: 0,
        contract_versions: Vec::new(),
        unbilled: Vec::new(),
    };
    rate_calls(tz, versions, calls, &mut out);
    credit_breaches(tz, versions, breaches, &mut out);
    out.lines = group_into_lines(&out.charges);
    let subtotal = top_up_to_minimum(month_terms, &mut out.lines);
    let credits = cap_credits(month_terms, subtotal, &mut out.lines);
    out.lines.sort_by(|a, b| {
        (
            a.kind,
            &a.description_code,
            a.tier,
            a.priority,
            a.contract_version,
        )
            .cmp(&(
                b.kind,
                &b.description_code,
                b.tier,
                b.priority,
                b.contract_version,
            ))
    });
    out.contract_versions.sort_unstable();
    out.subtotal = subtotal;
    out.credits = credits;
    out.total = (subtotal + credits).max(0);
    out
}

/// Steps 1-4 for every call, in (created_at, ticket_id) order: the first
/// `allowance` calls that are not late are included, the rest charged, and
/// calls with no version in force are left unbilled.
fn rate_calls(tz: Tz, versions: &[Terms], calls: &[Call], out: &mut RatedPeriod) {
    let mut calls: Vec<&Call> = calls.iter().collect();
    calls.sort_by(|a, b| (a.created_at, &a.ticket_id).cmp(&(b.created_at, &b.ticket_id)));
    for call in calls {
        let date = local_date(tz, call.created_at);
        let Some(terms) = in_force(versions, date) else {
            let reason = if versions.is_empty() {
                "no_contract"
            } else {
                "not_yet_in_force"
            };
            out.unbilled.push(Unbilled {
                call: call.clone(),
                reason,
            });
            continue;
        };
        out.calls += 1;
        if !out.contract_versions.contains(&terms.version) {
            out.contract_versions.push(terms.version);
        }
        let rated = RatedCall {
            call,
            terms,
            date,
            after_hours: after_hours(tz, call.created_at, &terms.week, &terms.holidays),
        };
        if rated.after_hours != AfterHours::No {
            out.after_hours_calls += 1;
        }
        let charge = if call.late {
            rated.late_charge()
        } else if out.included_calls < out.allowance {
            out.included_calls += 1;
            rated.included()
        } else {
            out.overage_calls += 1;
            rated.charged()
        };
        let surcharge = (charge.kind != LineKind::CallsIncluded)
            .then(|| rated.surcharge(charge.rate))
            .flatten();
        out.charges.push(charge);
        out.charges.extend(surcharge);
    }
}

/// A call with the terms in force on its local date, and whether it came
/// after hours: what each of its charges repeats.
struct RatedCall<'a> {
    call: &'a Call,
    terms: &'a Terms,
    date: NaiveDate,
    after_hours: AfterHours,
}

impl RatedCall<'_> {
    /// A charge of `rate` for this call.
    fn charge(&self, kind: LineKind, rule_code: String, rate: i64, line_code: String) -> Charge {
        let call = self.call;
        Charge {
            kind,
            ticket_id: call.ticket_id.clone(),
            number: call.number.clone(),
            event_id: call.event_id.clone(),
            occurred_at: call.created_at,
            local_date: self.date,
            tier: Some(call.tier),
            priority: call.priority,
            category: call.category,
            after_hours: self.after_hours,
            contract_version: self.terms.version,
            rule_code,
            rate,
            rate_bps: 0,
            amount: rate,
            line_code,
        }
    }

    /// `rate_card.<tier>.p<priority>`.
    fn tier_rule(&self) -> String {
        format!(
            "rate_card.{}.p{}",
            self.call.tier.code(),
            self.call.priority
        )
    }

    /// Step 2: within the allowance, amount 0.
    fn included(&self) -> Charge {
        self.charge(
            LineKind::CallsIncluded,
            "included".into(),
            0,
            "calls_included".into(),
        )
    }

    /// Step 3: past the allowance, the overage price when set, else the
    /// rate card.
    fn charged(&self) -> Charge {
        let (call, terms) = (self.call, self.terms);
        match terms.overage_price {
            Some(price) => {
                self.charge(LineKind::Overage, "overage".into(), price, "overage".into())
            }
            None => self.charge(
                LineKind::TierPrice,
                self.tier_rule(),
                terms.price(call.tier, call.priority),
                format!("tier_price.{}.p{}", call.tier.code(), call.priority),
            ),
        }
    }

    /// A late call: its rate-card price, outside the allowance.
    fn late_charge(&self) -> Charge {
        let price = self.terms.price(self.call.tier, self.call.priority);
        self.charge(
            LineKind::Adjustment,
            self.tier_rule(),
            price,
            "late_charge".into(),
        )
    }

    /// Step 4: `surcharge_bps` of a charged call's `price`, rounded per
    /// call, when it came after hours.
    fn surcharge(&self, price: i64) -> Option<Charge> {
        let (call, terms) = (self.call, self.terms);
        if self.after_hours == AfterHours::No || terms.surcharge_bps == 0 {
            return None;
        }
        let (kind, line) = if call.late {
            (LineKind::Adjustment, "late_charge".to_owned())
        } else {
            (
                LineKind::AfterHoursSurcharge,
                format!("after_hours.{}.p{}", call.tier.code(), call.priority),
            )
        };
        let mut c = self.charge(kind, "after_hours".into(), price, line);
        c.rate_bps = terms.surcharge_bps;
        c.amount = share_bps(price, terms.surcharge_bps, terms.rounding);
        Some(c)
    }
}

/// Step 6's credits, one per P1/P2 response breach under the version in
/// force on its local date (the cap comes later, on the lines).
fn credit_breaches(tz: Tz, versions: &[Terms], breaches: &[Breach], out: &mut RatedPeriod) {
    let mut breaches: Vec<&Breach> = breaches.iter().collect();
    breaches.sort_by(|a, b| (a.detected_at, &a.ticket_id).cmp(&(b.detected_at, &b.ticket_id)));
    for b in breaches {
        let date = local_date(tz, b.detected_at);
        let Some(terms) = in_force(versions, date) else {
            continue;
        };
        let (per, code) = match b.priority {
            1 => (terms.credit_p1_response, "sla_credit.p1_response"),
            2 => (terms.credit_p2_response, "sla_credit.p2_response"),
            _ => continue,
        };
        if b.priority == 1 {
            out.p1_response_breaches += 1;
        } else {
            out.p2_response_breaches += 1;
        }
        if per == 0 {
            continue;
        }
        out.charges.push(Charge {
            kind: LineKind::SlaCredit,
            ticket_id: b.ticket_id.clone(),
            number: b.number.clone(),
            event_id: b.event_id.clone(),
            occurred_at: b.detected_at,
            local_date: date,
            tier: None,
            priority: b.priority,
            category: 0,
            after_hours: AfterHours::No,
            contract_version: terms.version,
            rule_code: code.to_owned(),
            rate: -per,
            rate_bps: 0,
            amount: -per,
            line_code: if b.late {
                "late_credit".to_owned()
            } else {
                code.to_owned()
            },
        });
    }
}

/// Lines: charges with the same kind, code, tier, priority, unit price and
/// version grouped, so each line is exactly quantity x unit price.
fn group_into_lines(charges: &[Charge]) -> Vec<Line> {
    type Key = (LineKind, String, Option<Tier>, u8, i64, u32);
    let mut grouped: BTreeMap<Key, u64> = BTreeMap::new();
    for c in charges {
        let (tier, priority) = match c.kind {
            LineKind::CallsIncluded | LineKind::Overage | LineKind::Adjustment => (None, 0),
            LineKind::SlaCredit => (None, c.priority),
            _ => (c.tier, c.priority),
        };
        let unit = if c.kind == LineKind::AfterHoursSurcharge
            || (c.kind == LineKind::Adjustment && c.rate_bps > 0)
        {
            c.amount
        } else {
            c.rate
        };
        *grouped
            .entry((
                c.kind,
                c.line_code.clone(),
                tier,
                priority,
                unit,
                c.contract_version,
            ))
            .or_default() += 1;
    }
    grouped
        .into_iter()
        .map(|((kind, code, tier, priority, unit, version), qty)| Line {
            kind,
            description_code: code,
            tier,
            priority,
            quantity: qty,
            unit_price: unit,
            amount: unit * qty as i64,
            contract_version: version,
        })
        .collect()
}

/// Step 5: the subtotal of the lines that are not credits, brought up to
/// the month's minimum by a top-up line when below it. Returns the subtotal.
fn top_up_to_minimum(month_terms: Option<&Terms>, lines: &mut Vec<Line>) -> i64 {
    let subtotal: i64 = lines
        .iter()
        .filter(|l| l.kind != LineKind::SlaCredit)
        .map(|l| l.amount)
        .sum();
    let Some((min, version)) = month_terms.and_then(|t| Some((t.monthly_minimum?, t.version)))
    else {
        return subtotal;
    };
    if subtotal >= min {
        return subtotal;
    }
    lines.push(Line {
        kind: LineKind::MinimumTopUp,
        description_code: "minimum_top_up".into(),
        tier: None,
        priority: 0,
        quantity: 1,
        unit_price: min - subtotal,
        amount: min - subtotal,
        contract_version: version,
    });
    min
}

/// Step 6's cap: credits beyond `cap_bps` of `subtotal` are corrected by a
/// positive `sla_credit_cap` line. Returns the credits (zero or negative).
fn cap_credits(month_terms: Option<&Terms>, subtotal: i64, lines: &mut Vec<Line>) -> i64 {
    let credits: i64 = lines
        .iter()
        .filter(|l| l.kind == LineKind::SlaCredit)
        .map(|l| l.amount)
        .sum();
    let Some(t) = month_terms else {
        return credits;
    };
    let cap = share_bps(subtotal, t.credit_cap_bps, t.rounding);
    if -credits <= cap {
        return credits;
    }
    let correction = -credits - cap;
    lines.push(Line {
        kind: LineKind::SlaCredit,
        description_code: "sla_credit_cap".into(),
        tier: None,
        priority: 0,
        quantity: 1,
        unit_price: correction,
        amount: correction,
        contract_version: t.version,
    });
    -cap
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn tz() -> Tz {
        "America/Chicago".parse().unwrap()
    }

    fn weekdays_8_to_17() -> Week {
        let mut w: Week = [None; 7];
        for d in w.iter_mut().take(5) {
            *d = Some((8 * 60, 17 * 60));
        }
        w
    }

    /// Clinical P1..P4 $45/$35/$25/$20, technical $30/$25/$15/$10.
    fn terms(version: u32, from: &str) -> Terms {
        Terms {
            version,
            effective_from: NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap(),
            currency: "USD".into(),
            rate_card: [[4500, 3500, 2500, 2000], [3000, 2500, 1500, 1000]],
            surcharge_bps: 2500,
            week: weekdays_8_to_17(),
            holidays: vec![],
            included_per_month: 0,
            overage_price: None,
            monthly_minimum: None,
            credit_p1_response: 5000,
            credit_p2_response: 2000,
            credit_cap_bps: 1000,
            rounding: Rounding::HalfUp,
        }
    }

    /// A call at a Chicago local time in March 2026 (CST before the 8th, CDT after).
    fn call(n: u32, day: u32, hour: u32, tier: Tier, priority: u8) -> Call {
        // 02:00 on 2026-03-08 does not exist in Chicago (spring forward): use 03:00.
        let local = tz()
            .with_ymd_and_hms(2026, 3, day, hour, 0, 0)
            .earliest()
            .unwrap_or_else(|| tz().with_ymd_and_hms(2026, 3, day, hour + 1, 0, 0).unwrap());
        Call {
            ticket_id: format!("t{n:03}"),
            number: format!("STM-{n:06}"),
            event_id: format!("e{n:03}"),
            created_at: local.with_timezone(&Utc),
            tier,
            priority,
            category: 1,
            late: false,
        }
    }

    fn march() -> Period {
        Period::parse("2026-03").unwrap()
    }

    fn line<'a>(r: &'a RatedPeriod, code: &str) -> &'a Line {
        r.lines
            .iter()
            .find(|l| l.description_code == code)
            .unwrap_or_else(|| panic!("no line {code}: {:#?}", r.lines))
    }

    #[test]
    fn a_hand_computed_month() {
        // Contract: 2 calls included, rate card beyond, 25 % after hours
        // (half up), $100 minimum, credits $50 per P1 / $20 per P2 capped at 10 %.
        let mut t = terms(1, "2026-01-01");
        t.included_per_month = 2;
        t.monthly_minimum = Some(10_000);
        let calls = vec![
            call(1, 2, 9, Tier::Clinical, 1),   // Mon 09:00: included
            call(2, 2, 10, Tier::Technical, 3), // included
            call(3, 3, 22, Tier::Clinical, 1),  // Tue 22:00: $45 + 25 % = $11.25
            call(4, 7, 12, Tier::Technical, 4), // Sat: closed day: $10 + $2.50
            call(5, 9, 9, Tier::Clinical, 2),   // Mon 09:00 CDT: $35
            call(6, 9, 16, Tier::Technical, 3), // $15
        ];
        let breach = Breach {
            ticket_id: "t003".into(),
            number: "STM-000003".into(),
            event_id: "b1".into(),
            detected_at: calls[2].created_at + chrono::Duration::minutes(20),
            priority: 1,
            late: false,
        };
        let r = rate_period(tz(), march(), &[t], &calls, &[breach]);
        assert_eq!(r.calls, 6);
        assert_eq!(r.included_calls, 2);
        assert_eq!(r.overage_calls, 4);
        assert_eq!(r.after_hours_calls, 2);
        assert_eq!(line(&r, "calls_included").quantity, 2);
        assert_eq!(line(&r, "calls_included").amount, 0);
        assert_eq!(line(&r, "tier_price.clinical.p1").amount, 4500);
        assert_eq!(line(&r, "after_hours.clinical.p1").amount, 1125);
        assert_eq!(line(&r, "after_hours.technical.p4").amount, 250);
        // 4500 + 1000 + 3500 + 1500 + 1125 + 250 = 11875 >= 10000: no top-up.
        assert!(r.lines.iter().all(|l| l.kind != LineKind::MinimumTopUp));
        assert_eq!(r.subtotal, 11_875);
        // Credit 5000 capped at 10 % of 11875 = 1187.5 -> 1188 (half up).
        assert_eq!(line(&r, "sla_credit.p1_response").amount, -5000);
        assert_eq!(line(&r, "sla_credit_cap").amount, 5000 - 1188);
        assert_eq!(r.credits, -1188);
        assert_eq!(r.total, 11_875 - 1188);
        for l in &r.lines {
            assert_eq!(l.amount, l.unit_price * l.quantity as i64, "{l:?}");
        }
    }

    #[test]
    fn minimum_top_up_and_overage_price() {
        let mut t = terms(1, "2026-01-01");
        t.monthly_minimum = Some(50_000);
        t.overage_price = Some(2_200);
        let r = rate_period(
            tz(),
            march(),
            &[t],
            &[
                call(1, 2, 9, Tier::Clinical, 1),
                call(2, 2, 10, Tier::Technical, 4),
            ],
            &[],
        );
        assert_eq!(line(&r, "overage").quantity, 2);
        assert_eq!(line(&r, "overage").amount, 4_400);
        assert_eq!(line(&r, "minimum_top_up").amount, 50_000 - 4_400);
        assert_eq!(r.total, 50_000);
    }

    #[test]
    fn a_new_version_applies_from_its_local_date() {
        let v1 = terms(1, "2026-01-01");
        let mut v2 = terms(2, "2026-03-09");
        v2.rate_card[0][0] = 5_000;
        let calls = [
            call(1, 8, 23, Tier::Clinical, 1),
            call(2, 9, 1, Tier::Clinical, 1),
        ];
        let r = rate_period(tz(), march(), &[v1, v2], &calls, &[]);
        let prices: Vec<(u32, i64)> = r
            .charges
            .iter()
            .filter(|c| c.kind == LineKind::TierPrice)
            .map(|c| (c.contract_version, c.rate))
            .collect();
        assert_eq!(prices, vec![(1, 4_500), (2, 5_000)]);
        assert_eq!(r.contract_versions, vec![1, 2]);
    }

    #[test]
    fn calls_before_any_contract_are_unbilled() {
        let r = rate_period(
            tz(),
            march(),
            &[terms(1, "2026-03-10")],
            &[
                call(1, 9, 9, Tier::Clinical, 1),
                call(2, 10, 9, Tier::Clinical, 1),
            ],
            &[],
        );
        assert_eq!(r.calls, 1);
        assert_eq!(r.unbilled.len(), 1);
        assert_eq!(r.unbilled[0].reason, "not_yet_in_force");
        let r = rate_period(tz(), march(), &[], &[call(1, 9, 9, Tier::Clinical, 1)], &[]);
        assert_eq!(r.unbilled[0].reason, "no_contract");
        assert_eq!(r.total, 0);
    }

    #[test]
    fn late_calls_are_adjustments_outside_the_allowance() {
        let mut t = terms(1, "2026-01-01");
        t.included_per_month = 10;
        let mut late = call(1, 3, 22, Tier::Clinical, 1);
        late.late = true;
        let r = rate_period(tz(), march(), &[t], &[late], &[]);
        let l = line(&r, "late_charge");
        assert_eq!(l.kind, LineKind::Adjustment);
        assert_eq!(r.subtotal, 4_500 + 1_125);
        assert_eq!(r.included_calls, 0);
    }

    #[test]
    fn arrival_order_never_matters() {
        let mut t = terms(1, "2026-01-01");
        t.included_per_month = 3;
        let calls: Vec<Call> = (1..=8)
            .map(|i| {
                call(
                    i,
                    2 + i % 5,
                    6 + i * 2,
                    if i % 2 == 0 {
                        Tier::Clinical
                    } else {
                        Tier::Technical
                    },
                    (1 + i % 4) as u8,
                )
            })
            .collect();
        let a = rate_period(tz(), march(), std::slice::from_ref(&t), &calls, &[]);
        let mut reversed = calls.clone();
        reversed.reverse();
        let b = rate_period(tz(), march(), &[t], &reversed, &[]);
        assert_eq!(a, b);
    }

    proptest! {
        #[test]
        fn invariants(
            spec in proptest::collection::vec((1u32..28, 0u32..24, any::<bool>(), 1u8..5, any::<bool>()), 0..40),
            included in 0u32..10,
            bps in 0u32..10_000,
            cap in 0u32..10_000,
            minimum in proptest::option::of(0i64..100_000),
            rounding in 0usize..4,
        ) {
            let mut t = terms(1, "2026-01-01");
            t.included_per_month = included;
            t.surcharge_bps = bps;
            t.credit_cap_bps = cap;
            t.monthly_minimum = minimum;
            t.rounding = [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down, Rounding::Up][rounding];
            let calls: Vec<Call> = spec.iter().enumerate().map(|(i, (d, h, clinical, p, _))| call(i as u32, *d, *h, if *clinical { Tier::Clinical } else { Tier::Technical }, *p)).collect();
            let breaches: Vec<Breach> = spec.iter().enumerate().filter(|(_, s)| s.4 && s.3 <= 2).map(|(i, s)| Breach {
                ticket_id: format!("t{i:03}"), number: String::new(), event_id: format!("b{i}"),
                detected_at: calls[i].created_at, priority: s.3, late: false,
            }).collect();
            let r = rate_period(tz(), march(), &[t], &calls, &breaches);
            for l in &r.lines {
                prop_assert_eq!(l.amount, l.unit_price * l.quantity as i64);
            }
            let non_credit: i64 = r.lines.iter().filter(|l| l.kind != LineKind::SlaCredit).map(|l| l.amount).sum();
            let credit: i64 = r.lines.iter().filter(|l| l.kind == LineKind::SlaCredit).map(|l| l.amount).sum();
            prop_assert_eq!(non_credit, r.subtotal);
            prop_assert_eq!(credit, r.credits);
            prop_assert!(r.credits <= 0);
            prop_assert!(r.total >= 0);
            prop_assert_eq!(r.total, (r.subtotal + r.credits).max(0));
            if let Some(m) = minimum { prop_assert!(r.subtotal >= m); }
            prop_assert_eq!(r.included_calls, (calls.len() as u64).min(u64::from(included)));
            prop_assert_eq!(r.calls, calls.len() as u64);
        }
    }
}
