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

#[cfg(test)]
mod tests {
    use super::*;

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
