//! The command line of routing's commands (analysts, queue, assignments,
//! explanations, rules, SLA targets) and the parsers of their compact
//! values: `stmarys:main-campus,north-clinic`, `orders=4`,
//! `mon:07:00-19:00`, `15/4h`. What wardctl prints for these is what they
//! parse, so output can be pasted back.

use clap::{Args, Subcommand};
use wardline_proto::ProtoEnum;
use wardline_proto::common::Priority;
use wardline_proto::events::Availability;
use wardline_proto::routing::{AssignmentState, ClinicalCredential, DayOfWeek, SkillModule};

use super::{enum_value, proto_enum};

/// `wardctl analyst ...`.
#[derive(Debug, Subcommand)]
pub enum AnalystCommand {
    /// Create or replace an analyst (everything not given is cleared: pass
    /// every skill, coverage and shift the analyst should keep).
    Upsert(Box<UpsertAnalystArgs>),
    /// Show an analyst.
    Get {
        /// Analyst id.
        id: String,
    },
    /// List analysts, by id (those covering --tenant when given).
    List(ListAnalystsArgs),
    /// Set an analyst's availability (available may assign queued tickets at once).
    Availability {
        /// Analyst id.
        id: String,
        /// New availability.
        #[arg(value_parser = proto_enum::<Availability>())]
        availability: Availability,
        /// Apply only if the analyst is still at this version (else ABORTED).
        #[arg(long)]
        expected_version: Option<u64>,
    },
}

/// `wardctl analyst upsert`.
#[derive(Debug, Args)]
pub struct UpsertAnalystArgs {
    /// Analyst id, 1-64 of [a-z0-9._-]; the subject of the analyst's own token.
    #[arg(long)]
    pub id: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Work email.
    #[arg(long)]
    pub email: String,
    /// Mobile in E.164, e.g. +13125550100.
    #[arg(long)]
    pub phone: Option<String>,
    /// Pager or on-call routing key.
    #[arg(long)]
    pub pager: Option<String>,
    /// IANA time zone of the analyst; shifts are in it.
    #[arg(long)]
    pub time_zone: String,
    /// A tenant covered, optionally limited to facilities: TENANT[:fac1,fac2]
    /// ("*" covers every tenant; repeatable, at least one).
    #[arg(long = "cover", required = true, value_parser = parse_coverage)]
    pub coverage: Vec<CoverageArg>,
    /// A skill as MODULE=LEVEL, level 1 (basic) to 5 (expert) (repeatable).
    #[arg(long = "skill", value_parser = parse_skill)]
    pub skills: Vec<SkillArg>,
    /// A clinical credential held (repeatable or comma-separated).
    #[arg(long = "credential", value_parser = proto_enum::<ClinicalCredential>(), value_delimiter = ',')]
    pub credentials: Vec<ClinicalCredential>,
    /// A language spoken, BCP-47, e.g. en, es-MX (repeatable or comma-separated).
    #[arg(long = "language", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// Most tickets held at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_tickets: u32,
    /// A weekly shift in the analyst's zone, DAY:HH:MM-HH:MM, e.g. mon:07:00-19:00
    /// (an end before the start ends the next day; repeatable).
    #[arg(long = "shift", value_parser = parse_shift)]
    pub shifts: Vec<ShiftArg>,
    /// Availability (applied on create, and with a second call on update).
    #[arg(long, value_parser = proto_enum::<Availability>())]
    pub availability: Option<Availability>,
    /// Alerted on supervisor escalations.
    #[arg(long)]
    pub supervisor: bool,
    /// Member of tier 2 (takes tier-2 escalations).
    #[arg(long)]
    pub tier2: bool,
    /// Paged on P1 escalations.
    #[arg(long)]
    pub on_call: bool,
    /// Apply only if the analyst is still at this version (else ABORTED).
    #[arg(long)]
    pub expected_version: Option<u64>,
}

/// `wardctl analyst list`.
#[derive(Debug, Args)]
pub struct ListAnalystsArgs {
    /// Only these availabilities (repeatable or comma-separated).
    #[arg(long = "availability", value_parser = proto_enum::<Availability>(), value_delimiter = ',')]
    pub availabilities: Vec<Availability>,
    /// Only analysts with this skill, optionally at least at a level: MODULE[=LEVEL].
    #[arg(long, value_parser = parse_skill_filter)]
    pub skill: Option<SkillArg>,
    /// Only analysts holding this credential.
    #[arg(long, value_parser = proto_enum::<ClinicalCredential>())]
    pub credential: Option<ClinicalCredential>,
    /// Only analysts on shift now.
    #[arg(long)]
    pub on_shift: bool,
    /// Only supervisors.
    #[arg(long)]
    pub supervisors: bool,
    /// At most this many analysts (pages are followed until reached).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Only these priorities (repeatable or comma-separated).
    #[arg(
        long = "priority",
        value_parser = proto_enum::<Priority>(),
        value_delimiter = ',',
        ignore_case = true
    )]
    pub priorities: Vec<Priority>,
    /// At most this many tickets (pages are followed until reached).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl assignments`.
#[derive(Debug, Args)]
pub struct AssignmentsArgs {
    /// Only this ticket's (id or number, e.g. STM-000042).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Only this analyst's.
    #[arg(long)]
    pub analyst: Option<String>,
    /// Only these states (repeatable or comma-separated).
    #[arg(long = "state", value_parser = proto_enum::<AssignmentState>(), value_delimiter = ',')]
    pub states: Vec<AssignmentState>,
    /// At most this many assignments (pages are followed until reached).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl sla ...`.
#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// Show --tenant's SLA targets and acknowledgement timeout.
    Get,
    /// Change --tenant's targets; what is not given keeps its current value.
    /// Times are RESPONSE/RESOLUTION, minutes or with units: 15/240, 15m/4h, 4h/1d.
    Set(SetSlaArgs),
    /// Show --tenant's internal targets (stricter than the contract's:
    /// they alert the tenant's supervisors and never credit).
    Internal,
    /// Replace --tenant's internal targets with those given (a tenant admin
    /// may; each at most the contract's); `--clear` alone removes them.
    SetInternal(SetInternalArgs),
}

/// `wardctl sla set-internal`.
#[derive(Debug, Args)]
pub struct SetInternalArgs {
    #[command(flatten)]
    pub targets: PriorityTargetArgs,
    /// Remove every internal target (give no --p1..--p4 with it).
    #[arg(long, conflicts_with_all = ["p1", "p2", "p3", "p4"])]
    pub clear: bool,
    /// Apply only if the internal targets are still at this version (else ABORTED).
    #[arg(long)]
    pub expected_version: Option<u64>,
}

impl SetInternalArgs {
    /// The priorities given, as `(priority, targets)`.
    pub fn given(&self) -> Vec<(Priority, TargetsArg)> {
        self.targets.given()
    }
}

/// `--p1`..`--p4`: RESPONSE/RESOLUTION per priority.
#[derive(Debug, Args)]
pub struct PriorityTargetArgs {
    /// P1 targets, RESPONSE/RESOLUTION, e.g. 15/240 or 15m/4h.
    #[arg(long, value_parser = parse_targets)]
    pub p1: Option<TargetsArg>,
    /// P2 targets.
    #[arg(long, value_parser = parse_targets)]
    pub p2: Option<TargetsArg>,
    /// P3 targets.
    #[arg(long, value_parser = parse_targets)]
    pub p3: Option<TargetsArg>,
    /// P4 targets.
    #[arg(long, value_parser = parse_targets)]
    pub p4: Option<TargetsArg>,
}

impl PriorityTargetArgs {
    /// The priorities given, as `(priority, targets)`.
    pub fn given(&self) -> Vec<(Priority, TargetsArg)> {
        Priority::values()
            .zip([self.p1, self.p2, self.p3, self.p4])
            .filter_map(|(p, t)| t.map(|t| (p, t)))
            .collect()
    }
}

/// `wardctl sla set`.
#[derive(Debug, Args)]
pub struct SetSlaArgs {
    #[command(flatten)]
    pub targets: PriorityTargetArgs,
    /// Seconds an analyst has to acknowledge an assignment (10-3600).
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=3600))]
    pub ack_timeout: Option<u32>,
    /// Whether time on hold is left out of the resolution target.
    #[arg(long)]
    pub pause_on_hold: Option<bool>,
    /// Apply only if the targets are still at this version (else ABORTED).
    #[arg(long)]
    pub expected_version: Option<u64>,
}

impl SetSlaArgs {
    /// The priorities given, as `(priority, targets)`.
    pub fn given(&self) -> Vec<(Priority, TargetsArg)> {
        self.targets.given()
    }
}

/// A tenant covered, `TENANT[:fac1,fac2]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageArg {
    /// Tenant slug or `*`.
    pub tenant: String,
    /// Facilities; empty means all.
    pub facilities: Vec<String>,
}

/// A skill, `MODULE=LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkillArg {
    /// Module.
    pub module: SkillModule,
    /// Level 1-5 (0 in a list filter: any level).
    pub level: u32,
}

/// A weekly shift, `DAY:HH:MM-HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftArg {
    /// Day the shift starts.
    pub day: DayOfWeek,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
}

/// Response and resolution targets in minutes, `RESPONSE/RESOLUTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetsArg {
    /// Minutes from creation to acknowledgement.
    pub response_minutes: u32,
    /// Minutes from creation to resolution.
    pub resolution_minutes: u32,
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Parses `TENANT[:fac1,fac2]` (`*` for every tenant, without facilities).
pub fn parse_coverage(s: &str) -> Result<CoverageArg, String> {
    let (tenant, facilities) = match s.split_once(':') {
        Some((t, f)) => (t.trim(), Some(f)),
        None => (s.trim(), None),
    };
    if tenant != "*" && !is_slug(tenant) {
        return Err(format!(
            "expected TENANT[:facility,...] with a tenant slug or *, e.g. stmarys:main-campus; got {s:?}"
        ));
    }
    let facilities: Vec<String> = match facilities {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|f| f.trim().to_owned())
            .collect::<Vec<_>>(),
    };
    if let Some(bad) = facilities.iter().find(|f| !is_slug(f)) {
        return Err(format!(
            "facility {bad:?} in {s:?} is not a slug (expected TENANT:fac1,fac2)"
        ));
    }
    if tenant == "*" && !facilities.is_empty() {
        return Err("\"*\" covers every facility of every tenant: give no facilities".into());
    }
    Ok(CoverageArg {
        tenant: tenant.to_owned(),
        facilities,
    })
}

fn parse_module(s: &str) -> Result<SkillModule, String> {
    enum_value(s, "skill module")
}

fn parse_level(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=5).contains(&n) => Ok(n),
        _ => Err(format!(
            "skill level {:?}: 1 (basic) to 5 (expert)",
            s.trim()
        )),
    }
}

/// Parses `MODULE=LEVEL`, e.g. `medication-administration=4`.
pub fn parse_skill(s: &str) -> Result<SkillArg, String> {
    let Some((module, level)) = s.split_once('=') else {
        return Err(format!("expected MODULE=LEVEL, e.g. orders=4; got {s:?}"));
    };
    Ok(SkillArg {
        module: parse_module(module)?,
        level: parse_level(level)?,
    })
}

/// Parses `MODULE` (any level) or `MODULE=LEVEL` (at least that level).
pub fn parse_skill_filter(s: &str) -> Result<SkillArg, String> {
    match s.split_once('=') {
        None => Ok(SkillArg {
            module: parse_module(s)?,
            level: 0,
        }),
        Some(_) => parse_skill(s),
    }
}

/// The short name of a day (`mon`) of routing's or billing's `DayOfWeek`,
/// as [`parse_day`] reads and shifts and business hours print it.
pub fn day_name<D: ProtoEnum>(d: D) -> &'static str {
    d.label().get(..3).unwrap_or("-")
}

/// Reads `mon` .. `sun` or the full English name, any case.
pub fn parse_day(s: &str) -> Option<DayOfWeek> {
    let s = s.trim();
    DayOfWeek::values()
        .find(|d| d.label().eq_ignore_ascii_case(s) || day_name(*d).eq_ignore_ascii_case(s))
}

fn hhmm(s: &str) -> Option<String> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then(|| format!("{h:02}:{m:02}"))
}

/// Parses `DAY:HH:MM-HH:MM`, e.g. `mon:07:00-19:00` or `fri:22:00-06:00`
/// (ends Saturday 06:00).
pub fn parse_shift(s: &str) -> Result<ShiftArg, String> {
    let usage = || format!("expected DAY:HH:MM-HH:MM, e.g. mon:07:00-19:00; got {s:?}");
    let (day, times) = s.split_once(':').ok_or_else(usage)?;
    let day = parse_day(day).ok_or_else(|| {
        format!(
            "unknown day {:?} in {s:?} (mon, tue, wed, thu, fri, sat, sun)",
            day.trim()
        )
    })?;
    let (start, end) = times.split_once('-').ok_or_else(usage)?;
    let (start, end) = (hhmm(start).ok_or_else(usage)?, hhmm(end).ok_or_else(usage)?);
    if start == end {
        return Err(format!(
            "shift {s:?} starts and ends at {start}: a shift cannot be empty or 24 hours"
        ));
    }
    Ok(ShiftArg { day, start, end })
}

/// Reads minutes: `90`, `90m`, `4h`, `1h30m`, `3d`.
pub fn parse_minutes(s: &str) -> Option<u32> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u32 = 0;
    let mut digits = String::new();
    let mut units_seen = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let per = match c {
            'd' => 24 * 60,
            'h' => 60,
            'm' => 1,
            _ => return None,
        };
        // Units in order, each once: 1d2h30m.
        if digits.is_empty()
            || units_seen.contains(c)
            || units_seen.chars().any(|u| "dhm".find(u) > "dhm".find(c))
        {
            return None;
        }
        units_seen.push(c);
        total = total.checked_add(digits.parse::<u32>().ok()?.checked_mul(per)?)?;
        digits.clear();
    }
    (digits.is_empty() && !units_seen.is_empty()).then_some(total)
}

/// Minutes as [`parse_minutes`] reads them: `15m`, `4h`, `1h30m`, `3d`.
pub fn format_minutes(minutes: u32) -> String {
    if minutes == 0 {
        return "0m".to_owned();
    }
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let mut out = String::new();
    for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// Parses `RESPONSE/RESOLUTION`, each in minutes or with units: `15/240`, `15m/4h`.
pub fn parse_targets(s: &str) -> Result<TargetsArg, String> {
    let usage = || {
        format!(
            "expected RESPONSE/RESOLUTION in minutes or with units (m, h, d), e.g. 15/240 or 15m/4h; got {s:?}"
        )
    };
    let (response, resolution) = s.split_once('/').ok_or_else(usage)?;
    let (response_minutes, resolution_minutes) = (
        parse_minutes(response).ok_or_else(usage)?,
        parse_minutes(resolution).ok_or_else(usage)?,
    );
    if response_minutes == 0 {
        return Err(format!("{s:?}: the response target must be above zero"));
    }
    if resolution_minutes <= response_minutes {
        return Err(format!(
            "{s:?}: the resolution target must be longer than the response target"
        ));
    }
    Ok(TargetsArg {
        response_minutes,
        resolution_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::parse;
    use crate::cli::{AnalystCommand, Command};

    #[test]
    fn compact_routing_values_parse_and_print_back() {
        let c = parse_coverage("stmarys:main-campus, north-clinic").unwrap();
        assert_eq!(c.facilities, vec!["main-campus", "north-clinic"]);
        assert_eq!(parse_coverage("*").unwrap().tenant, "*");
        for bad in ["*:main", "", "StMarys", "stmarys:", "stmarys:a,,b"] {
            assert!(parse_coverage(bad).is_err(), "{bad}");
        }
        let s = parse_skill("Login-Access = 2").unwrap();
        assert_eq!((s.module, s.level), (SkillModule::LoginAccess, 2));
        assert!(parse_skill("orders=6").is_err());
        assert!(parse_skill("other=3").is_err(), "not a skill module");
        assert_eq!(parse_skill_filter("orders").unwrap().level, 0);
        let sh = parse_shift("fri:22:00-06:00").unwrap();
        assert_eq!((sh.day, sh.start.as_str()), (DayOfWeek::Friday, "22:00"));
        assert_eq!(parse_day("Sunday"), Some(DayOfWeek::Sunday));
        assert_eq!(day_name(DayOfWeek::Wednesday), "wed");
        assert!(parse_shift("mon:07:00-07:00").is_err());
        assert!(parse_shift("xyz:07:00-08:00").is_err());
        assert_eq!(parse_targets("15m/4h").unwrap().resolution_minutes, 240);
        for bad in ["0/10", "60/60", "4h/1h", "15"] {
            assert!(parse_targets(bad).is_err(), "{bad}");
        }
        for bad in ["", "h", "30m1h", "1h1h", "1.5h", "1w", "5x"] {
            assert_eq!(parse_minutes(bad), None, "{bad}");
        }
        for m in [1, 15, 59, 60, 90, 240, 1440, 1563, 4320] {
            assert_eq!(parse_minutes(&format_minutes(m)), Some(m), "{m}");
        }
    }

    #[test]
    fn analyst_commands_parse() {
        let cli = parse(&[
            "analyst",
            "upsert",
            "--id",
            "rn.okonkwo",
            "--name",
            "Grace",
            "--email",
            "g@x.example",
            "--time-zone",
            "America/Chicago",
            "--cover",
            "stmarys:main-campus",
            "--skill",
            "medication-administration=4",
            "--credential",
            "rn,np",
            "--shift",
            "mon:07:00-19:00",
            "--availability",
            "available",
        ])
        .unwrap();
        let Command::Analyst(AnalystCommand::Upsert(a)) = cli.command else {
            panic!("not analyst upsert")
        };
        assert_eq!(
            a.credentials,
            vec![ClinicalCredential::Rn, ClinicalCredential::Np]
        );
        assert_eq!(a.availability, Some(Availability::Available));
        assert!(
            parse(&[
                "analyst",
                "upsert",
                "--id",
                "x",
                "--name",
                "X",
                "--email",
                "e",
                "--time-zone",
                "UTC"
            ])
            .is_err(),
            "--cover is required"
        );
        let cli = parse(&["sla", "set", "--p1", "15/240", "--p3", "4h/1d"]).unwrap();
        let Command::Sla(SlaCommand::Set(s)) = cli.command else {
            panic!("not sla set")
        };
        let given: Vec<Priority> = s.given().iter().map(|(p, _)| *p).collect();
        assert_eq!(given, vec![Priority::P1, Priority::P3]);
        let cli = parse(&["assignments", "--state", "pending-ack,timed-out"]).unwrap();
        let Command::Assignments(a) = cli.command else {
            panic!("not assignments")
        };
        assert_eq!(
            a.states,
            vec![AssignmentState::PendingAck, AssignmentState::TimedOut]
        );
    }
}
