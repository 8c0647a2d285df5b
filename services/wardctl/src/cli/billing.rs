//! The command line of billing's commands (contracts, usage, charges,
//! unbilled calls, invoices) and the parsers of their compact values:
//! dates `2026-03-01` and periods `2026-03`. A contract version is a file in
//! the proto's own JSON (or YAML) shape, which billing validates: wardctl
//! holds no copy of billing's rules.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use wardline_proto::billing::{
    BusinessHours, DayOfWeek as BillingDay, ExportFormat, InvoiceStatus, LineKind,
};

use super::proto_enum;
use super::routing::day_name;

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
    /// The version as a `wardline.billing.v1.Contract` in the proto3 JSON
    /// mapping, JSON (`.json`) or YAML (any other name); e.g.
    /// services/wardctl/scenarios/example-contract.yaml. Billing validates
    /// it and names the field at fault.
    #[arg(long)]
    pub file: PathBuf,
    /// Local date in the tenant's zone from which the version applies,
    /// YYYY-MM-DD (replaces the file's effectiveFrom). A first version may
    /// start on any date not in an issued period; a later one must start
    /// after today and after the latest.
    #[arg(long, value_parser = parse_date)]
    pub effective_from: Option<String>,
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
    #[arg(long = "kind", value_parser = proto_enum::<LineKind>(), value_delimiter = ',')]
    pub kinds: Vec<LineKind>,
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
        #[arg(long, value_parser = proto_enum::<ExportFormat>())]
        format: ExportFormat,
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
    #[arg(long = "status", value_parser = proto_enum::<InvoiceStatus>(), value_delimiter = ',')]
    pub statuses: Vec<InvoiceStatus>,
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

/// Basis points as a percentage without trailing zeros: 2500 → `25`,
/// 1250 → `12.5`, 1 → `0.01`.
pub fn format_bps(bps: u32) -> String {
    let (whole, frac) = (bps / 100, bps % 100);
    match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
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

/// Business hours compactly, consecutive days with the same hours joined:
/// `mon-fri:08:00-17:00`, `sat:09:00-13:00`.
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
        let name = |d: i32| BillingDay::try_from(d).map_or("?", day_name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::parse;
    use crate::cli::{Command, ContractCommand};

    #[test]
    fn billing_values_parse_and_print() {
        assert_eq!(parse_date(" 2026-03-01 ").unwrap(), "2026-03-01");
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date("2026-3-1").is_err());
        assert!(is_period("2026-03") && !is_period("2026-13") && !is_period("0000-01"));
        assert_eq!(format_bps(2500), "25");
        assert_eq!(format_bps(1250), "12.5");
        assert_eq!(format_bps(1), "0.01");
        let day = |d: BillingDay, open: &str| BusinessHours {
            day: d as i32,
            open: open.into(),
            close: "17:00".into(),
        };
        use BillingDay::*;
        let week = [
            day(Tuesday, "08:00"),
            day(Monday, "08:00"),
            day(Wednesday, "08:00"),
            day(Saturday, "09:00"),
        ];
        assert_eq!(
            format_hours(&week),
            vec!["mon-wed:08:00-17:00", "sat:09:00-17:00"]
        );
    }

    #[test]
    fn contract_create_reads_a_file() {
        let cli = parse(&[
            "contract",
            "create",
            "--file",
            "c.yaml",
            "--effective-from",
            "2026-03-01",
        ])
        .unwrap();
        let Command::Contract(ContractCommand::Create(a)) = cli.command else {
            panic!("not contract create")
        };
        assert_eq!(a.file, PathBuf::from("c.yaml"));
        assert_eq!(a.effective_from.as_deref(), Some("2026-03-01"));
        assert!(
            parse(&["contract", "create"]).is_err(),
            "--file is required"
        );
        let cli = parse(&["charges", "--kind", "overage,tier-price"]).unwrap();
        let Command::Charges(c) = cli.command else {
            panic!("not charges")
        };
        assert_eq!(c.kinds, vec![LineKind::Overage, LineKind::TierPrice]);
    }
}
