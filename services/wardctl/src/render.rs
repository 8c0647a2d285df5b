//! How wardctl shows Wardline's messages: enum labels, times, tables and
//! detail views. JSON is the messages' own (`serde`, the proto3 JSON
//! mapping of `wardline-proto`), so nothing here writes JSON.
//!
//! Labels are the protobuf enums' own ([`wardline_proto::ProtoEnum`]: the
//! value name without its prefix, lowercase with dashes:
//! `TICKET_STATUS_IN_PROGRESS` → `in-progress`), except priorities, which
//! read `P1`..`P4` ([`wardline_proto::priority`]). Unspecified values show
//! as `-`. Times are RFC 3339: in the tenant's zone with its offset when
//! known and not overridden by `--utc`, else in UTC. Amounts are shown
//! with their currency's decimals ([`wardline_proto::money`]).

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use prost_types::Timestamp;
use wardline_proto::ProtoEnum;
use wardline_proto::common::{CallerRole, Category, Channel, Impact, Money, TicketStatus, Urgency};
use wardline_proto::events::{EscalationLevel, ResolutionCode, SlaTarget};
use wardline_proto::intake::{Note, Tenant, Ticket};

pub use wardline_proto::priority;

use crate::table::{Table, key_values};

pub mod billing;
pub mod notification;
pub mod routing;

/// The label of value `v` of enum `E`: `-` when unspecified, `unknown(n)`
/// for a number this build does not know.
pub fn label<E: ProtoEnum>(v: i32) -> String {
    wardline_proto::label::<E>(v).into_owned()
}

/// The label of `v`, or `None` when unspecified.
pub fn label_opt<E: ProtoEnum>(v: i32) -> Option<String> {
    (v != 0).then(|| label::<E>(v))
}

/// An amount with its currency's decimals, without the code (`45.00`); `-` when unset.
pub fn amount(m: Option<&Money>) -> String {
    m.map_or("-".to_owned(), Money::major)
}

/// An amount with its currency, `45.00 USD`; `-` when unset.
pub fn amount_cur(m: Option<&Money>) -> String {
    m.map_or("-".to_owned(), Money::to_string)
}

/// Where times are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// UTC, `Z` suffix.
    #[default]
    Utc,
    /// A tenant's zone, with its offset.
    Tenant(Tz),
}

impl Zone {
    /// The tenant's zone when `time_zone` names one (and `utc` is false), else UTC.
    pub fn for_tenant(time_zone: &str, utc: bool) -> Self {
        if utc {
            return Zone::Utc;
        }
        time_zone
            .parse::<Tz>()
            .map(Zone::Tenant)
            .unwrap_or(Zone::Utc)
    }

    /// Name for headings.
    pub fn name(&self) -> String {
        match self {
            Zone::Utc => "UTC".to_owned(),
            Zone::Tenant(tz) => tz.name().to_owned(),
        }
    }
}

/// A protobuf timestamp as a UTC time (`None` when unset or out of range).
pub fn utc(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// RFC 3339 in `zone`, to the second; `-` when unset.
pub fn time(ts: Option<&Timestamp>, zone: Zone) -> String {
    match (utc(ts), zone) {
        (None, _) => "-".to_owned(),
        (Some(t), Zone::Utc) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        (Some(t), Zone::Tenant(tz)) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, false),
    }
}

/// `s`, or `-` when empty.
pub fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

// ------------------------------------------------------------------ tickets

/// The assignee column: the analyst, `queued`, or `-`.
fn assignee(t: &Ticket) -> String {
    if !t.assignee_analyst_id.is_empty() {
        t.assignee_analyst_id.clone()
    } else if t.queued {
        "(queued)".to_owned()
    } else {
        "-".to_owned()
    }
}

/// Tickets as a table (no free text: the description is left out).
pub fn ticket_table(tickets: &[Ticket], zone: Zone) -> Table {
    let mut table = Table::of("NUMBER|PRI|STATUS|CATEGORY|FACILITY|CALLER|ASSIGNEE|CREATED");
    for t in tickets {
        let mut cat = label::<Category>(t.category);
        if t.category_classified {
            cat.push('*');
        }
        let caller = t
            .caller
            .as_ref()
            .map_or("-".to_owned(), |c| label::<CallerRole>(c.role));
        table.row([
            t.number.clone(),
            priority(t.priority).to_owned(),
            label::<TicketStatus>(t.status),
            cat,
            t.facility_id.clone(),
            caller,
            assignee(t),
            time(t.created_at.as_ref(), zone),
        ]);
    }
    table
}

/// One ticket, every field, as aligned `key: value` lines.
pub fn ticket_details(t: &Ticket, zone: Zone) -> String {
    let caller = t.caller.clone().unwrap_or_default();
    let mut contact: Vec<&str> = Vec::new();
    if !caller.email.is_empty() {
        contact.push(&caller.email);
    }
    if !caller.phone.is_empty() {
        contact.push(&caller.phone);
    }
    let category_text = if t.category_classified {
        format!("{} (classified by intake)", label::<Category>(t.category))
    } else {
        label::<Category>(t.category)
    };
    let escalation = match label_opt::<EscalationLevel>(t.escalation_level) {
        None => "-".to_owned(),
        Some(level) => level,
    };
    let breached = if t.breached_targets.is_empty() {
        "-".to_owned()
    } else {
        t.breached_targets
            .iter()
            .map(|v| label::<SlaTarget>(*v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let resolution = match label_opt::<ResolutionCode>(t.resolution_code) {
        None => "-".to_owned(),
        Some(code) if t.first_contact_resolution => format!("{code} (first contact)"),
        Some(code) => code,
    };
    let mut pairs = vec![
        ("number", t.number.clone()),
        ("id", t.ticket_id.clone()),
        ("tenant", t.tenant_id.clone()),
        ("facility", t.facility_id.clone()),
        ("priority", priority(t.priority).to_owned()),
        ("status", label::<TicketStatus>(t.status)),
        ("version", t.version.to_string()),
        (
            "caller",
            format!(
                "{} ({}, {})",
                caller.name,
                caller.caller_id,
                label::<CallerRole>(caller.role)
            ),
        ),
        (
            "contact",
            if contact.is_empty() {
                "-".to_owned()
            } else {
                contact.join(", ")
            },
        ),
        ("channel", label::<Channel>(t.channel)),
        ("application", dash(&t.application)),
        ("category", category_text),
        ("urgency", label::<Urgency>(t.urgency)),
        ("impact", label::<Impact>(t.impact)),
        (
            "care blocked",
            if t.patient_care_blocked { "yes" } else { "no" }.to_owned(),
        ),
        ("assignee", assignee(t)),
        ("escalation", escalation),
        ("sla breached", breached),
        ("resolution", resolution),
        ("reopened", t.reopen_count.to_string()),
        ("created", time(t.created_at.as_ref(), zone)),
        ("updated", time(t.updated_at.as_ref(), zone)),
    ];
    for (k, v) in [
        ("acknowledged", &t.acknowledged_at),
        ("resolved", &t.resolved_at),
        ("closed", &t.closed_at),
    ] {
        if v.is_some() {
            pairs.push((k, time(v.as_ref(), zone)));
        }
    }
    pairs.push(("description", t.description.clone()));
    key_values(&pairs)
}

/// A one-line summary after a lifecycle change.
pub fn ticket_line(t: &Ticket) -> String {
    let mut line = format!(
        "{}  {}  {}  version {}",
        t.number,
        priority(t.priority).to_owned(),
        label::<TicketStatus>(t.status),
        t.version
    );
    if !t.assignee_analyst_id.is_empty() {
        line.push_str(&format!("  assignee {}", t.assignee_analyst_id));
    }
    line
}

// ------------------------------------------------------------------ tenants

/// Tenants as a table.
pub fn tenant_table(tenants: &[Tenant], utc_only: bool) -> Table {
    let mut table = Table::of("ID|NAME|TIME ZONE|PREFIX|ACTIVE|CREATED|FACILITIES");
    for t in tenants {
        let zone = Zone::for_tenant(&t.time_zone, utc_only);
        table.row([
            t.tenant_id.clone(),
            t.name.clone(),
            t.time_zone.clone(),
            t.ticket_prefix.clone(),
            if t.active { "yes" } else { "no" }.to_owned(),
            time(t.created_at.as_ref(), zone),
            t.facilities
                .iter()
                .map(|f| f.facility_id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    table
}

/// One tenant with its facilities.
pub fn tenant_details(t: &Tenant, utc_only: bool) -> String {
    let zone = Zone::for_tenant(&t.time_zone, utc_only);
    let mut out = key_values(&[
        ("tenant", t.tenant_id.clone()),
        ("name", t.name.clone()),
        ("time zone", t.time_zone.clone()),
        ("prefix", t.ticket_prefix.clone()),
        ("reopen window", format!("{} h", t.reopen_window_hours)),
        ("active", if t.active { "yes" } else { "no" }.to_owned()),
        ("created", time(t.created_at.as_ref(), zone)),
    ]);
    out.push('\n');
    let mut facilities = Table::of("FACILITY|NAME");
    for f in &t.facilities {
        facilities.row([f.facility_id.clone(), f.name.clone()]);
    }
    out.push_str(&facilities.render());
    out
}

// ------------------------------------------------------------------ notes

/// Notes as a table, the body last and uncut.
pub fn notes_table(notes: &[Note], zone: Zone) -> Table {
    let mut table = Table::of("CREATED|AUTHOR|VISIBILITY|BODY");
    for n in notes {
        table.row([
            time(n.created_at.as_ref(), zone),
            n.author_id.clone(),
            if n.public { "public" } else { "internal" }.to_owned(),
            n.body.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::common::Priority;
    use wardline_proto::intake::{Caller, Facility};

    fn ts(rfc3339: &str) -> Option<Timestamp> {
        let t = DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc);
        Some(Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        })
    }

    fn ticket() -> Ticket {
        Ticket {
            ticket_id: "0193a0e1-0000-7000-8000-000000000001".into(),
            number: "STM-000001".into(),
            tenant_id: "stmarys".into(),
            facility_id: "main-campus".into(),
            caller: Some(Caller {
                caller_id: "rn.alvarez".into(),
                name: "Maria Alvarez".into(),
                role: CallerRole::Nurse as i32,
                email: String::new(),
                phone: "+13125550142".into(),
            }),
            channel: Channel::Phone as i32,
            category: Category::MedicationAdministration as i32,
            urgency: Urgency::Critical as i32,
            impact: Impact::SingleUser as i32,
            patient_care_blocked: true,
            priority: Priority::P1 as i32,
            status: TicketStatus::InProgress as i32,
            description: "scanner\nwon't scan".into(),
            version: 3,
            created_at: ts("2025-01-15T09:03:00Z"),
            ..Default::default()
        }
    }

    #[test]
    fn labels_are_the_proto_enums_own() {
        assert_eq!(
            label::<TicketStatus>(TicketStatus::InProgress as i32),
            "in-progress"
        );
        assert_eq!(
            label::<CallerRole>(CallerRole::OtherClinical as i32),
            "other-clinical"
        );
        assert_eq!(label::<Category>(0), "-");
        assert_eq!(label_opt::<Category>(0), None);
        assert_eq!(label::<TicketStatus>(99), "unknown(99)");
        assert_eq!(priority(Priority::P2 as i32), "P2");
        assert_eq!(priority(0), "-");
        let usd = Money {
            currency: "USD".into(),
            minor_units: 4500,
        };
        assert_eq!(amount(Some(&usd)), "45.00");
        assert_eq!(amount_cur(Some(&usd)), "45.00 USD");
        assert_eq!(amount(None), "-");
    }

    #[test]
    fn times_are_rfc3339_in_utc_or_the_tenant_zone() {
        let t = ts("2025-01-15T09:03:00.250Z");
        assert_eq!(time(t.as_ref(), Zone::Utc), "2025-01-15T09:03:00Z");
        let chicago = Zone::for_tenant("America/Chicago", false);
        assert_eq!(time(t.as_ref(), chicago), "2025-01-15T03:03:00-06:00");
        assert_eq!(Zone::for_tenant("America/Chicago", true), Zone::Utc);
        assert_eq!(Zone::for_tenant("Not/AZone", false), Zone::Utc);
        assert_eq!(chicago.name(), "America/Chicago");
        assert_eq!(time(None, chicago), "-");
        let bad = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(time(Some(&bad), Zone::Utc), "-");
    }

    #[test]
    fn ticket_tables_leave_out_free_text() {
        let mut t = ticket();
        let mut other = ticket();
        other.number = "STM-000002".into();
        other.category_classified = true;
        other.category = Category::Network as i32;
        other.queued = true;
        t.assignee_analyst_id = "an.kim".into();
        let out = ticket_table(&[t, other], Zone::Utc).render();
        assert_eq!(
            out,
            "NUMBER      PRI  STATUS       CATEGORY                   FACILITY     CALLER  ASSIGNEE  CREATED\n\
             STM-000001  P1   in-progress  medication-administration  main-campus  nurse   an.kim    2025-01-15T09:03:00Z\n\
             STM-000002  P1   in-progress  network*                   main-campus  nurse   (queued)  2025-01-15T09:03:00Z\n"
        );
        assert!(!out.contains("scan"));
    }

    #[test]
    fn ticket_details_show_everything_on_one_line_each() {
        let out = ticket_details(&ticket(), Zone::for_tenant("America/Chicago", false));
        assert!(out.contains("number:        STM-000001\n"), "{out}");
        assert!(
            out.contains("caller:        Maria Alvarez (rn.alvarez, nurse)\n"),
            "{out}"
        );
        assert!(out.contains("contact:       +13125550142\n"), "{out}");
        assert!(
            out.contains("created:       2025-01-15T03:03:00-06:00\n"),
            "{out}"
        );
        assert!(out.contains("care blocked:  yes\n"), "{out}");
        assert!(
            out.ends_with("description:   scanner won't scan\n"),
            "{out}"
        );
        assert!(
            !out.contains("acknowledged:"),
            "unset times are left out: {out}"
        );
    }

    #[test]
    fn ticket_lines_read_in_one_glance() {
        assert_eq!(
            ticket_line(&ticket()),
            "STM-000001  P1  in-progress  version 3"
        );
    }

    #[test]
    fn tenants_render() {
        let t = Tenant {
            tenant_id: "stmarys".into(),
            name: "St Mary's Regional".into(),
            time_zone: "America/Chicago".into(),
            ticket_prefix: "STM".into(),
            facilities: vec![
                Facility {
                    facility_id: "main-campus".into(),
                    name: "Main Campus".into(),
                },
                Facility {
                    facility_id: "north-clinic".into(),
                    name: "North Clinic".into(),
                },
            ],
            reopen_window_hours: 72,
            active: true,
            created_at: ts("2025-01-15T09:03:00Z"),
        };
        let table = tenant_table(std::slice::from_ref(&t), true).render();
        assert!(table.contains("stmarys  St Mary's Regional  America/Chicago  STM     yes     2025-01-15T09:03:00Z  main-campus,north-clinic"), "{table}");
        let details = tenant_details(&t, false);
        assert!(
            details.contains("created:        2025-01-15T03:03:00-06:00\n"),
            "{details}"
        );
        assert!(
            details.contains("north-clinic  North Clinic\n"),
            "{details}"
        );
    }

    #[test]
    fn notes_render() {
        let n = Note {
            note_id: "n1".into(),
            ticket_id: "t1".into(),
            author_id: "wardctl".into(),
            body: "Replaced the roller".into(),
            public: true,
            created_at: ts("2025-01-15T09:03:00Z"),
        };
        let out = notes_table(std::slice::from_ref(&n), Zone::Utc).render();
        assert!(
            out.ends_with("2025-01-15T09:03:00Z  wardctl  public      Replaced the roller\n"),
            "{out}"
        );
    }
}
