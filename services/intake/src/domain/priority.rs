//! Priority from urgency × impact, with the patient-care fast lane.
//!
//! The matrix is the desk's promise to clinicians, so it is a table a
//! reviewer can read, not arithmetic:
//!
//! | impact \ urgency | critical | high | medium | low |
//! |------------------|----------|------|--------|-----|
//! | widespread       | P1       | P1   | P2     | P3  |
//! | department       | P1       | P2   | P2     | P3  |
//! | multiple users   | P2       | P2   | P3     | P4  |
//! | single user      | P2       | P3   | P3     | P4  |
//!
//! A caller who reports that patient care is blocked right now gets P1
//! whatever the impact: one nurse who cannot scan a medication at the
//! bedside is as urgent as a ward that cannot.

use wardline_proto::common::{Impact, Priority, Urgency};

/// The priority of a ticket. Urgency and impact must be specified (the edge
/// rejects UNSPECIFIED before calling this).
pub fn priority(urgency: Urgency, impact: Impact, patient_care_blocked: bool) -> Priority {
    use Impact as I;
    use Priority::{P1, P2, P3, P4};
    use Urgency as U;
    if patient_care_blocked {
        return P1;
    }
    match (impact, urgency) {
        (I::Widespread, U::Critical | U::High) => P1,
        (I::Widespread, U::Medium) => P2,
        (I::Widespread, U::Low) => P3,
        (I::Department, U::Critical) => P1,
        (I::Department, U::High | U::Medium) => P2,
        (I::Department, U::Low) => P3,
        (I::MultipleUsers, U::Critical | U::High) => P2,
        (I::MultipleUsers, U::Medium) => P3,
        (I::MultipleUsers, U::Low) => P4,
        (I::SingleUser, U::Critical) => P2,
        (I::SingleUser, U::High | U::Medium) => P3,
        (I::SingleUser, U::Low) => P4,
        // Unspecified inputs never reach here; be conservative if they do.
        (I::Unspecified, _) | (_, U::Unspecified) => P3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Impact as I;
    use Priority::{P1, P2, P3, P4};
    use Urgency as U;

    const URGENCIES: [Urgency; 4] = [U::Critical, U::High, U::Medium, U::Low];
    const IMPACTS: [Impact; 4] = [
        I::Widespread,
        I::Department,
        I::MultipleUsers,
        I::SingleUser,
    ];

    #[test]
    fn the_matrix_as_documented() {
        let expected = [
            [P1, P1, P2, P3],
            [P1, P2, P2, P3],
            [P2, P2, P3, P4],
            [P2, P3, P3, P4],
        ];
        for (i, impact) in IMPACTS.iter().enumerate() {
            for (u, urgency) in URGENCIES.iter().enumerate() {
                assert_eq!(
                    priority(*urgency, *impact, false),
                    expected[i][u],
                    "{impact:?} x {urgency:?}"
                );
            }
        }
    }

    #[test]
    fn patient_care_blocked_is_always_p1() {
        for impact in IMPACTS {
            for urgency in URGENCIES {
                assert_eq!(priority(urgency, impact, true), P1);
            }
        }
    }

    #[test]
    fn more_urgency_or_impact_never_lowers_priority() {
        // Enum values grow as urgency/impact shrink, and as priority drops.
        for (i, impact) in IMPACTS.iter().enumerate() {
            for (u, urgency) in URGENCIES.iter().enumerate() {
                let p = priority(*urgency, *impact, false) as i32;
                if u > 0 {
                    assert!(priority(URGENCIES[u - 1], *impact, false) as i32 <= p);
                }
                if i > 0 {
                    assert!(priority(*urgency, IMPACTS[i - 1], false) as i32 <= p);
                }
            }
        }
    }
}
