//! SLA targets and the deadlines they set.

use chrono::{DateTime, Duration, Utc};

use super::Priority;

/// A tenant's targets: minutes per priority (index 0 = P1) and the
/// acknowledgement timeout of an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub response_minutes: [u32; 4],
    pub resolution_minutes: [u32; 4],
    pub ack_timeout_seconds: u32,
    pub pause_resolution_on_hold: bool,
    /// True when the tenant has set its own.
    pub tenant_override: bool,
    pub version: u64,
}

impl Default for Targets {
    /// Shipped defaults: P1 15 min / 4 h, P2 30 min / 8 h, P3 4 h / 24 h,
    /// P4 8 h / 72 h; an assignment must be acknowledged within 2 minutes.
    fn default() -> Self {
        Self {
            response_minutes: [15, 30, 240, 480],
            resolution_minutes: [240, 480, 1440, 4320],
            ack_timeout_seconds: 120,
            pause_resolution_on_hold: false,
            tenant_override: false,
            version: 0,
        }
    }
}

fn index(p: Priority) -> usize {
    match p {
        Priority::P1 | Priority::Unspecified => 0,
        Priority::P2 => 1,
        Priority::P3 => 2,
        Priority::P4 => 3,
    }
}

impl Targets {
    /// When the first response (acknowledgement) is due.
    pub fn response_due(&self, priority: Priority, created: DateTime<Utc>) -> DateTime<Utc> {
        created + Duration::minutes(i64::from(self.response_minutes[index(priority)]))
    }

    /// When resolution is due.
    pub fn resolution_due(&self, priority: Priority, created: DateTime<Utc>) -> DateTime<Utc> {
        created + Duration::minutes(i64::from(self.resolution_minutes[index(priority)]))
    }

    /// When an assignment made at `at` must be acknowledged.
    pub fn ack_deadline(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + Duration::seconds(i64::from(self.ack_timeout_seconds))
    }

    /// Why these targets are unusable, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for i in 0..4 {
            let (r, s) = (self.response_minutes[i], self.resolution_minutes[i]);
            if r == 0 || r > 60 * 24 * 30 {
                return Err(format!("targets[P{}].response_minutes: 1-43200", i + 1));
            }
            if s <= r || s > 60 * 24 * 90 {
                return Err(format!(
                    "targets[P{}].resolution_minutes: longer than the response target, at most 129600",
                    i + 1
                ));
            }
            if i > 0 && r < self.response_minutes[i - 1] {
                return Err(format!(
                    "targets[P{}].response_minutes: must not be shorter than P{}'s",
                    i + 1,
                    i
                ));
            }
        }
        if !(10..=3600).contains(&self.ack_timeout_seconds) {
            return Err("ack_timeout_seconds: 10-3600".into());
        }
        Ok(())
    }
}

/// A tenant's own internal targets: per priority (index 0 = P1), the
/// response and resolution minutes, or none. Stricter than the contract's,
/// they alert and never credit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalTargets {
    pub minutes: [Option<(u32, u32)>; 4],
    pub version: u64,
}

impl InternalTargets {
    /// Sets `priority`'s targets; an error names the field when the
    /// priority already has an entry.
    pub fn set(
        &mut self,
        priority: Priority,
        response: u32,
        resolution: u32,
    ) -> Result<(), String> {
        let slot = &mut self.minutes[index(priority)];
        if slot.is_some() || priority == Priority::Unspecified {
            return Err("priority: each of P1-P4 at most once".into());
        }
        *slot = Some((response, resolution));
        Ok(())
    }

    /// Why these targets are unusable beside the contract's, naming the
    /// field: each must be stricter than (or equal to) the contractual one.
    pub fn validate(&self, contract: &Targets) -> Result<(), String> {
        for (i, m) in self.minutes.iter().enumerate() {
            let Some((r, s)) = *m else { continue };
            let p = i + 1;
            let (cr, cs) = (contract.response_minutes[i], contract.resolution_minutes[i]);
            if r == 0 || r > cr {
                return Err(format!(
                    "targets[P{p}].response_minutes: 1 to the contractual {cr}"
                ));
            }
            if s <= r || s > cs {
                return Err(format!(
                    "targets[P{p}].resolution_minutes: longer than the response target, at most the contractual {cs}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_targets_are_stricter_than_the_contract() {
        let contract = Targets::default();
        let mut t = InternalTargets::default();
        t.set(Priority::P1, 5, 60).unwrap();
        t.validate(&contract).unwrap();
        assert!(
            t.set(Priority::P1, 5, 60)
                .unwrap_err()
                .starts_with("priority")
        );
        let mut loose = InternalTargets::default();
        loose.set(Priority::P2, 31, 100).unwrap();
        assert!(
            loose
                .validate(&contract)
                .unwrap_err()
                .starts_with("targets[P2].response_minutes")
        );
        let mut upside_down = InternalTargets::default();
        upside_down.set(Priority::P3, 10, 10).unwrap();
        assert!(
            upside_down
                .validate(&contract)
                .unwrap_err()
                .starts_with("targets[P3].resolution_minutes")
        );
    }

    #[test]
    fn defaults_are_valid_and_tighter_for_higher_priority() {
        let t = Targets::default();
        t.validate().unwrap();
        let now = Utc::now();
        assert!(t.response_due(Priority::P1, now) < t.response_due(Priority::P2, now));
        assert_eq!(
            t.response_due(Priority::P1, now) - now,
            Duration::minutes(15)
        );
        assert_eq!(t.ack_deadline(now) - now, Duration::seconds(120));
    }

    #[test]
    fn validation_names_the_field() {
        let mut t = Targets::default();
        t.response_minutes[1] = 5;
        assert!(
            t.validate()
                .unwrap_err()
                .starts_with("targets[P2].response_minutes")
        );
        let mut t = Targets::default();
        t.resolution_minutes[0] = 1;
        assert!(
            t.validate()
                .unwrap_err()
                .starts_with("targets[P1].resolution_minutes")
        );
        let t = Targets {
            ack_timeout_seconds: 1,
            ..Default::default()
        };
        assert!(t.validate().unwrap_err().starts_with("ack_timeout_seconds"));
        // The proto: resolution_minutes > response_minutes.
        let mut t = Targets::default();
        t.resolution_minutes[3] = t.response_minutes[3];
        assert!(
            t.validate()
                .unwrap_err()
                .starts_with("targets[P4].resolution_minutes")
        );
    }
}
