//! The routing decision: who may take a ticket (eligibility) and who should
//! (ranking), with a verdict for every analyst considered so that the
//! decision can be explained later exactly as it was made.
//!
//! Eligible means: covers the tenant (and the facility), available, on
//! shift, below capacity, has every required skill at the required level,
//! holds an accepted clinical credential when the rule requires one for
//! this caller, and has not timed out on or handed back this ticket. Among
//! the eligible, the order is: the previous analyst of a reopened ticket
//! first, then higher skill level in the rule's first skill, then fewer
//! tickets held, then idle longest, then analyst id (a stable tie-break).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::rules::Rule;
use super::shift::{Shift, on_shift};
use super::{
    Availability, CallerRole, ClinicalCredential, CredentialPolicy, IneligibilityReason,
    RankingKey, SkillModule, is_clinician,
};

/// The order of ranking keys, as recorded in explanations.
pub const RANKING_ORDER: [RankingKey; 5] = [
    RankingKey::PreviousAnalyst,
    RankingKey::SkillLevel,
    RankingKey::Load,
    RankingKey::IdleTime,
    RankingKey::AnalystId,
];

/// What the decision needs to know about the ticket.
#[derive(Debug, Clone)]
pub struct TicketFacts {
    pub tenant_id: String,
    pub facility_id: String,
    pub caller_role: CallerRole,
    /// Analyst who resolved it before (reopened tickets); preferred.
    pub previous_analyst: Option<String>,
    /// Analysts who timed out on or handed back this ticket.
    pub excluded: Vec<String>,
}

/// What the decision needs to know about an analyst.
#[derive(Debug, Clone)]
pub struct AnalystFacts {
    pub analyst_id: String,
    pub time_zone: Tz,
    /// `(tenant or "*", facilities; empty = all)`.
    pub coverage: Vec<(String, Vec<String>)>,
    pub skills: Vec<(SkillModule, u32)>,
    pub credentials: Vec<ClinicalCredential>,
    pub availability: Availability,
    pub shifts: Vec<Shift>,
    pub max_concurrent: u32,
    pub current_load: u32,
    pub idle_since: DateTime<Utc>,
}

/// The verdict on one analyst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub analyst_id: String,
    pub eligible: bool,
    pub reasons: Vec<IneligibilityReason>,
    pub skill_gaps: Vec<SkillModule>,
    /// Level in the rule's first required skill (0 without one).
    pub skill_level: u32,
    pub current_load: u32,
    pub max_concurrent: u32,
    pub idle_since: DateTime<Utc>,
    pub previous_analyst: bool,
    pub availability: Availability,
    /// 1-based rank among the eligible; 0 when not eligible.
    pub rank: u32,
}

/// A decision: every verdict (eligible ones first, in rank order).
#[derive(Debug, Clone)]
pub struct Decision {
    pub credential_required: bool,
    pub verdicts: Vec<Verdict>,
}

impl Decision {
    /// Eligible analysts, best first. The caller tries them in this order,
    /// because capacity is re-checked atomically when the assignment is
    /// written (another replica may have filled the first choice).
    pub fn ranked(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.eligible)
    }

    /// Why nobody was eligible, as a reason code for the queue.
    pub fn queue_reason(&self) -> &'static str {
        if self.verdicts.is_empty() {
            return "no_analyst_covers_tenant";
        }
        let all = |r: IneligibilityReason| self.verdicts.iter().all(|v| v.reasons.contains(&r));
        let any_only = |r: IneligibilityReason| self.verdicts.iter().any(|v| v.reasons == [r]);
        if all(IneligibilityReason::OffShift) {
            "no_analyst_on_shift"
        } else if any_only(IneligibilityReason::AtCapacity) {
            "no_capacity"
        } else if any_only(IneligibilityReason::NotAvailable) {
            "no_analyst_available"
        } else if self.verdicts.iter().all(|v| {
            v.reasons.iter().any(|r| {
                matches!(
                    r,
                    IneligibilityReason::MissingSkill | IneligibilityReason::SkillLevelTooLow
                )
            })
        }) {
            "no_qualified_analyst"
        } else if self
            .verdicts
            .iter()
            .all(|v| v.reasons.contains(&IneligibilityReason::MissingCredential))
        {
            "no_credentialed_analyst"
        } else {
            "no_eligible_analyst"
        }
    }
}

/// True when `rule` requires a clinical credential for this caller.
pub fn credential_required(rule: &Rule, caller: CallerRole) -> bool {
    match rule.credential_policy {
        CredentialPolicy::Always => true,
        CredentialPolicy::WhenCallerClinical => is_clinician(caller),
        CredentialPolicy::None | CredentialPolicy::Unspecified => false,
    }
}

fn covers<'a>(a: &'a AnalystFacts, tenant: &str) -> Option<&'a [String]> {
    a.coverage
        .iter()
        .find(|(t, _)| t == tenant)
        .or_else(|| a.coverage.iter().find(|(t, _)| t == "*"))
        .map(|(_, f)| f.as_slice())
}

/// Judges one analyst.
fn judge(
    t: &TicketFacts,
    rule: &Rule,
    cred_required: bool,
    a: &AnalystFacts,
    now: DateTime<Utc>,
) -> Option<Verdict> {
    // Not covering the tenant at all: not a candidate (not even listed).
    let facilities = covers(a, &t.tenant_id)?;
    let mut reasons = Vec::new();
    if !facilities.is_empty() && !facilities.iter().any(|f| f == &t.facility_id) {
        reasons.push(IneligibilityReason::FacilityNotCovered);
    }
    if a.availability != Availability::Available {
        reasons.push(IneligibilityReason::NotAvailable);
    }
    if !on_shift(&a.shifts, a.time_zone, now) {
        reasons.push(IneligibilityReason::OffShift);
    }
    let mut skill_gaps = Vec::new();
    let mut too_low = false;
    for (module, min) in &rule.required {
        match a.skills.iter().find(|(m, _)| m == module) {
            None => skill_gaps.push(*module),
            Some((_, level)) if level < min => {
                too_low = true;
                skill_gaps.push(*module);
            }
            Some(_) => {}
        }
    }
    if skill_gaps
        .iter()
        .any(|m| !a.skills.iter().any(|(s, _)| s == m))
    {
        reasons.push(IneligibilityReason::MissingSkill);
    }
    if too_low {
        reasons.push(IneligibilityReason::SkillLevelTooLow);
    }
    if cred_required {
        let ok = if rule.accepted_credentials.is_empty() {
            !a.credentials.is_empty()
        } else {
            a.credentials
                .iter()
                .any(|c| rule.accepted_credentials.contains(c))
        };
        if !ok {
            reasons.push(IneligibilityReason::MissingCredential);
        }
    }
    if a.current_load >= a.max_concurrent {
        reasons.push(IneligibilityReason::AtCapacity);
    }
    if t.excluded.iter().any(|x| x == &a.analyst_id) {
        reasons.push(IneligibilityReason::AckTimedOutBefore);
    }
    let skill_level = rule
        .required
        .first()
        .and_then(|(m, _)| a.skills.iter().find(|(s, _)| s == m))
        .map(|(_, l)| *l)
        .unwrap_or(0);
    Some(Verdict {
        analyst_id: a.analyst_id.clone(),
        eligible: reasons.is_empty(),
        reasons,
        skill_gaps,
        skill_level,
        current_load: a.current_load,
        max_concurrent: a.max_concurrent,
        idle_since: a.idle_since,
        previous_analyst: t.previous_analyst.as_deref() == Some(a.analyst_id.as_str()),
        availability: a.availability,
        rank: 0,
    })
}

/// Ranking of two eligible verdicts (less = better).
fn better(a: &Verdict, b: &Verdict) -> Ordering {
    b.previous_analyst
        .cmp(&a.previous_analyst)
        .then(b.skill_level.cmp(&a.skill_level))
        .then(a.current_load.cmp(&b.current_load))
        .then(a.idle_since.cmp(&b.idle_since))
        .then(a.analyst_id.cmp(&b.analyst_id))
}

/// Decides among `analysts` for ticket `t` under `rule` at `now`.
pub fn decide(
    t: &TicketFacts,
    rule: &Rule,
    analysts: &[AnalystFacts],
    now: DateTime<Utc>,
) -> Decision {
    let cred_required = credential_required(rule, t.caller_role);
    let mut verdicts: Vec<Verdict> = analysts
        .iter()
        .filter_map(|a| judge(t, rule, cred_required, a, now))
        .collect();
    verdicts.sort_by(|a, b| match (a.eligible, b.eligible) {
        (true, true) => better(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.analyst_id.cmp(&b.analyst_id),
    });
    for (i, v) in verdicts.iter_mut().filter(|v| v.eligible).enumerate() {
        v.rank = i as u32 + 1;
    }
    Decision {
        credential_required: cred_required,
        verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Category;
    use crate::domain::rules::default_rule;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).unwrap() // Wednesday
    }

    fn analyst(id: &str) -> AnalystFacts {
        AnalystFacts {
            analyst_id: id.into(),
            time_zone: chrono_tz::UTC,
            coverage: vec![("stmarys".into(), vec![])],
            skills: vec![(SkillModule::MedicationAdministration, 3)],
            credentials: vec![],
            availability: Availability::Available,
            shifts: vec![],
            max_concurrent: 3,
            current_load: 0,
            idle_since: now() - chrono::Duration::minutes(10),
        }
    }

    fn rn(id: &str) -> AnalystFacts {
        AnalystFacts {
            credentials: vec![ClinicalCredential::Rn],
            ..analyst(id)
        }
    }

    fn ticket(role: CallerRole) -> TicketFacts {
        TicketFacts {
            tenant_id: "stmarys".into(),
            facility_id: "main".into(),
            caller_role: role,
            previous_analyst: None,
            excluded: vec![],
        }
    }

    fn chosen(d: &Decision) -> Option<&str> {
        d.ranked().next().map(|v| v.analyst_id.as_str())
    }

    #[test]
    fn a_nurse_on_emar_reaches_the_rn_even_when_a_non_clinical_analyst_is_less_loaded() {
        let rule = default_rule(Category::MedicationAdministration);
        let tech = analyst("tech");
        let nurse = AnalystFacts {
            current_load: 2,
            ..rn("rn")
        };
        let d = decide(&ticket(CallerRole::Nurse), &rule, &[tech, nurse], now());
        assert!(d.credential_required);
        assert_eq!(chosen(&d), Some("rn"));
        let tech = d.verdicts.iter().find(|v| v.analyst_id == "tech").unwrap();
        assert_eq!(tech.reasons, vec![IneligibilityReason::MissingCredential]);
        assert_eq!(tech.rank, 0);
    }

    #[test]
    fn a_clerk_on_a_clinical_topic_needs_no_credential() {
        let rule = default_rule(Category::MedicationAdministration);
        let d = decide(
            &ticket(CallerRole::NonClinical),
            &rule,
            &[analyst("tech")],
            now(),
        );
        assert!(!d.credential_required);
        assert_eq!(chosen(&d), Some("tech"));
    }

    #[test]
    fn each_reason_is_reported() {
        let rule = default_rule(Category::MedicationAdministration);
        let t = TicketFacts {
            excluded: vec!["timedout".into()],
            ..ticket(CallerRole::Nurse)
        };
        let cases: Vec<(AnalystFacts, IneligibilityReason)> = vec![
            (
                AnalystFacts {
                    availability: Availability::Away,
                    ..rn("away")
                },
                IneligibilityReason::NotAvailable,
            ),
            (
                AnalystFacts {
                    shifts: vec![Shift {
                        day: 1,
                        start_minute: 0,
                        end_minute: 60,
                    }],
                    ..rn("offshift")
                },
                IneligibilityReason::OffShift,
            ),
            (
                AnalystFacts {
                    coverage: vec![("stmarys".into(), vec!["north".into()])],
                    ..rn("otherfacility")
                },
                IneligibilityReason::FacilityNotCovered,
            ),
            (
                AnalystFacts {
                    skills: vec![(SkillModule::Printing, 5)],
                    ..rn("noskill")
                },
                IneligibilityReason::MissingSkill,
            ),
            (
                AnalystFacts {
                    current_load: 3,
                    ..rn("full")
                },
                IneligibilityReason::AtCapacity,
            ),
            (analyst("nocred"), IneligibilityReason::MissingCredential),
            (rn("timedout"), IneligibilityReason::AckTimedOutBefore),
        ];
        let analysts: Vec<AnalystFacts> = cases.iter().map(|(a, _)| a.clone()).collect();
        let d = decide(&t, &rule, &analysts, now());
        assert_eq!(chosen(&d), None);
        for (a, reason) in &cases {
            let v = d
                .verdicts
                .iter()
                .find(|v| v.analyst_id == a.analyst_id)
                .unwrap();
            assert_eq!(v.reasons, vec![*reason], "{}", a.analyst_id);
        }
        let mut low_rule = rule.clone();
        low_rule.required = vec![(SkillModule::MedicationAdministration, 4)];
        let d = decide(&t, &low_rule, &[rn("junior")], now());
        assert_eq!(
            d.verdicts[0].reasons,
            vec![IneligibilityReason::SkillLevelTooLow]
        );
        assert_eq!(
            d.verdicts[0].skill_gaps,
            vec![SkillModule::MedicationAdministration]
        );
    }

    #[test]
    fn analysts_of_other_tenants_are_not_candidates_but_wildcards_are() {
        let rule = default_rule(Category::Printing);
        let other = AnalystFacts {
            coverage: vec![("lakeside".into(), vec![])],
            skills: vec![(SkillModule::Printing, 5)],
            ..analyst("other")
        };
        let vendor = AnalystFacts {
            coverage: vec![("*".into(), vec![])],
            skills: vec![(SkillModule::Printing, 1)],
            ..analyst("vendor")
        };
        let d = decide(
            &ticket(CallerRole::NonClinical),
            &rule,
            &[other, vendor],
            now(),
        );
        assert_eq!(d.verdicts.len(), 1);
        assert_eq!(chosen(&d), Some("vendor"));
    }

    #[test]
    fn ranking_previous_then_skill_then_load_then_idle_then_id() {
        let rule = default_rule(Category::MedicationAdministration);
        let t = ticket(CallerRole::NonClinical);
        let base = analyst("x");
        let early = now() - chrono::Duration::hours(2);
        let skilled = AnalystFacts {
            analyst_id: "skilled".into(),
            skills: vec![(SkillModule::MedicationAdministration, 5)],
            current_load: 2,
            ..base.clone()
        };
        let idle = AnalystFacts {
            analyst_id: "idle".into(),
            idle_since: early,
            ..base.clone()
        };
        let a = AnalystFacts {
            analyst_id: "a".into(),
            ..base.clone()
        };
        let b = AnalystFacts {
            analyst_id: "b".into(),
            ..base.clone()
        };
        let loaded = AnalystFacts {
            analyst_id: "loaded".into(),
            current_load: 1,
            idle_since: early,
            ..base.clone()
        };
        let d = decide(
            &t,
            &rule,
            &[
                b.clone(),
                loaded.clone(),
                a.clone(),
                idle.clone(),
                skilled.clone(),
            ],
            now(),
        );
        let order: Vec<&str> = d.ranked().map(|v| v.analyst_id.as_str()).collect();
        assert_eq!(order, vec!["skilled", "idle", "a", "b", "loaded"]);
        let ranks: Vec<u32> = d.ranked().map(|v| v.rank).collect();
        assert_eq!(ranks, vec![1, 2, 3, 4, 5]);
        // The previous analyst of a reopened ticket beats everyone eligible.
        let t = TicketFacts {
            previous_analyst: Some("b".into()),
            ..t
        };
        let d = decide(&t, &rule, &[b, loaded, a, idle, skilled], now());
        assert_eq!(chosen(&d), Some("b"));
    }

    #[test]
    fn queue_reasons() {
        let rule = default_rule(Category::Printing);
        let t = ticket(CallerRole::NonClinical);
        assert_eq!(
            decide(&t, &rule, &[], now()).queue_reason(),
            "no_analyst_covers_tenant"
        );
        let full = AnalystFacts {
            skills: vec![(SkillModule::Printing, 1)],
            current_load: 3,
            ..analyst("f")
        };
        assert_eq!(
            decide(&t, &rule, &[full], now()).queue_reason(),
            "no_capacity"
        );
        let off = AnalystFacts {
            skills: vec![(SkillModule::Printing, 1)],
            shifts: vec![Shift {
                day: 1,
                start_minute: 0,
                end_minute: 1,
            }],
            ..analyst("o")
        };
        assert_eq!(
            decide(&t, &rule, &[off], now()).queue_reason(),
            "no_analyst_on_shift"
        );
        assert_eq!(
            decide(&t, &rule, &[analyst("u")], now()).queue_reason(),
            "no_qualified_analyst"
        );
    }

    fn arb_analyst() -> impl Strategy<Value = AnalystFacts> {
        (
            0u32..5,
            0u32..4,
            1u32..4,
            any::<bool>(),
            any::<bool>(),
            0i64..600,
            0usize..3,
        )
            .prop_map(
                |(id, level, max, available, cred, idle, cov)| AnalystFacts {
                    analyst_id: format!("a{id}"),
                    time_zone: chrono_tz::UTC,
                    coverage: vec![(["stmarys", "*", "lakeside"][cov].into(), vec![])],
                    skills: if level == 0 {
                        vec![]
                    } else {
                        vec![(SkillModule::MedicationAdministration, level)]
                    },
                    credentials: if cred {
                        vec![ClinicalCredential::Rn]
                    } else {
                        vec![]
                    },
                    availability: if available {
                        Availability::Available
                    } else {
                        Availability::Busy
                    },
                    shifts: vec![],
                    max_concurrent: max,
                    current_load: (id % 4).min(max),
                    idle_since: now() - chrono::Duration::minutes(idle),
                },
            )
    }

    proptest! {
        /// Whoever is chosen satisfies every rule, and nobody ranked below
        /// them beats them on the ranking keys.
        #[test]
        fn the_chosen_analyst_is_always_eligible_and_best(mut analysts in proptest::collection::vec(arb_analyst(), 0..12), clinician in any::<bool>()) {
            for (i, a) in analysts.iter_mut().enumerate() {
                a.analyst_id = format!("a{i}");
            }
            let rule = default_rule(Category::MedicationAdministration);
            let role = if clinician { CallerRole::Nurse } else { CallerRole::NonClinical };
            let d = decide(&ticket(role), &rule, &analysts, now());
            let ranked: Vec<&Verdict> = d.ranked().collect();
            for v in &ranked {
                let a = analysts.iter().find(|a| a.analyst_id == v.analyst_id).unwrap();
                prop_assert!(a.availability == Availability::Available);
                prop_assert!(a.current_load < a.max_concurrent);
                prop_assert!(v.skill_level >= 1);
                if clinician { prop_assert!(!a.credentials.is_empty()); }
                prop_assert!(a.coverage.iter().any(|(t, _)| t == "stmarys" || t == "*"));
            }
            for w in ranked.windows(2) {
                prop_assert!(better(w[0], w[1]) != Ordering::Greater);
            }
            prop_assert!(d.verdicts.iter().all(|v| v.eligible == v.reasons.is_empty()));
        }
    }
}
