use wardline_proto::events::DeliveryStatus;
use wardline_proto::notification::{
    AttemptOutcome, ChannelAddress, Delivery, DeliveryAttempt, DeliveryState, ErrorClass,
    EventKind, NotificationChannel, QuietHours, Recipient, RecipientKind, Source, Subscription,
    WebhookEndpoint,
};

use super::{Zone, dash, label, priority, time};
use crate::table::{Table, key_values};

/// Where a delivery stands in one word: its outcome once finished
/// (`delivered`, `failed`, `dead-lettered`), else its state (`pending`,
/// `retry-scheduled`, `deferred`).
pub fn status(d: &Delivery) -> String {
    if d.state == DeliveryState::Finished as i32 {
        label::<DeliveryStatus>(d.outcome)
    } else {
        label::<DeliveryState>(d.state)
    }
}

/// `email:grace@example.org`.
pub fn address(a: &ChannelAddress) -> String {
    format!("{}:{}", label::<NotificationChannel>(a.channel), a.address)
}

/// `ticket-assigned=email+sms` (`ticket-assigned=` when muted).
pub fn subscription(s: &Subscription) -> String {
    let channels: Vec<String> = s
        .channels
        .iter()
        .map(|c| label::<NotificationChannel>(*c))
        .collect();
    format!(
        "{}={}",
        label::<EventKind>(s.event_kind),
        channels.join("+")
    )
}

/// `22:00-07:00@America/Chicago`, `-` when none.
pub fn quiet_hours(q: Option<&QuietHours>) -> String {
    q.map_or("-".to_owned(), |q| {
        format!("{}-{}@{}", q.start, q.end, q.time_zone)
    })
}

fn subscriptions(r: &Recipient) -> Vec<String> {
    r.preferences
        .as_ref()
        .map(|p| p.subscriptions.iter().map(subscription).collect())
        .unwrap_or_default()
}

fn joined(v: Vec<String>, sep: &str, none: &str) -> String {
    if v.is_empty() {
        none.to_owned()
    } else {
        v.join(sep)
    }
}

// ------------------------------------------------------------------ recipients

/// Recipients, one per row.
pub fn recipient_table(list: &[Recipient]) -> Table {
    let mut table = Table::of("RECIPIENT|KIND|SUBJECT|NAME|ADDRESSES|QUIET HOURS|SUBSCRIPTIONS");
    for r in list {
        table.row([
            r.recipient_id.clone(),
            label::<RecipientKind>(r.kind),
            dash(&r.subject_id),
            r.name.clone(),
            joined(r.addresses.iter().map(address).collect(), " ", "-"),
            quiet_hours(r.preferences.as_ref().and_then(|p| p.quiet_hours.as_ref())),
            joined(subscriptions(r), " ", "defaults"),
        ]);
    }
    table
}

/// One recipient, every field.
pub fn recipient_details(r: &Recipient, zone: Zone) -> String {
    key_values(&[
        ("recipient", r.recipient_id.clone()),
        ("tenant", r.tenant_id.clone()),
        ("kind", label::<RecipientKind>(r.kind)),
        ("subject", dash(&r.subject_id)),
        ("name", r.name.clone()),
        (
            "addresses",
            joined(r.addresses.iter().map(address).collect(), " ", "-"),
        ),
        (
            "subscriptions",
            joined(subscriptions(r), " ", "the defaults of its kind"),
        ),
        (
            "quiet hours",
            quiet_hours(r.preferences.as_ref().and_then(|p| p.quiet_hours.as_ref())),
        ),
        ("preferences from", label::<Source>(r.preferences_source)),
        ("version", r.version.to_string()),
        ("created", time(r.created_at.as_ref(), zone)),
        ("updated", time(r.updated_at.as_ref(), zone)),
    ])
}

// ------------------------------------------------------------------ webhooks

/// Endpoints, one per row.
pub fn webhook_table(list: &[WebhookEndpoint], zone: Zone) -> Table {
    let mut table = Table::of("ENDPOINT|SECRET ISSUED|PREVIOUS UNTIL|EVENTS|URL");
    for w in list {
        table.row([
            w.endpoint_id.clone(),
            time(w.secret_issued_at.as_ref(), zone),
            time(w.previous_secret_expires_at.as_ref(), zone),
            w.event_kinds
                .iter()
                .map(|k| label::<EventKind>(*k))
                .collect::<Vec<_>>()
                .join(","),
            w.url.clone(),
        ]);
    }
    table
}

/// One endpoint, and its new secret when notification just issued one.
pub fn webhook_details(w: &WebhookEndpoint, secret: Option<&str>, zone: Zone) -> String {
    let mut pairs = vec![
        ("endpoint", w.endpoint_id.clone()),
        ("tenant", w.tenant_id.clone()),
        ("url", w.url.clone()),
        (
            "events",
            w.event_kinds
                .iter()
                .map(|k| label::<EventKind>(*k))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("created", time(w.created_at.as_ref(), zone)),
        ("secret issued", time(w.secret_issued_at.as_ref(), zone)),
        (
            "previous secret until",
            time(w.previous_secret_expires_at.as_ref(), zone),
        ),
    ];
    if let Some(s) = secret {
        pairs.push(("secret", s.to_owned()));
    }
    let mut out = key_values(&pairs);
    if secret.is_some() {
        out.push_str(
            "\nthe secret is shown only now: store it where the receiver verifies Wardline-Signature\n",
        );
    }
    out
}

// ------------------------------------------------------------------ deliveries

/// Deliveries, one per row (never a message body: there is none to show).
pub fn delivery_table(list: &[Delivery], zone: Zone) -> Table {
    let mut table = Table::of("DELIVERY|CREATED|TICKET|PRI|EVENT|CHANNEL|STATUS|ATTEMPTS|NEXT|TO");
    for d in list {
        table.row([
            d.delivery_id.clone(),
            time(d.created_at.as_ref(), zone),
            dash(&d.number),
            priority(d.priority).to_owned(),
            label::<EventKind>(d.event_kind),
            label::<NotificationChannel>(d.channel),
            status(d),
            d.attempt_count.to_string(),
            time(d.next_attempt_at.as_ref(), zone),
            d.address.clone(),
        ]);
    }
    table
}

/// Attempts, oldest first.
pub fn attempt_table(attempts: &[DeliveryAttempt], zone: Zone) -> Table {
    let mut table = Table::of("#|STARTED|FINISHED|RESULT|CODE|ERROR|NEXT RETRY");
    for a in attempts {
        table.row([
            a.attempt.to_string(),
            time(a.started_at.as_ref(), zone),
            time(a.finished_at.as_ref(), zone),
            label::<AttemptOutcome>(a.outcome),
            if a.status_code == 0 {
                "-".to_owned()
            } else {
                a.status_code.to_string()
            },
            label::<ErrorClass>(a.error_class),
            time(a.next_retry_at.as_ref(), zone),
        ]);
    }
    table
}

/// One delivery with its attempts.
pub fn delivery_details(d: &Delivery, zone: Zone) -> String {
    let mut out = key_values(&[
        ("delivery", d.delivery_id.clone()),
        ("tenant", d.tenant_id.clone()),
        ("event", label::<EventKind>(d.event_kind)),
        ("source event", d.source_event_id.clone()),
        (
            "ticket",
            format!("{} {}", dash(&d.number), dash(&d.ticket_id)),
        ),
        ("priority", priority(d.priority).to_owned()),
        ("channel", label::<NotificationChannel>(d.channel)),
        ("recipient", dash(&d.recipient_id)),
        ("endpoint", dash(&d.endpoint_id)),
        ("to", d.address.clone()),
        ("state", label::<DeliveryState>(d.state)),
        ("outcome", label::<DeliveryStatus>(d.outcome)),
        ("attempts", d.attempt_count.to_string()),
        ("next attempt", time(d.next_attempt_at.as_ref(), zone)),
        ("created", time(d.created_at.as_ref(), zone)),
        ("updated", time(d.updated_at.as_ref(), zone)),
    ]);
    if !d.attempts.is_empty() {
        out.push('\n');
        out.push_str(&attempt_table(&d.attempts, zone).render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;
    use wardline_proto::notification::Preferences;

    fn delivery(state: DeliveryState, outcome: DeliveryStatus) -> Delivery {
        Delivery {
            delivery_id: "d-1".into(),
            tenant_id: "stmarys".into(),
            event_kind: EventKind::TicketReceived as i32,
            channel: NotificationChannel::Email as i32,
            address: "rn@example.org".into(),
            number: "STM-000001".into(),
            priority: 1,
            state: state as i32,
            outcome: outcome as i32,
            attempt_count: 1,
            created_at: Some(Timestamp {
                seconds: 1_764_064_000,
                nanos: 0,
            }),
            attempts: vec![DeliveryAttempt {
                attempt: 1,
                outcome: AttemptOutcome::Succeeded as i32,
                status_code: 250,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_delivery_reads_its_outcome_once_finished() {
        let done = delivery(DeliveryState::Finished, DeliveryStatus::Delivered);
        assert_eq!(status(&done), "delivered");
        let waiting = delivery(DeliveryState::RetryScheduled, DeliveryStatus::Unspecified);
        assert_eq!(status(&waiting), "retry-scheduled");
        let table = delivery_table(std::slice::from_ref(&done), Zone::Utc).render();
        assert!(
            table.contains("STM-000001  P1   ticket-received  email"),
            "{table}"
        );
        let details = delivery_details(&done, Zone::Utc);
        assert!(
            details.contains("succeeded") && details.contains("250"),
            "{details}"
        );
    }

    #[test]
    fn recipients_print_as_the_command_line_reads_them() {
        let r = Recipient {
            recipient_id: "r-1".into(),
            kind: RecipientKind::OnCall as i32,
            subject_id: "rn.okonkwo".into(),
            name: "Grace".into(),
            addresses: vec![ChannelAddress {
                channel: NotificationChannel::Pager as i32,
                address: "pd-key".into(),
            }],
            preferences: Some(Preferences {
                subscriptions: vec![Subscription {
                    event_kind: EventKind::SlaBreached as i32,
                    channels: vec![NotificationChannel::Pager as i32],
                }],
                quiet_hours: None,
            }),
            ..Default::default()
        };
        let table = recipient_table(std::slice::from_ref(&r)).render();
        assert!(
            table.contains("on-call") && table.contains("pager:pd-key"),
            "{table}"
        );
        assert!(table.contains("sla-breached=pager"), "{table}");
        let w = WebhookEndpoint {
            endpoint_id: "e-1".into(),
            url: "https://hooks.example.org/w".into(),
            event_kinds: vec![EventKind::TicketAssigned as i32],
            ..Default::default()
        };
        assert!(webhook_details(&w, Some("s3cret"), Zone::Utc).contains("shown only now"));
        assert!(!webhook_details(&w, None, Zone::Utc).contains("secret:"));
    }
}
