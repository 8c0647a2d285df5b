//! The command line of notification's commands (recipients and their
//! preferences, webhook endpoints, deliveries) and the parsers of their
//! compact values: `ticket-assigned=email+sms` (a subscription; nothing
//! after `=` mutes the kind) and `22:00-07:00@America/Chicago` (quiet
//! hours). What wardctl prints for these is what they parse.

use clap::{Args, Subcommand};
use wardline_proto::events::DeliveryStatus;
use wardline_proto::notification::{
    DeliveryState, EventKind, NotificationChannel, QuietHours, RecipientKind, Subscription,
};

use super::{enum_value, proto_enum};

/// `wardctl recipient ...`.
#[derive(Debug, Subcommand)]
pub enum RecipientCommand {
    /// Create or replace a recipient of --tenant (by --id, or by kind and subject).
    Upsert(Box<UpsertRecipientArgs>),
    /// --tenant's recipients, by id.
    List(ListRecipientsArgs),
    /// Replace a recipient's preferences (what is not given is cleared).
    Preferences {
        /// Recipient id.
        id: String,
        #[command(flatten)]
        prefs: PreferenceArgs,
        /// Apply only at this version (else ABORTED).
        #[arg(long)]
        expected_version: Option<u64>,
    },
}

/// `wardctl recipient upsert`.
#[derive(Debug, Args)]
pub struct UpsertRecipientArgs {
    /// Recipient id, to replace that recipient (else kind and subject name it).
    #[arg(long)]
    pub id: Option<String>,
    /// Kind.
    #[arg(long, value_parser = proto_enum::<RecipientKind>())]
    pub kind: RecipientKind,
    /// caller_id or analyst_id (not for custom).
    #[arg(long)]
    pub subject: Option<String>,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Email address.
    #[arg(long)]
    pub email: Option<String>,
    /// Mobile for SMS in E.164, e.g. +13125550100.
    #[arg(long)]
    pub sms: Option<String>,
    /// Pager key.
    #[arg(long)]
    pub pager: Option<String>,
    /// Preferences (none given: keep the current ones, defaults on create).
    #[command(flatten)]
    pub prefs: PreferenceArgs,
    /// Apply only at this version (else ABORTED).
    #[arg(long)]
    pub expected_version: Option<u64>,
}

/// Subscriptions and quiet hours.
#[derive(Debug, Args, Default)]
pub struct PreferenceArgs {
    /// KIND=CHANNEL[+CHANNEL...], e.g. ticket-assigned=email+sms; KIND= mutes
    /// it (repeatable; kinds not given follow the recipient kind's default).
    #[arg(long = "subscribe", value_parser = parse_subscription)]
    pub subscriptions: Vec<SubscriptionArg>,
    /// HH:MM-HH:MM@ZONE: non-urgent messages wait until it ends.
    #[arg(long, value_parser = parse_quiet_hours)]
    pub quiet_hours: Option<QuietHoursArg>,
}

impl PreferenceArgs {
    /// True when nothing was given.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty() && self.quiet_hours.is_none()
    }
}

/// `wardctl recipient list`.
#[derive(Debug, Args)]
pub struct ListRecipientsArgs {
    /// Only these kinds (repeatable or comma-separated).
    #[arg(long = "kind", value_parser = proto_enum::<RecipientKind>(), value_delimiter = ',')]
    pub kinds: Vec<RecipientKind>,
    /// Only this subject (caller_id or analyst_id).
    #[arg(long)]
    pub subject: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl webhook ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint of --tenant; prints its signing secret once.
    Create {
        /// https URL.
        #[arg(long)]
        url: String,
        /// Event kinds to post (repeatable or comma-separated).
        #[arg(long = "event", value_parser = proto_enum::<EventKind>(), value_delimiter = ',', required = true)]
        events: Vec<EventKind>,
    },
    /// Issue a new secret; the old one signs too until the overlap ends.
    Rotate {
        /// Endpoint id.
        id: String,
        /// Hours the old secret stays valid (1-168).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=168))]
        overlap_hours: u32,
    },
    /// --tenant's endpoints, oldest first (never with secrets).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
    },
    /// Delete an endpoint; its pending deliveries end failed.
    Delete {
        /// Endpoint id.
        id: String,
    },
}

/// `wardctl delivery ...`.
#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// --tenant's deliveries, newest first.
    List(ListDeliveriesArgs),
    /// One delivery with every attempt.
    Get {
        /// Delivery id.
        id: String,
    },
    /// A fresh retry schedule for a failed or dead-lettered delivery.
    Retry {
        /// Delivery id.
        id: String,
    },
    /// Deliveries that exhausted their retries, newest first, with their attempts.
    DeadLetters {
        /// Only these channels (repeatable or comma-separated).
        #[arg(long = "channel", value_parser = proto_enum::<NotificationChannel>(), value_delimiter = ',')]
        channels: Vec<NotificationChannel>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
    },
}

/// `wardctl delivery list`.
#[derive(Debug, Args)]
pub struct ListDeliveriesArgs {
    /// Only about this ticket (id or number).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Only these event kinds (repeatable or comma-separated).
    #[arg(long = "event", value_parser = proto_enum::<EventKind>(), value_delimiter = ',')]
    pub events: Vec<EventKind>,
    /// Only these channels (repeatable or comma-separated).
    #[arg(long = "channel", value_parser = proto_enum::<NotificationChannel>(), value_delimiter = ',')]
    pub channels: Vec<NotificationChannel>,
    /// Only these states (repeatable or comma-separated).
    #[arg(long = "state", value_parser = proto_enum::<DeliveryState>(), value_delimiter = ',')]
    pub states: Vec<DeliveryState>,
    /// Only these outcomes (repeatable or comma-separated).
    #[arg(long = "outcome", value_parser = proto_enum::<DeliveryStatus>(), value_delimiter = ',')]
    pub outcomes: Vec<DeliveryStatus>,
    /// Only to this recipient id.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Only to this webhook endpoint id.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// At most this many (pages are followed until reached).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `KIND=CHANNEL[+CHANNEL...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionArg {
    /// Event kind.
    pub kind: EventKind,
    /// Channels; empty mutes the kind.
    pub channels: Vec<NotificationChannel>,
}

impl SubscriptionArg {
    /// As sent.
    pub fn wire(&self) -> Subscription {
        Subscription {
            event_kind: self.kind as i32,
            channels: self.channels.iter().map(|c| *c as i32).collect(),
        }
    }
}

/// `HH:MM-HH:MM@ZONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietHoursArg {
    /// Local start.
    pub start: String,
    /// Local end (earlier than start: the next day).
    pub end: String,
    /// IANA zone.
    pub time_zone: String,
}

impl QuietHoursArg {
    /// As sent.
    pub fn wire(&self) -> QuietHours {
        QuietHours {
            start: self.start.clone(),
            end: self.end.clone(),
            time_zone: self.time_zone.clone(),
        }
    }
}

/// Parses `ticket-assigned=email+sms` (`ticket-assigned=` mutes it).
pub fn parse_subscription(s: &str) -> Result<SubscriptionArg, String> {
    let (kind, channels) = s.split_once('=').ok_or_else(|| {
        format!("expected KIND=CHANNEL[+CHANNEL], e.g. ticket-assigned=email+sms; got {s:?}")
    })?;
    let channels = channels
        .split('+')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| enum_value(c, "channel"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SubscriptionArg {
        kind: enum_value(kind.trim(), "event kind")?,
        channels,
    })
}

fn is_hhmm(s: &str) -> bool {
    chrono::NaiveTime::parse_from_str(s, "%H:%M").is_ok() && s.len() == 5
}

/// Parses `22:00-07:00@America/Chicago`.
pub fn parse_quiet_hours(s: &str) -> Result<QuietHoursArg, String> {
    let bad = || format!("expected HH:MM-HH:MM@ZONE, e.g. 22:00-07:00@America/Chicago; got {s:?}");
    let (window, zone) = s.split_once('@').ok_or_else(bad)?;
    let (start, end) = window.split_once('-').ok_or_else(bad)?;
    if !is_hhmm(start) || !is_hhmm(end) {
        return Err(bad());
    }
    if zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!(
            "unknown time zone {zone:?} (an IANA name, e.g. America/Chicago)"
        ));
    }
    Ok(QuietHoursArg {
        start: start.to_owned(),
        end: end.to_owned(),
        time_zone: zone.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cli::tests::parse;

    #[test]
    fn subscriptions_and_quiet_hours_parse() {
        let s = parse_subscription("ticket-assigned=email+sms").unwrap();
        assert_eq!(s.kind, EventKind::TicketAssigned);
        assert_eq!(
            s.channels,
            vec![NotificationChannel::Email, NotificationChannel::Sms]
        );
        assert!(
            parse_subscription("ticket-assigned=")
                .unwrap()
                .channels
                .is_empty()
        );
        assert!(
            parse_subscription("ticket-assigned=fax")
                .unwrap_err()
                .contains("unknown channel")
        );
        assert!(parse_subscription("email").is_err());
        let q = parse_quiet_hours("22:00-07:00@America/Chicago").unwrap();
        assert_eq!((q.start.as_str(), q.end.as_str()), ("22:00", "07:00"));
        assert!(parse_quiet_hours("22:00-07:00@Mars/Base").is_err());
        assert!(parse_quiet_hours("22-07@UTC").is_err());
        let cli = parse(&[
            "delivery",
            "list",
            "--outcome",
            "dead-lettered",
            "--state",
            "retry-scheduled",
        ])
        .unwrap();
        let Command::Delivery(DeliveryCommand::List(l)) = cli.command else {
            panic!("not delivery list")
        };
        assert_eq!(l.outcomes, vec![DeliveryStatus::DeadLettered]);
        assert_eq!(l.states, vec![DeliveryState::RetryScheduled]);
    }
}
