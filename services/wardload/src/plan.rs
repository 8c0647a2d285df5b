//! What a run sends: the arrival mode, when it stops, the warm-up, and the
//! seeding it needs; and the ticket it sends.

use std::time::Duration;

use anyhow::Result;
use wardline_proto::common::{CallerRole, Category, Channel, Impact, Urgency};
use wardline_proto::intake::{Caller, CreateTicketRequest};

use crate::{seed, stats};

/// How the run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Fixed arrival rate per second.
    Rate(f64),
    /// As fast as `n` callers go.
    FlatOut(usize),
}

/// When the run stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many measured tickets.
    Tickets(u64),
    /// After this long (measured part).
    Duration(Duration),
}

/// A resolved plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Sending mode.
    pub mode: Mode,
    /// End of the measured part.
    pub stop: Stop,
    /// Warm-up before it.
    pub warmup: Duration,
    /// Tenants.
    pub tenants: u32,
    /// Analysts per tenant.
    pub analysts: u32,
}

impl Plan {
    /// The plan of the command line (`--rate 50` and `--duration 10` when
    /// neither is given).
    pub fn of(a: &crate::Args) -> Result<Self> {
        let mode = match (a.rate, a.flat_out) {
            (Some(_), true) => anyhow::bail!("--rate and --flat-out exclude each other"),
            (Some(r), false) => Mode::Rate(r),
            (None, true) => Mode::FlatOut(usize::from(a.concurrency)),
            (None, false) => Mode::Rate(50.0),
        };
        let stop = match (a.tickets, a.duration) {
            (Some(_), Some(_)) => anyhow::bail!("--tickets and --duration exclude each other"),
            (Some(n), None) => Stop::Tickets(n),
            (None, Some(d)) => Stop::Duration(Duration::from_secs_f64(d)),
            (None, None) => Stop::Duration(Duration::from_secs(10)),
        };
        seed::check(a.tenants, a.analysts)?;
        Ok(Self {
            mode,
            stop,
            warmup: Duration::from_secs_f64(a.warmup),
            tenants: a.tenants,
            analysts: a.analysts,
        })
    }

    /// Measured tickets, when known in advance.
    pub fn planned(&self) -> Option<u64> {
        match (self.mode, self.stop) {
            (_, Stop::Tickets(n)) => Some(n),
            (Mode::Rate(r), Stop::Duration(d)) => Some(stats::planned(r, d)),
            (Mode::FlatOut(_), Stop::Duration(_)) => None,
        }
    }

    /// Warm-up tickets of a fixed-rate run.
    pub fn warmup_tickets(&self) -> u64 {
        match self.mode {
            Mode::Rate(r) if !self.warmup.is_zero() => stats::planned(r, self.warmup),
            _ => 0,
        }
    }

    /// One line describing it.
    pub fn describe(&self) -> String {
        let mode = match self.mode {
            Mode::Rate(r) => format!("open loop at {} tickets/s", stats::rate(Some(r))),
            Mode::FlatOut(c) => format!("flat out with {c} concurrent callers"),
        };
        let stop = match self.stop {
            Stop::Tickets(n) => format!("{n} tickets"),
            Stop::Duration(d) => format!("{:.0} s", d.as_secs_f64()),
        };
        let warm = if self.warmup.is_zero() {
            String::new()
        } else {
            format!(" after {:.0} s of warm-up", self.warmup.as_secs_f64())
        };
        format!(
            "{mode}, {stop}{warm}; {} tenants x {} analysts",
            self.tenants, self.analysts
        )
    }
}

/// The CreateTicket request of ticket `i`: a printing problem (technical
/// tier, routed on the printing skill), P3 or P4, no caller contact (so
/// notification emails nobody), no patient data.
pub fn ticket_request(i: u64) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        facility_id: seed::FACILITIES[(i % 2) as usize].0.to_owned(),
        caller: Some(Caller {
            caller_id: format!("load-caller-{}", i % 50),
            name: "Load Caller".to_owned(),
            role: CallerRole::NonClinical as i32,
            email: String::new(),
            phone: String::new(),
        }),
        channel: Channel::Api as i32,
        application: "ehr".to_owned(),
        category: Category::Printing as i32,
        urgency: if i.is_multiple_of(2) {
            Urgency::Medium
        } else {
            Urgency::Low
        } as i32,
        impact: Impact::SingleUser as i32,
        patient_care_blocked: false,
        description: "Load test: the label printer at the nurses' station jams on every second \
            label."
            .to_owned(),
    }
}

/// `--rate`, `--duration`, `--limit-secs`: a positive number.
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e7 => Ok(v),
        _ => Err(format!("expected a positive number, got {s:?}")),
    }
}

/// `--warmup`: seconds, zero or more.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("expected seconds >= 0, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn plan(extra: &[&str]) -> Result<Plan> {
        let mut argv = vec!["wardline-load", "--secret", "s"];
        argv.extend_from_slice(extra);
        Plan::of(&crate::Args::try_parse_from(argv)?)
    }

    #[test]
    fn plans_default_to_fifty_a_second_for_ten_seconds() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.mode, Mode::Rate(50.0));
        assert_eq!(p.planned(), Some(500));
        let p = plan(&["--rate", "100", "--duration", "2", "--warmup", "1"]).unwrap();
        assert_eq!((p.planned(), p.warmup_tickets()), (Some(200), 100));
        assert!(
            p.describe()
                .contains("open loop at 100.0 tickets/s, 2 s after 1 s of warm-up")
        );
        let p = plan(&["--flat-out", "--concurrency", "8", "--tickets", "40"]).unwrap();
        assert_eq!((p.mode, p.planned()), (Mode::FlatOut(8), Some(40)));
        assert!(
            plan(&["--flat-out", "--duration", "5"])
                .unwrap()
                .planned()
                .is_none()
        );
        assert!(plan(&["--tenants", "0"]).is_err());
        assert!(plan(&["--rate", "-1"]).is_err());
        assert!(plan(&["--rate", "5", "--flat-out"]).is_err());
    }

    #[test]
    fn tickets_are_technical_and_carry_no_contact() {
        let t = ticket_request(3);
        assert_eq!(t.category, Category::Printing as i32);
        assert_eq!(t.urgency, Urgency::Low as i32);
        let caller = t.caller.unwrap();
        assert!(caller.email.is_empty() && caller.phone.is_empty());
        assert_ne!(ticket_request(3).request_id, ticket_request(3).request_id);
    }
}
