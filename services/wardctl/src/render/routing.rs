use std::cmp::Ordering;

use prost_types::Timestamp;
use wardline_proto::common::{CallerRole, Category};
use wardline_proto::events::{Availability, EscalationLevel};
use wardline_proto::routing::{
    Analyst, Assignment, AssignmentExplanation, AssignmentState, Candidate, CategoryRule,
    ClinicalCredential, CredentialPolicy, DayOfWeek, DecisionTrigger, GetQueueResponse,
    IneligibilityReason, InternalSlaTargets, QueuedTicket, RankingKey, RuleSource, Shift, Skill,
    SkillModule, SlaTargets, TenantCoverage,
};

use super::{Zone, dash, label, label_opt, priority, time, utc};
use crate::cli::{day_name, format_minutes};
use crate::table::{Table, key_values};

/// Seconds as `45s`, `2m05s`, `1h02m`, `3d04h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn joined_or_dash(parts: Vec<String>, sep: &str) -> String {
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(sep)
    }
}

// ------------------------------------------------------------------ analysts

/// `stmarys:main-campus,north-clinic` (as `--cover` reads it).
pub fn coverage(c: &TenantCoverage) -> String {
    if c.facility_ids.is_empty() {
        c.tenant_id.clone()
    } else {
        format!("{}:{}", c.tenant_id, c.facility_ids.join(","))
    }
}

/// `orders=4` (as `--skill` reads it).
pub fn skill(s: &Skill) -> String {
    format!("{}={}", label::<SkillModule>(s.module), s.level)
}

/// `mon:07:00-19:00` (as `--shift` reads it).
pub fn shift(s: &Shift) -> String {
    let day = DayOfWeek::try_from(s.day_of_week).map_or("?", day_name);
    format!("{day}:{}-{}", s.start, s.end)
}

fn credentials(a: &Analyst) -> String {
    joined_or_dash(
        a.credentials
            .iter()
            .map(|c| label::<ClinicalCredential>(*c))
            .collect(),
        ",",
    )
}

fn flags(a: &Analyst) -> String {
    let mut f = Vec::new();
    if a.supervisor {
        f.push("supervisor".to_owned());
    }
    if a.tier2 {
        f.push("tier2".to_owned());
    }
    if a.on_call {
        f.push("on-call".to_owned());
    }
    joined_or_dash(f, ",")
}

/// Analysts as a table.
pub fn analyst_table(analysts: &[Analyst]) -> Table {
    let mut table =
        Table::of("ANALYST|NAME|AVAILABILITY|SHIFT|LOAD|CREDENTIALS|FLAGS|COVERS|SKILLS");
    for a in analysts {
        table.row([
            a.analyst_id.clone(),
            a.name.clone(),
            label::<Availability>(a.availability),
            if a.on_shift { "on" } else { "off" }.to_owned(),
            format!("{}/{}", a.current_load, a.max_concurrent_tickets),
            credentials(a),
            flags(a),
            joined_or_dash(a.coverage.iter().map(coverage).collect(), " "),
            joined_or_dash(a.skills.iter().map(skill).collect(), " "),
        ]);
    }
    table
}

/// One analyst, every field; times in the analyst's own zone unless `utc_only`.
pub fn analyst_details(a: &Analyst, utc_only: bool) -> String {
    let zone = Zone::for_tenant(&a.time_zone, utc_only);
    let shifts = if a.shifts.is_empty() {
        "- (no roster)".to_owned()
    } else {
        a.shifts.iter().map(shift).collect::<Vec<_>>().join(" ")
    };
    key_values(&[
        ("analyst", a.analyst_id.clone()),
        ("name", a.name.clone()),
        ("email", dash(&a.email)),
        ("phone", dash(&a.phone)),
        ("pager", dash(&a.pager)),
        ("time zone", a.time_zone.clone()),
        (
            "covers",
            joined_or_dash(a.coverage.iter().map(coverage).collect(), " "),
        ),
        (
            "skills",
            joined_or_dash(a.skills.iter().map(skill).collect(), " "),
        ),
        ("credentials", credentials(a)),
        ("languages", joined_or_dash(a.languages.clone(), ",")),
        (
            "load",
            format!(
                "{} of at most {} tickets",
                a.current_load, a.max_concurrent_tickets
            ),
        ),
        ("availability", label::<Availability>(a.availability)),
        ("on shift", yes_no(a.on_shift)),
        ("shifts", shifts),
        ("flags", flags(a)),
        ("idle since", time(a.idle_since.as_ref(), zone)),
        ("version", a.version.to_string()),
        ("created", time(a.created_at.as_ref(), zone)),
        ("updated", time(a.updated_at.as_ref(), zone)),
    ])
}

// ------------------------------------------------------------------ queue

/// One line: depth and, per priority, count and oldest wait.
pub fn queue_summary(q: &GetQueueResponse) -> String {
    if q.depth == 0 {
        return format!("{}: the queue is empty", q.tenant_id);
    }
    let per: Vec<String> = q
        .by_priority
        .iter()
        .map(|c| {
            format!(
                "{} {} (oldest {})",
                priority(c.priority).to_owned(),
                c.count,
                duration(c.oldest_waiting_seconds)
            )
        })
        .collect();
    format!("{}: {} waiting; {}", q.tenant_id, q.depth, per.join(", "))
}

/// Queued tickets as a table (ids and codes only).
pub fn queue_table(tickets: &[QueuedTicket], zone: Zone) -> Table {
    let mut table = Table::of("POS|NUMBER|PRI|CATEGORY|FACILITY|CALLER|WAITING|REASON|RESPOND BY");
    for t in tickets {
        table.row([
            t.position.to_string(),
            t.number.clone(),
            priority(t.priority).to_owned(),
            label::<Category>(t.category),
            t.facility_id.clone(),
            label::<CallerRole>(t.caller_role),
            duration(t.waiting_seconds),
            dash(&t.reason_code),
            time(t.response_deadline.as_ref(), zone),
        ]);
    }
    table
}

// ------------------------------------------------------------------ assignments

/// Assignments as a table.
pub fn assignment_table(assignments: &[Assignment], zone: Zone) -> Table {
    let mut table =
        Table::of("ASSIGNMENT|NUMBER|PRI|CATEGORY|ANALYST|STATE|TRY|TRIGGER|ASSIGNED|ACK BY");
    for a in assignments {
        table.row([
            a.assignment_id.clone(),
            a.number.clone(),
            priority(a.priority).to_owned(),
            label::<Category>(a.category),
            a.analyst_id.clone(),
            label::<AssignmentState>(a.state),
            a.attempt.to_string(),
            label::<DecisionTrigger>(a.trigger),
            time(a.assigned_at.as_ref(), zone),
            time(a.ack_deadline.as_ref(), zone),
        ]);
    }
    table
}

// ------------------------------------------------------------------ explanations

/// `orders>=1 results>=2`, or `none`.
fn required_skills(r: &CategoryRule) -> String {
    if r.required_skills.is_empty() {
        return "none".to_owned();
    }
    r.required_skills
        .iter()
        .map(|s| format!("{}>={}", label::<SkillModule>(s.module), s.min_level))
        .collect::<Vec<_>>()
        .join(" ")
}

fn accepted(r: &CategoryRule) -> String {
    if r.accepted_credentials.is_empty() {
        "any".to_owned()
    } else {
        r.accepted_credentials
            .iter()
            .map(|c| label::<ClinicalCredential>(*c))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The rule in one line: `skills orders>=1; credential when-caller-clinical (any); default`.
pub fn rule_line(r: &CategoryRule) -> String {
    format!(
        "skills {}; credential {} ({}); {}",
        required_skills(r),
        label::<CredentialPolicy>(r.credential_policy),
        accepted(r),
        label::<RuleSource>(r.source)
    )
}

fn ts_order(a: Option<&Timestamp>, b: Option<&Timestamp>) -> Ordering {
    utc(a).cmp(&utc(b))
}

/// Why eligible `c` ranked below `chosen`: the first ranking key (in the
/// decision's order) on which they differ.
pub fn ranked_below(chosen: &Candidate, c: &Candidate, order: &[i32]) -> String {
    let default_order: Vec<i32> = (1..=5).collect();
    let order = if order.is_empty() {
        &default_order[..]
    } else {
        order
    };
    for key in order {
        match RankingKey::try_from(*key) {
            Ok(RankingKey::PreviousAnalyst) if chosen.previous_analyst != c.previous_analyst => {
                return format!("{} worked this ticket before", chosen.analyst_id);
            }
            Ok(RankingKey::SkillLevel) if chosen.skill_level != c.skill_level => {
                return format!(
                    "lower skill level ({} < {})",
                    c.skill_level, chosen.skill_level
                );
            }
            Ok(RankingKey::Load) if chosen.current_load != c.current_load => {
                return format!(
                    "holds more tickets ({} > {})",
                    c.current_load, chosen.current_load
                );
            }
            Ok(RankingKey::IdleTime)
                if ts_order(chosen.idle_since.as_ref(), c.idle_since.as_ref())
                    != Ordering::Equal =>
            {
                return format!("idle for less time than {}", chosen.analyst_id);
            }
            Ok(RankingKey::AnalystId) if chosen.analyst_id != c.analyst_id => {
                return format!("tie; id sorts after {}", chosen.analyst_id);
            }
            _ => {}
        }
    }
    "ranked lower".to_owned()
}

/// Every reason a candidate was not eligible, with the skills it lacked.
pub fn reasons(c: &Candidate) -> String {
    let gaps: Vec<String> = c
        .skill_gaps
        .iter()
        .map(|m| label::<SkillModule>(*m))
        .collect();
    let parts: Vec<String> = c
        .reasons
        .iter()
        .map(|r| {
            let label = label::<IneligibilityReason>(*r);
            let skill_reason = matches!(
                IneligibilityReason::try_from(*r),
                Ok(IneligibilityReason::MissingSkill | IneligibilityReason::SkillLevelTooLow)
            );
            if skill_reason && !gaps.is_empty() {
                format!("{label} ({})", gaps.join(","))
            } else {
                label
            }
        })
        .collect();
    joined_or_dash(parts, ", ")
}

/// The candidates of a decision as a table: rank, verdict, ranking keys, why.
pub fn candidate_table(e: &AssignmentExplanation, zone: Zone) -> Table {
    let mut table = Table::of("RANK|ANALYST|ELIGIBLE|AVAILABILITY|SKILL|LOAD|IDLE SINCE|WHY");
    let chosen = e
        .candidates
        .iter()
        .find(|c| c.analyst_id == e.chosen_analyst_id);
    for c in &e.candidates {
        let why = if !c.eligible {
            reasons(c)
        } else if c.analyst_id == e.chosen_analyst_id {
            "CHOSEN".to_owned()
        } else {
            chosen.map_or_else(
                || "ranked lower".to_owned(),
                |ch| ranked_below(ch, c, &e.ranking_order),
            )
        };
        table.row([
            if c.rank == 0 {
                "-".to_owned()
            } else {
                c.rank.to_string()
            },
            c.analyst_id.clone(),
            yes_no(c.eligible),
            label::<Availability>(c.availability),
            c.skill_level.to_string(),
            format!("{}/{}", c.current_load, c.max_concurrent_tickets),
            time(c.idle_since.as_ref(), zone),
            why,
        ]);
    }
    table
}

/// Why the chosen analyst, in one sentence.
pub fn chosen_line(e: &AssignmentExplanation) -> String {
    let eligible = e.candidates.iter().filter(|c| c.eligible).count();
    let Some(c) = e
        .candidates
        .iter()
        .find(|c| c.analyst_id == e.chosen_analyst_id)
    else {
        return format!(
            "chosen: {} (not among the recorded candidates)",
            dash(&e.chosen_analyst_id)
        );
    };
    let primary = e
        .rule
        .as_ref()
        .and_then(|r| r.required_skills.first())
        .map(|s| label::<SkillModule>(s.module));
    let mut why = Vec::new();
    if c.previous_analyst {
        why.push("worked this ticket before".to_owned());
    }
    if let Some(m) = primary {
        why.push(format!("{m} level {}", c.skill_level));
    }
    why.push(format!(
        "holding {} of {} tickets",
        c.current_load, c.max_concurrent_tickets
    ));
    format!(
        "chosen: {} — 1 of {} eligible out of {} considered; {}",
        c.analyst_id,
        eligible,
        e.candidates.len(),
        why.join(", ")
    )
}

/// A whole explanation: the ticket and rule, then the candidates.
pub fn explanation_text(e: &AssignmentExplanation, zone: Zone) -> String {
    let a = e.assignment.clone().unwrap_or_default();
    let clinical = if e.clinical_category {
        " (clinical)"
    } else {
        ""
    };
    let credential = if e.credential_required {
        format!("required (caller {})", label::<CallerRole>(e.caller_role))
    } else {
        "not required".to_owned()
    };
    let ranking: Vec<String> = e
        .ranking_order
        .iter()
        .map(|k| label::<RankingKey>(*k))
        .collect();
    let mut pairs = vec![
        ("assignment", a.assignment_id.clone()),
        ("ticket", format!("{} ({})", a.number, a.ticket_id)),
        ("priority", priority(a.priority).to_owned()),
        (
            "category",
            format!("{}{clinical}", label::<Category>(a.category)),
        ),
        ("facility", dash(&e.facility_id)),
        ("caller", label::<CallerRole>(e.caller_role)),
        (
            "trigger",
            format!(
                "{} (attempt {})",
                label::<DecisionTrigger>(a.trigger),
                a.attempt
            ),
        ),
        ("decided", time(e.decided_at.as_ref(), zone)),
        ("state", label::<AssignmentState>(a.state)),
        ("rule", e.rule.as_ref().map_or("-".to_owned(), rule_line)),
        ("credential", credential),
        ("ranking", joined_or_dash(ranking, " > ")),
    ];
    if !e.previous_analyst_id.is_empty() {
        pairs.push(("previous analyst", e.previous_analyst_id.clone()));
    }
    if let Some(level) = label_opt::<EscalationLevel>(e.escalation_level) {
        pairs.push(("escalation", level));
    }
    if e.queued_seconds > 0 {
        pairs.push(("queued for", duration(e.queued_seconds)));
    }
    let mut out = key_values(&pairs);
    out.push('\n');
    out.push_str(&candidate_table(e, zone).render());
    out.push('\n');
    out.push_str(&chosen_line(e));
    out.push('\n');
    out
}

// ------------------------------------------------------------------ rules

/// Rules as a table.
pub fn rules_table(rules: &[CategoryRule], zone: Zone) -> Table {
    let mut table = Table::of("CATEGORY|SKILLS|CREDENTIAL|ACCEPTED|SOURCE|VERSION|UPDATED");
    for r in rules {
        table.row([
            label::<Category>(r.category),
            required_skills(r),
            label::<CredentialPolicy>(r.credential_policy),
            accepted(r),
            label::<RuleSource>(r.source),
            r.version.to_string(),
            time(r.updated_at.as_ref(), zone),
        ]);
    }
    table
}

// ------------------------------------------------------------------ SLA

/// SLA targets: settings, then one row per priority (with the `sla set`
/// flag that sets it).
pub fn sla_text(s: &SlaTargets, zone: Zone) -> String {
    let mut out = key_values(&[
        ("tenant", s.tenant_id.clone()),
        ("source", label::<RuleSource>(s.source)),
        ("version", s.version.to_string()),
        (
            "ack timeout",
            format!("{} s (then re-routed)", s.ack_timeout_seconds),
        ),
        ("pause on hold", yes_no(s.pause_resolution_on_hold)),
        ("updated", time(s.updated_at.as_ref(), zone)),
    ]);
    out.push('\n');
    let mut table = Table::of("PRIORITY|RESPONSE|RESOLUTION|SET WITH");
    for t in &s.targets {
        let (response, resolution) = (
            format_minutes(t.response_minutes),
            format_minutes(t.resolution_minutes),
        );
        table.row([
            priority(t.priority).to_owned(),
            response.clone(),
            resolution.clone(),
            format!(
                "--{} {response}/{resolution}",
                priority(t.priority).to_ascii_lowercase()
            ),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// A tenant's internal targets: one row per priority that has one.
pub fn internal_sla_text(s: &InternalSlaTargets, zone: Zone) -> String {
    let mut out = key_values(&[
        ("tenant", s.tenant_id.clone()),
        ("version", s.version.to_string()),
        ("updated", time(s.updated_at.as_ref(), zone)),
        (
            "meaning",
            "alerts the tenant's supervisors; never credited, never escalated".to_owned(),
        ),
    ]);
    out.push('\n');
    if s.targets.is_empty() {
        out.push_str("no internal targets\n");
        return out;
    }
    let mut table = Table::of("PRIORITY|RESPONSE|RESOLUTION");
    for t in &s.targets {
        table.row([
            priority(t.priority).to_owned(),
            format_minutes(t.response_minutes),
            format_minutes(t.resolution_minutes),
        ]);
    }
    out.push_str(&table.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::common::{CallerRole, Category, Priority};
    use wardline_proto::routing::{PriorityTargets, SkillRequirement};

    fn ts(secs: i64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: secs,
            nanos: 0,
        })
    }

    fn analyst() -> Analyst {
        Analyst {
            analyst_id: "rn.okonkwo".into(),
            name: "Grace Okonkwo, RN".into(),
            email: "grace@wardline.example".into(),
            time_zone: "America/Chicago".into(),
            coverage: vec![
                TenantCoverage {
                    tenant_id: "stmarys".into(),
                    facility_ids: vec!["main-campus".into()],
                },
                TenantCoverage {
                    tenant_id: "lakeside".into(),
                    facility_ids: vec![],
                },
            ],
            skills: vec![
                Skill {
                    module: SkillModule::MedicationAdministration as i32,
                    level: 4,
                },
                Skill {
                    module: SkillModule::Orders as i32,
                    level: 3,
                },
            ],
            credentials: vec![ClinicalCredential::Rn as i32],
            max_concurrent_tickets: 6,
            shifts: vec![Shift {
                day_of_week: DayOfWeek::Friday as i32,
                start: "22:00".into(),
                end: "06:00".into(),
            }],
            availability: Availability::Available as i32,
            on_call: true,
            current_load: 1,
            idle_since: ts(1_736_931_780),
            version: 2,
            ..Default::default()
        }
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(3720), "1h02m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3d04h");
    }

    #[test]
    fn analysts_print_as_the_command_line_reads_them() {
        let a = analyst();
        let row = analyst_table(std::slice::from_ref(&a)).render();
        let line = row.lines().nth(1).unwrap();
        assert!(
            line.ends_with(
                "available     off    1/6   rn           on-call  stmarys:main-campus lakeside  medication-administration=4 orders=3"
            ),
            "{row}"
        );
        let d = analyst_details(&a, false);
        assert!(d.contains("shifts:        fri:22:00-06:00\n"), "{d}");
        assert!(
            d.contains("idle since:    2025-01-15T03:03:00-06:00\n"),
            "{d}"
        );
        assert!(d.contains("phone:         -\n"), "{d}");
        let parsed = crate::cli::parse_shift("fri:22:00-06:00").unwrap();
        assert_eq!(parsed.day as i32, a.shifts[0].day_of_week);
        assert_eq!(
            crate::cli::parse_coverage(&coverage(&a.coverage[0]))
                .unwrap()
                .facilities,
            a.coverage[0].facility_ids
        );
    }

    fn explanation() -> AssignmentExplanation {
        let cand = |id: &str, eligible: bool, rank: u32, level: u32, load: u32| Candidate {
            analyst_id: id.into(),
            eligible,
            rank,
            skill_level: level,
            current_load: load,
            max_concurrent_tickets: 5,
            idle_since: ts(1_736_931_780),
            availability: Availability::Available as i32,
            ..Default::default()
        };
        let mut tech = cand("tech.lindqvist", false, 0, 0, 0);
        tech.reasons = vec![
            IneligibilityReason::MissingSkill as i32,
            IneligibilityReason::MissingCredential as i32,
        ];
        tech.skill_gaps = vec![SkillModule::Orders as i32];
        AssignmentExplanation {
            assignment: Some(Assignment {
                assignment_id: "a-1".into(),
                ticket_id: "t-1".into(),
                number: "STM-000002".into(),
                analyst_id: "pharmd.reyes".into(),
                priority: Priority::P2 as i32,
                category: Category::Orders as i32,
                state: AssignmentState::PendingAck as i32,
                attempt: 1,
                trigger: DecisionTrigger::TicketCreated as i32,
                ..Default::default()
            }),
            facility_id: "main-campus".into(),
            caller_role: CallerRole::Physician as i32,
            clinical_category: true,
            rule: Some(CategoryRule {
                category: Category::Orders as i32,
                required_skills: vec![SkillRequirement {
                    module: SkillModule::Orders as i32,
                    min_level: 1,
                }],
                credential_policy: CredentialPolicy::WhenCallerClinical as i32,
                source: RuleSource::Default as i32,
                ..Default::default()
            }),
            credential_required: true,
            ranking_order: (1..=5).collect(),
            candidates: vec![
                cand("pharmd.reyes", true, 1, 5, 0),
                cand("vendor.mbeki", true, 2, 4, 0),
                cand("rn.okonkwo", true, 3, 4, 1),
                tech,
            ],
            chosen_analyst_id: "pharmd.reyes".into(),
            ..Default::default()
        }
    }

    #[test]
    fn explanations_say_why_each_candidate_lost() {
        let e = explanation();
        let text = explanation_text(&e, Zone::Utc);
        assert!(
            text.contains(
                "rule:        skills orders>=1; credential when-caller-clinical (any); default\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("credential:  required (caller physician)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ranking:     previous-analyst > skill-level > load > idle-time > analyst-id\n"
            ),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("  yes  ") || l.contains("  no  "))
            .collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(
            rows[0].starts_with("1     pharmd.reyes") && rows[0].ends_with("CHOSEN"),
            "{text}"
        );
        assert!(rows[1].ends_with("lower skill level (4 < 5)"), "{text}");
        assert!(rows[2].ends_with("lower skill level (4 < 5)"), "{text}");
        assert!(
            rows[3].starts_with("-     tech.lindqvist")
                && rows[3].ends_with("missing-skill (orders), missing-credential"),
            "{text}"
        );
        assert!(
            text.ends_with("chosen: pharmd.reyes — 1 of 3 eligible out of 4 considered; orders level 5, holding 0 of 5 tickets\n"),
            "{text}"
        );
        // Ties fall through to the next key.
        let (a, mut b) = (e.candidates[1].clone(), e.candidates[2].clone());
        b.skill_level = 4;
        assert_eq!(ranked_below(&a, &b, &[]), "holds more tickets (1 > 0)");
        b.current_load = 0;
        b.idle_since = ts(1_736_931_790);
        assert_eq!(
            ranked_below(&a, &b, &[]),
            "idle for less time than vendor.mbeki"
        );
        b.idle_since = a.idle_since;
        assert_eq!(
            ranked_below(&a, &b, &[]),
            "tie; id sorts after vendor.mbeki"
        );
    }

    #[test]
    fn queues_and_sla_render() {
        let q = GetQueueResponse {
            tenant_id: "stmarys".into(),
            depth: 2,
            by_priority: vec![wardline_proto::routing::PriorityCount {
                priority: Priority::P1 as i32,
                count: 2,
                oldest_waiting_seconds: 125,
            }],
            tickets: vec![QueuedTicket {
                position: 1,
                number: "STM-000007".into(),
                priority: Priority::P1 as i32,
                category: Category::Network as i32,
                facility_id: "main-campus".into(),
                caller_role: CallerRole::NonClinical as i32,
                waiting_seconds: 125,
                reason_code: "no_capacity".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(queue_summary(&q), "stmarys: 2 waiting; P1 2 (oldest 2m05s)");
        let t = queue_table(&q.tickets, Zone::Utc).render();
        assert!(
            t.lines().nth(1).unwrap().starts_with(
                "1    STM-000007  P1   network   main-campus  non-clinical  2m05s    no_capacity"
            ),
            "{t}"
        );

        let s = SlaTargets {
            tenant_id: "stmarys".into(),
            targets: vec![PriorityTargets {
                priority: Priority::P1 as i32,
                response_minutes: 15,
                resolution_minutes: 240,
            }],
            ack_timeout_seconds: 120,
            source: RuleSource::Default as i32,
            ..Default::default()
        };
        let text = sla_text(&s, Zone::Utc);
        assert!(
            text.contains("P1        15m       4h          --p1 15m/4h\n"),
            "{text}"
        );
        assert!(text.contains("source:         default\n"), "{text}");
    }
}
