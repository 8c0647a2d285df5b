//! How wardctl shows Wardline's messages: enum labels, times, tables,
//! detail views and JSON.
//!
//! Labels are the protobuf names without their prefix, lowercase with
//! dashes (`TICKET_STATUS_IN_PROGRESS` → `in-progress`), except priorities,
//! which read `P1`..`P4`. Unspecified values show as `-` (null in JSON).
//! Times are RFC 3339: in the tenant's zone with its offset when known and
//! not overridden by `--utc`, else in UTC. JSON always carries UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use prost_types::Timestamp;
use serde_json::{Value, json};
use wardline_proto::common::{
    CallerRole, Category, Channel, Impact, Priority, TicketStatus, Urgency,
};
use wardline_proto::events::{
    EscalationLevel, HoldReason, ResolutionCode, SlaTarget, TransferReason,
};
use wardline_proto::intake::{Note, Tenant, Ticket};

use crate::table::{Table, key_values};

/// The label of an enum value named `full` (`None` when unspecified).
fn label_of(full: &str, prefix: &str) -> Option<String> {
    let short = full.strip_prefix(prefix).unwrap_or(full);
    if short == "UNSPECIFIED" {
        None
    } else {
        Some(short.to_ascii_lowercase().replace('_', "-"))
    }
}

macro_rules! labels {
    ($($(#[$meta:meta])* $name:ident, $opt:ident: $ty:ty, $prefix:literal;)+) => {
        $(
            $(#[$meta])*
            /// `None` when unspecified; `unknown(n)` for a value this build does not know.
            pub fn $opt(v: i32) -> Option<String> {
                match <$ty>::try_from(v) {
                    Ok(e) => label_of(e.as_str_name(), $prefix),
                    Err(_) => Some(format!("unknown({v})")),
                }
            }

            $(#[$meta])*
            /// `-` when unspecified.
            pub fn $name(v: i32) -> String {
                $opt(v).unwrap_or_else(|| "-".to_owned())
            }
        )+
    };
}

pub mod billing;
pub mod notification;
pub mod routing;

labels! {
    /// Label of a ticket status.
    status, status_opt: TicketStatus, "TICKET_STATUS_";
    /// Label of a category.
    category, category_opt: Category, "CATEGORY_";
    /// Label of a caller role.
    caller_role, caller_role_opt: CallerRole, "CALLER_ROLE_";
    /// Label of a channel.
    channel, channel_opt: Channel, "CHANNEL_";
    /// Label of an urgency.
    urgency, urgency_opt: Urgency, "URGENCY_";
    /// Label of an impact.
    impact, impact_opt: Impact, "IMPACT_";
    /// Label of a hold reason.
    hold_reason, hold_reason_opt: HoldReason, "HOLD_REASON_";
    /// Label of a resolution code.
    resolution, resolution_opt: ResolutionCode, "RESOLUTION_CODE_";
    /// Label of a transfer reason.
    transfer_reason, transfer_reason_opt: TransferReason, "TRANSFER_REASON_";
    /// Label of an escalation level.
    escalation, escalation_opt: EscalationLevel, "ESCALATION_LEVEL_";
    /// Label of an SLA target.
    sla_target, sla_target_opt: SlaTarget, "SLA_TARGET_";
}

/// `P1`..`P4` (`None` when unspecified).
pub fn priority_opt(v: i32) -> Option<String> {
    match Priority::try_from(v) {
        Ok(p) => label_of(p.as_str_name(), "PRIORITY_").map(|s| s.to_ascii_uppercase()),
        Err(_) => Some(format!("unknown({v})")),
    }
}

/// `P1`..`P4`, `-` when unspecified.
pub fn priority(v: i32) -> String {
    priority_opt(v).unwrap_or_else(|| "-".to_owned())
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

fn time_json(ts: Option<&Timestamp>) -> Value {
    utc(ts).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true))
    })
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

// ------------------------------------------------------------------ tickets

/// A ticket as JSON (all fields; times in UTC).
pub fn ticket_json(t: &Ticket) -> Value {
    let caller = t.caller.as_ref().map_or(Value::Null, |c| {
        json!({
            "caller_id": c.caller_id,
            "name": c.name,
            "role": caller_role_opt(c.role),
            "email": opt_str(&c.email),
            "phone": opt_str(&c.phone),
        })
    });
    json!({
        "ticket_id": t.ticket_id,
        "number": t.number,
        "tenant_id": t.tenant_id,
        "facility_id": t.facility_id,
        "caller": caller,
        "channel": channel_opt(t.channel),
        "application": t.application,
        "category": category_opt(t.category),
        "category_classified": t.category_classified,
        "urgency": urgency_opt(t.urgency),
        "impact": impact_opt(t.impact),
        "patient_care_blocked": t.patient_care_blocked,
        "priority": priority_opt(t.priority),
        "status": status_opt(t.status),
        "description": t.description,
        "assignee_analyst_id": opt_str(&t.assignee_analyst_id),
        "queued": t.queued,
        "escalation_level": escalation_opt(t.escalation_level),
        "breached_targets": t.breached_targets.iter().map(|v| sla_target(*v)).collect::<Vec<_>>(),
        "resolution_code": resolution_opt(t.resolution_code),
        "first_contact_resolution": t.first_contact_resolution,
        "reopen_count": t.reopen_count,
        "version": t.version,
        "created_at": time_json(t.created_at.as_ref()),
        "updated_at": time_json(t.updated_at.as_ref()),
        "acknowledged_at": time_json(t.acknowledged_at.as_ref()),
        "resolved_at": time_json(t.resolved_at.as_ref()),
        "closed_at": time_json(t.closed_at.as_ref()),
    })
}

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
    let mut table = Table::new(&[
        "NUMBER", "PRI", "STATUS", "CATEGORY", "FACILITY", "CALLER", "ASSIGNEE", "CREATED",
    ]);
    for t in tickets {
        let mut cat = category(t.category);
        if t.category_classified {
            cat.push('*');
        }
        let caller = t
            .caller
            .as_ref()
            .map_or("-".to_owned(), |c| caller_role(c.role));
        table.row([
            t.number.clone(),
            priority(t.priority),
            status(t.status),
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
        format!("{} (classified by intake)", category(t.category))
    } else {
        category(t.category)
    };
    let escalation = match escalation_opt(t.escalation_level) {
        None => "-".to_owned(),
        Some(level) => level,
    };
    let breached = if t.breached_targets.is_empty() {
        "-".to_owned()
    } else {
        t.breached_targets
            .iter()
            .map(|v| sla_target(*v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let resolution = match resolution_opt(t.resolution_code) {
        None => "-".to_owned(),
        Some(code) if t.first_contact_resolution => format!("{code} (first contact)"),
        Some(code) => code,
    };
    let mut pairs = vec![
        ("number", t.number.clone()),
        ("id", t.ticket_id.clone()),
        ("tenant", t.tenant_id.clone()),
        ("facility", t.facility_id.clone()),
        ("priority", priority(t.priority)),
        ("status", status(t.status)),
        ("version", t.version.to_string()),
        (
            "caller",
            format!(
                "{} ({}, {})",
                caller.name,
                caller.caller_id,
                caller_role(caller.role)
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
        ("channel", channel(t.channel)),
        ("application", dash(&t.application)),
        ("category", category_text),
        ("urgency", urgency(t.urgency)),
        ("impact", impact(t.impact)),
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
        priority(t.priority),
        status(t.status),
        t.version
    );
    if !t.assignee_analyst_id.is_empty() {
        line.push_str(&format!("  assignee {}", t.assignee_analyst_id));
    }
    line
}

// ------------------------------------------------------------------ tenants

/// A tenant as JSON.
pub fn tenant_json(t: &Tenant) -> Value {
    json!({
        "tenant_id": t.tenant_id,
        "name": t.name,
        "time_zone": t.time_zone,
        "ticket_prefix": t.ticket_prefix,
        "facilities": t.facilities.iter().map(|f| json!({"facility_id": f.facility_id, "name": f.name})).collect::<Vec<_>>(),
        "reopen_window_hours": t.reopen_window_hours,
        "active": t.active,
        "created_at": time_json(t.created_at.as_ref()),
    })
}

/// Tenants as a table.
pub fn tenant_table(tenants: &[Tenant], utc_only: bool) -> Table {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "TIME ZONE",
        "PREFIX",
        "ACTIVE",
        "CREATED",
        "FACILITIES",
    ]);
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
    let mut facilities = Table::new(&["FACILITY", "NAME"]);
    for f in &t.facilities {
        facilities.row([f.facility_id.clone(), f.name.clone()]);
    }
    out.push_str(&facilities.render());
    out
}

// ------------------------------------------------------------------ notes

/// A note as JSON.
pub fn note_json(n: &Note) -> Value {
    json!({
        "note_id": n.note_id,
        "ticket_id": n.ticket_id,
        "author_id": n.author_id,
        "body": n.body,
        "public": n.public,
        "created_at": time_json(n.created_at.as_ref()),
    })
}

/// Notes as a table, the body last and uncut.
pub fn notes_table(notes: &[Note], zone: Zone) -> Table {
    let mut table = Table::new(&["CREATED", "AUTHOR", "VISIBILITY", "BODY"]);
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
    fn labels_drop_the_prefix_and_read_lowercase() {
        assert_eq!(status(TicketStatus::InProgress as i32), "in-progress");
        assert_eq!(
            category(Category::RegistrationAdt as i32),
            "registration-adt"
        );
        assert_eq!(
            caller_role(CallerRole::OtherClinical as i32),
            "other-clinical"
        );
        assert_eq!(
            transfer_reason(TransferReason::NeedsTier2 as i32),
            "needs-tier2"
        );
        assert_eq!(priority(Priority::P2 as i32), "P2");
        assert_eq!(priority(0), "-");
        assert_eq!(category_opt(0), None);
        assert_eq!(status(99), "unknown(99)");
        assert_eq!(priority_opt(99).as_deref(), Some("unknown(99)"));
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
        assert_eq!(time_json(t.as_ref()), json!("2025-01-15T09:03:00.250Z"));
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
    fn ticket_json_uses_labels_and_nulls() {
        let v = ticket_json(&ticket());
        assert_eq!(v["priority"], "P1");
        assert_eq!(v["status"], "in-progress");
        assert_eq!(v["caller"]["role"], "nurse");
        assert_eq!(v["caller"]["email"], Value::Null);
        assert_eq!(v["resolution_code"], Value::Null);
        assert_eq!(v["assignee_analyst_id"], Value::Null);
        assert_eq!(v["created_at"], "2025-01-15T09:03:00.000Z");
        assert_eq!(v["acknowledged_at"], Value::Null);
        assert_eq!(v["version"], 3);
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
        assert_eq!(
            tenant_json(&t)["facilities"][1]["facility_id"],
            "north-clinic"
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
        assert_eq!(note_json(&n)["public"], true);
    }
}
