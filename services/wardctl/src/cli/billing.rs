//! The command line of billing's commands (contracts, usage, charges,
//! unbilled calls, invoices) and the parsers of their compact values:
//! amounts `45.00`, percentages `25` or `12.5`, prices `clinical.p1=45.00`,
//! business hours `mon-fri:08:00-17:00`, dates `2026-03-01`, periods
//! `2026-03`.
//!
//! Money is typed and printed in major units with two decimals and turned
//! into integer minor units by string handling alone: `45.00` is 4500,
//! exactly; no floating point ever touches an amount. What wardctl prints
//! for these values is what they parse, so output can be pasted back.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use wardline_proto::billing::{
    BillingTier, BusinessHours, Contract, DayOfWeek as BillingDay, ExportFormat, InvoiceStatus,
    LineKind, RoundingRule, SlaCredits, TierPrice,
};
use wardline_proto::common::{Money, Priority};

use super::PriorityArg;
use super::routing::{day_name, parse_day};

/// The largest amount billing accepts in a contract, in minor units.
pub const MAX_AMOUNT_MINOR: i64 = 10_000_000_000;

value_enum!(
    /// Billing tier of a call.
    TierArg => BillingTier {
        Clinical => Clinical,
        Technical => Technical,
    }
);

value_enum!(
    /// How a fraction of a cent is rounded.
    RoundingArg => RoundingRule {
        HalfUp => HalfUp,
        HalfEven => HalfEven,
        Down => Down,
        Up => Up,
    }
);

value_enum!(
    /// File format of an exported invoice.
    ExportFormatArg => ExportFormat {
        Csv => Csv,
        Json => Json,
    }
);

value_enum!(
    /// Status of an invoice.
    InvoiceStatusArg => InvoiceStatus {
        Draft => Draft,
        Issued => Issued,
    }
);

value_enum!(
    /// Kind of a charge or invoice line.
    LineKindArg => LineKind {
        CallsIncluded => CallsIncluded,
        Overage => Overage,
        TierPrice => TierPrice,
        AfterHoursSurcharge => AfterHoursSurcharge,
        SlaCredit => SlaCredit,
        MinimumTopUp => MinimumTopUp,
        Adjustment => Adjustment,
    }
);

/// `wardctl contract ...`.
#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Add a version to --tenant's contract (the first call creates the
    /// contract). Versions never change once created.
    Create(Box<CreateContractArgs>),
    /// Show the version in force now, or --version N.
    #[command(disable_version_flag = true)]
    Get {
        /// This version instead of the one in force now.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
    },
    /// Every version of --tenant's contract, newest first.
    List,
}

/// `wardctl contract create`.
#[derive(Debug, Args)]
pub struct CreateContractArgs {
    /// Local date in the tenant's zone from which the version applies,
    /// YYYY-MM-DD. A first version may start on any date not in an issued
    /// period; a later one must start after today and after the latest.
    #[arg(long, value_parser = parse_date)]
    pub effective_from: String,
    /// ISO 4217 currency of every amount (amounts are typed with two decimals).
    #[arg(long, default_value = "USD", value_parser = parse_currency)]
    pub currency: String,
    /// Start from the standard example: clinical P1-P4 45.00/35.00/25.00/20.00,
    /// technical 30.00/25.00/15.00/10.00, mon-fri:08:00-17:00, 25 % after
    /// hours, half-up; any other flag given replaces that part.
    #[arg(long)]
    pub example: bool,
    /// Price per call, TIER.PRIORITY=AMOUNT, e.g. clinical.p1=45.00 (all 8
    /// combinations unless --example; repeatable).
    #[arg(long = "price", value_parser = parse_price)]
    pub prices: Vec<PriceArg>,
    /// After-hours surcharge in percent of a charged call's price, e.g. 25 or 12.5.
    #[arg(long, value_parser = parse_surcharge_pct)]
    pub after_hours_pct: Option<u32>,
    /// Business hours in the tenant's zone, DAYS:HH:MM-HH:MM, e.g.
    /// mon-fri:08:00-17:00 or sat,sun:09:00-13:00; a day without hours is
    /// after hours all day (repeatable; replaces the example's hours).
    #[arg(long = "hours", value_parser = parse_hours)]
    pub hours: Vec<HoursArg>,
    /// A local date that is after hours all day, YYYY-MM-DD (repeatable).
    #[arg(long = "holiday", value_parser = parse_date)]
    pub holidays: Vec<String>,
    /// Calls per calendar month that are not charged.
    #[arg(long)]
    pub included: Option<u32>,
    /// Flat price of each call beyond the allowance (default: its rate-card price).
    #[arg(long, value_parser = parse_money)]
    pub overage: Option<i64>,
    /// Least amount billed for a month before credits.
    #[arg(long, value_parser = parse_money)]
    pub minimum: Option<i64>,
    /// Credit per P1 ticket whose response target was breached.
    #[arg(long, value_parser = parse_money)]
    pub credit_p1: Option<i64>,
    /// Credit per P2 ticket whose response target was breached.
    #[arg(long, value_parser = parse_money)]
    pub credit_p2: Option<i64>,
    /// Credits of one invoice never exceed this percentage of its subtotal
    /// (required with --credit-p1/--credit-p2: 0 means no credits).
    #[arg(long, value_parser = parse_cap_pct)]
    pub credit_cap_pct: Option<u32>,
    /// How fractions of a cent are rounded (default half-up).
    #[arg(long, value_enum)]
    pub rounding: Option<RoundingArg>,
    /// The latest version you have seen (0, the default, when creating the
    /// first); ABORTED when another version was added meanwhile.
    #[arg(long, default_value_t = 0)]
    pub expected_latest_version: u32,
}

/// `wardctl usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Period YYYY-MM in the tenant's zone (default: the current one).
    #[arg(long, value_parser = parse_period)]
    pub period: Option<String>,
}

/// `wardctl charges`.
#[derive(Debug, Args)]
pub struct ChargesArgs {
    /// Period YYYY-MM in the tenant's zone (default: the current one).
    #[arg(long, value_parser = parse_period)]
    pub period: Option<String>,
    /// Only this ticket's (id or number, e.g. STM-000042).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Only these kinds (repeatable or comma-separated).
    #[arg(long = "kind", value_enum, value_delimiter = ',')]
    pub kinds: Vec<LineKindArg>,
    /// At most this many charges (pages are followed until reached).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl unbilled`.
#[derive(Debug, Args)]
pub struct UnbilledArgs {
    /// At most this many calls (pages are followed until reached).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl invoice ...`.
#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// The draft of a period, computed from the charges as of now.
    Draft {
        /// Period YYYY-MM (default: the current one).
        #[arg(long, value_parser = parse_period)]
        period: Option<String>,
    },
    /// --tenant's invoices, newest period first (without lines).
    List(ListInvoicesArgs),
    /// Show an invoice with its lines.
    Get {
        /// Invoice id, or a period YYYY-MM.
        invoice: String,
    },
    /// Freeze a period's draft as an issued invoice (the period must have
    /// ended in the tenant's zone; an issued invoice never changes).
    Issue {
        /// Period YYYY-MM.
        #[arg(long, value_parser = parse_period)]
        period: String,
    },
    /// Write an invoice as a CSV or JSON file.
    Export {
        /// Invoice id, or a period YYYY-MM.
        invoice: String,
        /// File format.
        #[arg(long, value_enum)]
        format: ExportFormatArg,
        /// Write to this file (or into this directory, under billing's
        /// suggested name) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Recompute a period from the rated events alone and compare it with
    /// the stored invoice (issued) or the current draft; exits 1 on a difference.
    RebuildCheck {
        /// Period YYYY-MM.
        #[arg(long, value_parser = parse_period)]
        period: String,
    },
}

/// `wardctl invoice list`.
#[derive(Debug, Args)]
pub struct ListInvoicesArgs {
    /// Only these statuses (repeatable or comma-separated).
    #[arg(long = "status", value_enum, value_delimiter = ',')]
    pub statuses: Vec<InvoiceStatusArg>,
    /// Only periods from this one on (YYYY-MM, inclusive).
    #[arg(long, value_parser = parse_period)]
    pub from: Option<String>,
    /// Only periods up to this one (YYYY-MM, inclusive).
    #[arg(long, value_parser = parse_period)]
    pub to: Option<String>,
    /// At most this many invoices (pages are followed until reached).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// A price of the rate card, `TIER.PRIORITY=AMOUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceArg {
    /// Tier.
    pub tier: TierArg,
    /// Priority.
    pub priority: PriorityArg,
    /// Price per call in minor units.
    pub minor_units: i64,
}

/// Business hours of some weekdays, `DAYS:HH:MM-HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoursArg {
    /// The weekdays, Monday first, each once.
    pub days: Vec<BillingDay>,
    /// Opening time `HH:MM`, inclusive.
    pub open: String,
    /// Closing time `HH:MM` or `24:00`, exclusive.
    pub close: String,
}

/// Reads a non-negative decimal with at most two decimals as hundredths:
/// `45` → 4500, `45.5` → 4550, `0.07` → 7. Digits only (no sign, no
/// thousands separators, no exponent); `None` for anything else.
fn parse_hundredths(s: &str) -> Option<i64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    // 15 digits times 100 still fits an i64 with room to spare.
    if !digits(whole) || whole.len() > 15 {
        return None;
    }
    let cents = match frac {
        None => 0,
        Some(f) if digits(f) && f.len() <= 2 => {
            let n: i64 = f.parse().ok()?;
            if f.len() == 1 { n * 10 } else { n }
        }
        Some(_) => return None,
    };
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

/// Parses an amount in major units with at most two decimals (`45`, `45.5`,
/// `45.00`) into minor units, exactly; never negative, at most
/// 100000000.00 (billing's limit).
pub fn parse_money(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let Some(minor) = parse_hundredths(t) else {
        let reason = match t.split_once('.') {
            Some((_, f)) if f.len() > 2 && f.bytes().all(|b| b.is_ascii_digit()) => {
                "amounts are exact to the cent: at most two decimals"
            }
            _ if t.starts_with('-') => "amounts here are never negative",
            _ => "expected digits with an optional . and two decimals, e.g. 45.00",
        };
        return Err(format!("{t:?}: {reason}"));
    };
    if minor > MAX_AMOUNT_MINOR {
        return Err(format!("{t:?}: at most {}", format_money(MAX_AMOUNT_MINOR)));
    }
    Ok(minor)
}

/// Minor units as major units with two decimals: 4500 → `45.00`,
/// -1250 → `-12.50` (what [`parse_money`] reads back, for non-negative ones).
pub fn format_money(minor_units: i64) -> String {
    let sign = if minor_units < 0 { "-" } else { "" };
    let abs = minor_units.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses a percentage with at most two decimals into basis points:
/// `25` → 2500, `12.5` → 1250, `0.01` → 1; at most `max_bps`.
pub fn parse_pct(s: &str, max_bps: u32) -> Result<u32, String> {
    let t = s.trim().trim_end_matches('%').trim_end();
    let bps = parse_hundredths(t).ok_or_else(|| {
        format!("{t:?}: expected a percentage with at most two decimals, e.g. 25 or 12.5")
    })?;
    match u32::try_from(bps) {
        Ok(b) if b <= max_bps => Ok(b),
        _ => Err(format!("{t:?}: at most {} %", format_bps(max_bps))),
    }
}

/// Basis points as a percentage without trailing zeros: 2500 → `25`,
/// 1250 → `12.5`, 1 → `0.01` (what [`parse_pct`] reads back).
pub fn format_bps(bps: u32) -> String {
    let (whole, frac) = (bps / 100, bps % 100);
    match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

/// `--after-hours-pct`: 0-1000 %.
pub fn parse_surcharge_pct(s: &str) -> Result<u32, String> {
    parse_pct(s, 100_000)
}

/// `--credit-cap-pct`: 0-100 %.
pub fn parse_cap_pct(s: &str) -> Result<u32, String> {
    parse_pct(s, 10_000)
}

/// An ISO 4217 code, any case in, upper case out.
pub fn parse_currency(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.len() == 3 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(t.to_ascii_uppercase())
    } else {
        Err(format!("{t:?}: an ISO 4217 code such as USD"))
    }
}

/// A date `YYYY-MM-DD` (exactly that form, and a real day).
pub fn parse_date(s: &str) -> Result<String, String> {
    let t = s.trim();
    match chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        Ok(d) if t.len() == 10 => Ok(d.format("%Y-%m-%d").to_string()),
        _ => Err(format!("{t:?}: a date YYYY-MM-DD, e.g. 2026-03-01")),
    }
}

/// A period `YYYY-MM`.
pub fn parse_period(s: &str) -> Result<String, String> {
    let t = s.trim();
    let ok = t.len() == 7
        && t.as_bytes()[4] == b'-'
        && t[..4].bytes().all(|b| b.is_ascii_digit())
        && t[5..].bytes().all(|b| b.is_ascii_digit())
        && (1..=12).contains(&t[5..].parse::<u32>().unwrap_or(0))
        && t[..4] != *"0000";
    if ok {
        Ok(t.to_owned())
    } else {
        Err(format!("{t:?}: a period YYYY-MM, e.g. 2026-03"))
    }
}

/// True when `s` reads as a period (so `invoice get 2026-03` means that
/// period's invoice, not an id).
pub fn is_period(s: &str) -> bool {
    parse_period(s).is_ok()
}

/// Parses `TIER.PRIORITY=AMOUNT`, e.g. `clinical.p1=45.00`.
pub fn parse_price(s: &str) -> Result<PriceArg, String> {
    let usage = || format!("expected TIER.PRIORITY=AMOUNT, e.g. clinical.p1=45.00; got {s:?}");
    let (key, amount) = s.split_once('=').ok_or_else(usage)?;
    let (tier, priority) = key.trim().split_once('.').ok_or_else(usage)?;
    let tier = TierArg::from_str(tier.trim(), true).map_err(|_| {
        format!(
            "unknown tier {:?} in {s:?} (clinical or technical)",
            tier.trim()
        )
    })?;
    let priority = PriorityArg::from_str(priority.trim(), true).map_err(|_| {
        format!(
            "unknown priority {:?} in {s:?} (p1, p2, p3 or p4)",
            priority.trim()
        )
    })?;
    Ok(PriceArg {
        tier,
        priority,
        minor_units: parse_money(amount)?,
    })
}

/// `HH:MM` (or `24:00` when `end`) as minutes after midnight.
fn clock(s: &str, end: bool) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(24 * 60),
        (h, m) if h < 24 && m < 60 => Some(h * 60 + m),
        _ => None,
    }
}

fn billing_day(s: &str, whole: &str) -> Result<BillingDay, String> {
    parse_day(s)
        .and_then(|d| BillingDay::try_from(d as i32).ok())
        .ok_or_else(|| {
            format!(
                "unknown day {:?} in {whole:?} (mon, tue, wed, thu, fri, sat, sun)",
                s.trim()
            )
        })
}

/// Parses `DAYS:HH:MM-HH:MM`: days as `mon`, a range `mon-fri` (Monday
/// first, no wrapping) or a list `sat,sun` / `mon-wed,fri`; times in the
/// tenant's zone, the close after the open (`24:00` for midnight).
pub fn parse_hours(s: &str) -> Result<HoursArg, String> {
    let usage = || {
        format!("expected DAYS:HH:MM-HH:MM, e.g. mon-fri:08:00-17:00 or sat:09:00-13:00; got {s:?}")
    };
    let (days_part, times) = s.split_once(':').ok_or_else(usage)?;
    let mut days: Vec<BillingDay> = Vec::new();
    for item in days_part.split(',') {
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (billing_day(a, s)?, billing_day(b, s)?),
            None => {
                let d = billing_day(item, s)?;
                (d, d)
            }
        };
        if to < from {
            return Err(format!(
                "{:?} in {s:?} runs backwards: days go mon..sun (write fri-sun,mon)",
                item.trim()
            ));
        }
        for n in from as i32..=to as i32 {
            let d = BillingDay::try_from(n).map_err(|_| usage())?;
            if days.contains(&d) {
                return Err(format!("{s:?} names {} twice", bill_day_name(d)));
            }
            days.push(d);
        }
    }
    days.sort();
    let (open, close) = times.split_once('-').ok_or_else(usage)?;
    let (o, c) = (
        clock(open, false).ok_or_else(usage)?,
        clock(close, true).ok_or_else(usage)?,
    );
    if c <= o {
        return Err(format!(
            "{s:?}: the close must be after the open on the same day (24:00 for midnight)"
        ));
    }
    Ok(HoursArg {
        days,
        open: open.trim().to_owned(),
        close: close.trim().to_owned(),
    })
}

/// The short name of a billing weekday (`mon` .. `sun`).
pub fn bill_day_name(d: BillingDay) -> &'static str {
    wardline_proto::routing::DayOfWeek::try_from(d as i32)
        .map(day_name)
        .unwrap_or("-")
}

/// Business hours the way `--hours` reads them, consecutive days with the
/// same hours joined: `mon-fri:08:00-17:00`, `sat:09:00-13:00`.
pub fn format_hours(hours: &[BusinessHours]) -> Vec<String> {
    let mut sorted: Vec<&BusinessHours> = hours.iter().collect();
    sorted.sort_by_key(|h| h.day);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        let mut j = i + 1;
        while j < sorted.len()
            && sorted[j].day == last.day + 1
            && sorted[j].open == first.open
            && sorted[j].close == first.close
        {
            last = sorted[j];
            j += 1;
        }
        let name = |d: i32| BillingDay::try_from(d).map_or("?", bill_day_name);
        let days = if first.day == last.day {
            name(first.day).to_owned()
        } else {
            format!("{}-{}", name(first.day), name(last.day))
        };
        out.push(format!("{days}:{}-{}", first.open, first.close));
        i = j;
    }
    out
}

/// Prices of the standard example rate card in minor units, `[tier][priority]`
/// (clinical, technical; P1..P4). The same card as billing's own example.
pub const EXAMPLE_PRICES: [[i64; 4]; 2] = [[4500, 3500, 2500, 2000], [3000, 2500, 1500, 1000]];

/// Surcharge of the example contract (25 %).
pub const EXAMPLE_SURCHARGE_BPS: u32 = 2500;

const TIERS: [TierArg; 2] = [TierArg::Clinical, TierArg::Technical];
const PRIORITIES: [PriorityArg; 4] = [
    PriorityArg::P1,
    PriorityArg::P2,
    PriorityArg::P3,
    PriorityArg::P4,
];

fn money(currency: &str, minor_units: i64) -> Option<Money> {
    Some(Money {
        currency: currency.to_owned(),
        minor_units,
    })
}

/// The standard example contract: the example rate card, weekdays
/// 08:00-17:00, 25 % after hours, half-up rounding, nothing included.
pub fn example_contract(currency: &str, effective_from: &str) -> Contract {
    let mut rate_card = Vec::new();
    for (t, tier) in TIERS.iter().enumerate() {
        for (p, priority) in PRIORITIES.iter().enumerate() {
            rate_card.push(TierPrice {
                tier: tier.wire(),
                priority: priority.wire(),
                price_per_call: money(currency, EXAMPLE_PRICES[t][p]),
            });
        }
    }
    Contract {
        effective_from: effective_from.to_owned(),
        currency: currency.to_owned(),
        rate_card,
        after_hours_surcharge_bps: EXAMPLE_SURCHARGE_BPS,
        business_hours: (BillingDay::Monday as i32..=BillingDay::Friday as i32)
            .map(|day| BusinessHours {
                day,
                open: "08:00".into(),
                close: "17:00".into(),
            })
            .collect(),
        rounding: RoundingRule::HalfUp as i32,
        ..Default::default()
    }
}

/// The contract version `contract create` sends, and warnings worth
/// printing; an error names the flag at fault.
pub fn contract_from_args(a: &CreateContractArgs) -> Result<(Contract, Vec<String>), String> {
    let cur = a.currency.as_str();
    let mut c = if a.example {
        example_contract(cur, &a.effective_from)
    } else {
        Contract {
            effective_from: a.effective_from.clone(),
            currency: cur.to_owned(),
            rounding: RoundingRule::HalfUp as i32,
            ..Default::default()
        }
    };
    let mut warnings = Vec::new();

    // Prices: each given once; the example's are replaced one by one.
    for (i, p) in a.prices.iter().enumerate() {
        if a.prices[..i]
            .iter()
            .any(|q| (q.tier, q.priority) == (p.tier, p.priority))
        {
            return Err(format!(
                "--price {} given twice",
                price_key(p.tier.wire(), p.priority.wire())
            ));
        }
        let entry = TierPrice {
            tier: p.tier.wire(),
            priority: p.priority.wire(),
            price_per_call: money(cur, p.minor_units),
        };
        match c
            .rate_card
            .iter_mut()
            .find(|t| (t.tier, t.priority) == (entry.tier, entry.priority))
        {
            Some(t) => *t = entry,
            None => c.rate_card.push(entry),
        }
    }
    let missing: Vec<String> = TIERS
        .iter()
        .flat_map(|t| PRIORITIES.iter().map(move |p| (t.wire(), p.wire())))
        .filter(|(t, p)| !c.rate_card.iter().any(|x| (x.tier, x.priority) == (*t, *p)))
        .map(|(t, p)| price_key(t, p))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the rate card needs all 8 prices: missing --price {} (or start from --example)",
            missing.join(", ")
        ));
    }
    c.rate_card.sort_by_key(|t| (t.tier, t.priority));

    if let Some(bps) = a.after_hours_pct {
        c.after_hours_surcharge_bps = bps;
    }
    if !a.hours.is_empty() {
        let mut week: Vec<BusinessHours> = Vec::new();
        for h in &a.hours {
            for d in &h.days {
                if week.iter().any(|w| w.day == *d as i32) {
                    return Err(format!(
                        "--hours gives {} twice (one opening per day)",
                        bill_day_name(*d)
                    ));
                }
                week.push(BusinessHours {
                    day: *d as i32,
                    open: h.open.clone(),
                    close: h.close.clone(),
                });
            }
        }
        week.sort_by_key(|w| w.day);
        c.business_hours = week;
    }
    if c.after_hours_surcharge_bps > 0 && c.business_hours.is_empty() {
        warnings.push(format!(
            "no business hours: every call carries the {} % after-hours surcharge (give --hours mon-fri:08:00-17:00)",
            format_bps(c.after_hours_surcharge_bps)
        ));
    }
    let mut holidays = a.holidays.clone();
    holidays.sort();
    holidays.dedup();
    c.holidays = holidays;
    if let Some(n) = a.included {
        c.calls_included_per_month = n;
    }
    c.overage_price_per_call = a.overage.and_then(|m| money(cur, m));
    c.monthly_minimum = a.minimum.and_then(|m| money(cur, m));
    if a.credit_p1.is_some() || a.credit_p2.is_some() || a.credit_cap_pct.is_some() {
        if a.credit_cap_pct.is_none() {
            return Err(
                "--credit-p1/--credit-p2 need --credit-cap-pct (the largest share of an invoice's subtotal credited; 0 would mean no credits)"
                    .into(),
            );
        }
        c.sla_credits = Some(SlaCredits {
            per_p1_response_breach: a.credit_p1.and_then(|m| money(cur, m)),
            per_p2_response_breach: a.credit_p2.and_then(|m| money(cur, m)),
            cap_bps: a.credit_cap_pct.unwrap_or(0),
        });
    }
    if let Some(r) = a.rounding {
        c.rounding = r.wire();
    }
    Ok((c, warnings))
}

/// `clinical.p1`: the key of a price as `--price` reads it.
pub fn price_key(tier: i32, priority: i32) -> String {
    let tier = BillingTier::try_from(tier)
        .ok()
        .filter(|t| *t != BillingTier::Unspecified)
        .map_or("?".to_owned(), |t| {
            t.as_str_name()
                .trim_start_matches("BILLING_TIER_")
                .to_ascii_lowercase()
        });
    let priority = Priority::try_from(priority)
        .ok()
        .filter(|p| *p != Priority::Unspecified)
        .map_or("?".to_owned(), |p| {
            p.as_str_name()
                .trim_start_matches("PRIORITY_")
                .to_ascii_lowercase()
        });
    format!("{tier}.{priority}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::render;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
    }

    #[test]
    fn money_is_parsed_exactly_from_the_string() {
        for (typed, minor) in [
            ("45.00", 4500),
            ("45", 4500),
            ("45.5", 4550),
            ("0.07", 7),
            ("0.1", 10),
            ("0", 0),
            (" 12.34 ", 1234),
            ("0.29", 29),  // 0.29 * 100 is 28.999... in binary floating point
            ("1.15", 115), // and 114.999...
            ("4.35", 435), // and 434.999...
            ("100000000.00", 10_000_000_000),
            ("007.10", 710),
        ] {
            assert_eq!(parse_money(typed), Ok(minor), "{typed}");
        }
        for bad in [
            "",
            ".",
            "45.",
            ".5",
            "45.005",
            "-1",
            "+1",
            "1,000.00",
            "1e3",
            "$45",
            "45 USD",
            "4 5",
            "NaN",
            "100000000.01",
            "999999999999999999999",
        ] {
            assert!(parse_money(bad).is_err(), "{bad:?} must be refused");
        }
        let e = parse_money("45.005").unwrap_err();
        assert!(e.contains("two decimals"), "{e}");
        assert!(parse_money("-5").unwrap_err().contains("never negative"));
    }

    #[test]
    fn money_prints_with_two_decimals_and_reads_back() {
        assert_eq!(format_money(4500), "45.00");
        assert_eq!(format_money(7), "0.07");
        assert_eq!(format_money(0), "0.00");
        assert_eq!(format_money(-1250), "-12.50");
        assert_eq!(format_money(-5), "-0.05");
        assert_eq!(format_money(i64::MIN), "-92233720368547758.08");
        for m in [0, 1, 9, 10, 99, 100, 101, 4500, 8125, 10_000_000_000] {
            assert_eq!(parse_money(&format_money(m)), Ok(m), "{m}");
        }
    }

    #[test]
    fn percentages_are_basis_points() {
        assert_eq!(parse_surcharge_pct("25"), Ok(2500));
        assert_eq!(parse_surcharge_pct("12.5"), Ok(1250));
        assert_eq!(parse_surcharge_pct("0.01"), Ok(1));
        assert_eq!(parse_surcharge_pct("25%"), Ok(2500));
        assert_eq!(parse_surcharge_pct("1000"), Ok(100_000));
        assert!(parse_surcharge_pct("1000.01").is_err());
        assert_eq!(parse_cap_pct("100"), Ok(10_000));
        assert!(parse_cap_pct("100.5").is_err());
        assert!(parse_cap_pct("0.001").is_err());
        assert!(parse_cap_pct("-1").is_err());
        for bps in [0, 1, 10, 99, 100, 1250, 2500, 10_000, 100_000] {
            assert_eq!(parse_pct(&format_bps(bps), 100_000), Ok(bps), "{bps}");
        }
        assert_eq!(format_bps(2500), "25");
        assert_eq!(format_bps(1250), "12.5");
        assert_eq!(format_bps(1), "0.01");
    }

    #[test]
    fn prices_are_tier_dot_priority_equals_amount() {
        assert_eq!(
            parse_price("clinical.p1=45.00"),
            Ok(PriceArg {
                tier: TierArg::Clinical,
                priority: PriorityArg::P1,
                minor_units: 4500
            })
        );
        assert_eq!(
            parse_price("Technical.P4 = 9.5").unwrap(),
            PriceArg {
                tier: TierArg::Technical,
                priority: PriorityArg::P4,
                minor_units: 950
            }
        );
        for bad in [
            "clinical.p1",
            "clinical=45",
            "surgical.p1=45",
            "clinical.p5=45",
            "clinical.p1=45.001",
            "clinical.p1=-1",
        ] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
        assert_eq!(price_key(1, 1), "clinical.p1");
        assert_eq!(price_key(2, 4), "technical.p4");
    }

    #[test]
    fn hours_take_days_ranges_and_lists() {
        let h = parse_hours("mon-fri:08:00-17:00").unwrap();
        assert_eq!(
            h.days,
            vec![
                BillingDay::Monday,
                BillingDay::Tuesday,
                BillingDay::Wednesday,
                BillingDay::Thursday,
                BillingDay::Friday
            ]
        );
        assert_eq!((h.open.as_str(), h.close.as_str()), ("08:00", "17:00"));
        let h = parse_hours("sun,sat:09:00-24:00").unwrap();
        assert_eq!(h.days, vec![BillingDay::Saturday, BillingDay::Sunday]);
        assert_eq!(
            parse_hours("mon-wed,fri:07:30-19:00").unwrap().days.len(),
            4
        );
        for bad in [
            "mon-fri",
            "mon-fri:08:00",
            "fri-mon:08:00-17:00",
            "mon,mon:08:00-17:00",
            "mon:17:00-08:00",
            "mon:08:00-08:00",
            "mon:8:00-17:00",
            "mon:24:00-24:00",
            "someday:08:00-17:00",
            "mon:08:00-24:01",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hours_print_as_they_are_typed() {
        let c = example_contract("USD", "2026-01-01");
        assert_eq!(format_hours(&c.business_hours), vec!["mon-fri:08:00-17:00"]);
        let mut hours = c.business_hours.clone();
        hours.push(BusinessHours {
            day: BillingDay::Saturday as i32,
            open: "09:00".into(),
            close: "13:00".into(),
        });
        hours[2].close = "12:00".into();
        let printed = format_hours(&hours);
        assert_eq!(
            printed,
            vec![
                "mon-tue:08:00-17:00",
                "wed:08:00-12:00",
                "thu-fri:08:00-17:00",
                "sat:09:00-13:00"
            ]
        );
        for p in printed {
            assert!(parse_hours(&p).is_ok(), "{p}");
        }
    }

    #[test]
    fn dates_and_periods_are_strict() {
        assert_eq!(parse_date("2026-03-01"), Ok("2026-03-01".into()));
        for bad in ["2026-3-1", "2026-02-30", "01/03/2026", "2026-03-01T00:00"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_period("2026-03"), Ok("2026-03".into()));
        for bad in [
            "2026-3",
            "2026-13",
            "2026-00",
            "26-03",
            "2026-03-01",
            "0000-01",
        ] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
        assert!(is_period("2026-12") && !is_period("0193a0e1-0000-7000"));
        assert_eq!(parse_currency("usd"), Ok("USD".into()));
        assert!(parse_currency("US").is_err() && parse_currency("U$D").is_err());
    }

    fn create(extra: &[&str]) -> Result<CreateContractArgs, clap::Error> {
        let mut v = vec![
            "--tenant",
            "stmarys",
            "contract",
            "create",
            "--effective-from",
            "2026-03-01",
        ];
        v.extend_from_slice(extra);
        match parse(&v)?.command {
            Command::Contract(ContractCommand::Create(a)) => Ok(*a),
            other => panic!("not contract create: {other:?}"),
        }
    }

    #[test]
    fn the_example_flag_fills_the_rate_card_and_flags_replace_parts() {
        let a = create(&[
            "--example",
            "--price",
            "clinical.p1=50.00",
            "--included",
            "100",
            "--overage",
            "32.50",
            "--minimum",
            "2500",
            "--credit-p1",
            "50",
            "--credit-cap-pct",
            "10",
            "--holiday",
            "2026-12-25",
            "--rounding",
            "half-even",
        ])
        .unwrap();
        let (c, warnings) = contract_from_args(&a).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // Billing accepts what wardctl builds.
        wardline_billing::contract::terms_from_proto(&c, 1).unwrap();
        assert_eq!(c.rate_card.len(), 8);
        let price = |t: TierArg, p: PriorityArg| {
            c.rate_card
                .iter()
                .find(|x| x.tier == t.wire() && x.priority == p.wire())
                .and_then(|x| x.price_per_call.clone())
                .unwrap()
        };
        assert_eq!(price(TierArg::Clinical, PriorityArg::P1).minor_units, 5000);
        assert_eq!(price(TierArg::Technical, PriorityArg::P4).minor_units, 1000);
        assert_eq!(price(TierArg::Technical, PriorityArg::P4).currency, "USD");
        assert_eq!(c.calls_included_per_month, 100);
        assert_eq!(c.overage_price_per_call.unwrap().minor_units, 3250);
        assert_eq!(c.monthly_minimum.unwrap().minor_units, 250_000);
        let credits = c.sla_credits.unwrap();
        assert_eq!(credits.per_p1_response_breach.unwrap().minor_units, 5000);
        assert_eq!(credits.per_p2_response_breach, None);
        assert_eq!(credits.cap_bps, 1000);
        assert_eq!(c.after_hours_surcharge_bps, 2500);
        assert_eq!(c.business_hours.len(), 5);
        assert_eq!(c.holidays, vec!["2026-12-25".to_owned()]);
        assert_eq!(c.rounding, RoundingRule::HalfEven as i32);
        assert_eq!(c.effective_from, "2026-03-01");

        let a = create(&["--example", "--hours", "mon-sat:07:00-19:00"]).unwrap();
        let (c, _) = contract_from_args(&a).unwrap();
        assert_eq!(format_hours(&c.business_hours), vec!["mon-sat:07:00-19:00"]);
    }

    #[test]
    fn without_the_example_every_price_is_needed() {
        let all: Vec<String> = ["clinical", "technical"]
            .iter()
            .flat_map(|t| (1..=4).map(move |p| format!("{t}.p{p}=10.00")))
            .collect();
        let mut args: Vec<&str> = Vec::new();
        for p in &all[..7] {
            args.extend_from_slice(&["--price", p]);
        }
        let e = contract_from_args(&create(&args).unwrap()).unwrap_err();
        assert!(e.contains("missing --price technical.p4"), "{e}");
        args.extend_from_slice(&["--price", &all[7]]);
        let (c, warnings) = contract_from_args(&create(&args).unwrap()).unwrap();
        assert!(warnings.is_empty());
        wardline_billing::contract::terms_from_proto(&c, 1).unwrap();
        assert_eq!(c.after_hours_surcharge_bps, 0);
        assert_eq!(c.rounding, RoundingRule::HalfUp as i32);
        assert_eq!(c.sla_credits, None);
        assert_eq!(c.overage_price_per_call, None);

        args.extend_from_slice(&["--after-hours-pct", "20"]);
        let (_, warnings) = contract_from_args(&create(&args).unwrap()).unwrap();
        assert!(warnings[0].contains("--hours"), "{warnings:?}");

        let twice = create(&[
            "--example",
            "--price",
            "clinical.p1=1",
            "--price",
            "clinical.p1=2",
        ])
        .unwrap();
        assert!(contract_from_args(&twice).unwrap_err().contains("twice"));
        let overlap = create(&[
            "--example",
            "--hours",
            "mon-fri:08:00-17:00",
            "--hours",
            "fri-sat:09:00-12:00",
        ])
        .unwrap();
        assert!(
            contract_from_args(&overlap)
                .unwrap_err()
                .contains("fri twice")
        );
        let uncapped = create(&["--example", "--credit-p2", "25.00"]).unwrap();
        assert!(
            contract_from_args(&uncapped)
                .unwrap_err()
                .contains("--credit-cap-pct")
        );
    }

    #[test]
    fn contract_create_refuses_bad_values_at_parse_time() {
        assert!(create(&["--example"]).is_ok());
        for bad in [
            &["--overage", "12.345"][..],
            &["--minimum", "-5"],
            &["--after-hours-pct", "2000"],
            &["--credit-cap-pct", "101"],
            &["--rounding", "nearest"],
            &["--holiday", "2026-02-29"],
            &["--currency", "dollars"],
        ] {
            let mut v = vec!["--example"];
            v.extend_from_slice(bad);
            assert!(create(&v).is_err(), "{bad:?}");
        }
        assert!(
            parse(&["contract", "create", "--example"]).is_err(),
            "--effective-from is required"
        );
    }

    #[test]
    fn billing_reads_commands_parse() {
        assert!(matches!(
            parse(&["contract", "get", "--version", "2"])
                .unwrap()
                .command,
            Command::Contract(ContractCommand::Get { version: Some(2) })
        ));
        assert!(parse(&["contract", "get", "--version", "0"]).is_err());
        assert!(matches!(
            parse(&["contract", "list"]).unwrap().command,
            Command::Contract(ContractCommand::List)
        ));
        let Command::Usage(u) = parse(&["usage", "--period", "2026-03"]).unwrap().command else {
            panic!("not usage")
        };
        assert_eq!(u.period.as_deref(), Some("2026-03"));
        assert!(parse(&["usage", "--period", "2026-3"]).is_err());
        let Command::Charges(c) = parse(&[
            "charges",
            "--ticket",
            "STM-42",
            "--kind",
            "overage,after-hours-surcharge",
        ])
        .unwrap()
        .command
        else {
            panic!("not charges")
        };
        assert_eq!(c.ticket.as_deref(), Some("STM-42"));
        assert_eq!(
            c.kinds,
            vec![LineKindArg::Overage, LineKindArg::AfterHoursSurcharge]
        );
        assert_eq!(c.period, None);
        assert!(matches!(
            parse(&["unbilled"]).unwrap().command,
            Command::Unbilled(UnbilledArgs { limit: 100 })
        ));
        let Command::Invoice(InvoiceCommand::Export {
            invoice,
            format,
            out,
        }) = parse(&[
            "invoice",
            "export",
            "0193-x",
            "--format",
            "csv",
            "--out",
            "/tmp/x.csv",
        ])
        .unwrap()
        .command
        else {
            panic!("not export")
        };
        assert_eq!(invoice, "0193-x");
        assert_eq!(format, ExportFormatArg::Csv);
        assert_eq!(out, Some(PathBuf::from("/tmp/x.csv")));
        assert!(
            parse(&["invoice", "export", "x"]).is_err(),
            "--format is required"
        );
        assert!(parse(&["invoice", "export", "x", "--format", "pdf"]).is_err());
        assert!(
            parse(&["invoice", "issue"]).is_err(),
            "--period is required"
        );
        assert!(matches!(
            parse(&["invoice", "issue", "--period", "2026-02"])
                .unwrap()
                .command,
            Command::Invoice(InvoiceCommand::Issue { .. })
        ));
        assert!(matches!(
            parse(&["invoice", "rebuild-check", "--period", "2026-02"])
                .unwrap()
                .command,
            Command::Invoice(InvoiceCommand::RebuildCheck { .. })
        ));
        assert!(matches!(
            parse(&["invoice", "draft"]).unwrap().command,
            Command::Invoice(InvoiceCommand::Draft { period: None })
        ));
        let Command::Invoice(InvoiceCommand::List(l)) =
            parse(&["invoice", "list", "--status", "issued", "--from", "2026-01"])
                .unwrap()
                .command
        else {
            panic!("not invoice list")
        };
        assert_eq!(l.statuses, vec![InvoiceStatusArg::Issued]);
        assert_eq!(l.from.as_deref(), Some("2026-01"));
        let cli = parse(&["--billing-url", "http://billing:50053", "usage"]).unwrap();
        assert_eq!(cli.billing_url, "http://billing:50053");
    }

    #[test]
    fn billing_values_are_spelled_as_printed() {
        fn check<A: ValueEnum + Copy>(label: impl Fn(A) -> String) {
            for v in A::value_variants() {
                let typed = v.to_possible_value().unwrap().get_name().to_owned();
                assert_eq!(label(*v), typed);
            }
        }
        check(|v: TierArg| render::billing::tier(v.wire()));
        check(|v: RoundingArg| render::billing::rounding(v.wire()));
        check(|v: ExportFormatArg| render::billing::export_format(v.wire()));
        check(|v: InvoiceStatusArg| render::billing::invoice_status(v.wire()));
        check(|v: LineKindArg| render::billing::line_kind(v.wire()));
        for n in 1..=7 {
            assert!(
                LineKindArg::value_variants().iter().any(|k| k.wire() == n),
                "line kind {n}"
            );
        }
        assert!(
            LineKind::try_from(8).is_err(),
            "a new kind needs a LineKindArg"
        );
    }

    /// The example is billing's own (`wardline_billing::contract::example`),
    /// so `--example` and the demo bill what billing's tests assume.
    #[test]
    fn the_example_is_billings_example() {
        assert_eq!(
            example_contract("USD", "2026-03-01"),
            wardline_billing::contract::example("USD", "2026-03-01")
        );
        assert_eq!(
            example_contract("EUR", "2026-01-15"),
            wardline_billing::contract::example("EUR", "2026-01-15")
        );
    }
}
