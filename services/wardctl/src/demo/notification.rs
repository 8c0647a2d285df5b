//! The notification half of `wardctl demo`: each hospital's supervisor as a
//! recipient who hears every new call by email, then, after the traffic,
//! the deliveries notification made for the run's tickets, counted by
//! channel and status, and where the messages went.
//!
//! Notification is optional for the demo, like routing and billing: when
//! nothing answers at `--notification-url`, [`connect`] says why and the
//! demo goes on without it. A delivery that failed or is still waiting is
//! reported, not fatal (an SMTP relay may just be slow or down).
//!
//! Callers and analysts need no seeding: notification learns them from
//! intake's and routing's events. SMS and pager need gateways
//! (`NOTIFICATION_SMS_URL`, `NOTIFICATION_PAGER_URL`) that `scripts/demo.sh`
//! does not configure, and an unconfigured channel records nothing, so the
//! demo seeds email only.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use secrecy::SecretString;
use serde_json::{Value, json};
use tonic::Code;
use wardline_proto::intake::Ticket;
use wardline_proto::notification::{
    ChannelAddress, Delivery, DeliveryState, EventKind, ListDeliveriesRequest,
    ListRecipientsRequest, NotificationChannel, Preferences, Recipient, RecipientKind,
    Subscription, UpsertRecipientRequest,
};

use super::Progress;
use super::routing::{Reach, reach};
use crate::commands::notification::{list_deliveries, list_recipients};
use crate::grpc::Session;
use crate::render::Zone;
use crate::render::notification as render;

/// A recipient the demo adds to a hospital.
#[derive(Debug, Clone, Copy)]
pub struct DemoRecipient {
    /// Tenant slug.
    pub tenant: &'static str,
    /// Kind.
    pub kind: RecipientKind,
    /// Subject (analyst id or rota key).
    pub subject: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Email address (fictional `.example` domains).
    pub email: &'static str,
    /// Who they are, for the progress output.
    pub story: &'static str,
}

/// Each hospital's supervisor. St Mary's is the roster's `sup.haddad`
/// (notification knows her from routing already; the upsert sets her
/// address and subscriptions); Lakeside's supervisor is not an analyst.
pub const RECIPIENTS: [DemoRecipient; 2] = [
    DemoRecipient {
        tenant: "stmarys",
        kind: RecipientKind::Supervisor,
        subject: "sup.haddad",
        name: "Nadia Haddad",
        email: "nadia.haddad@wardline.example",
        story: "St Mary's service desk supervisor",
    },
    DemoRecipient {
        tenant: "lakeside",
        kind: RecipientKind::Supervisor,
        subject: "sup.brennan",
        name: "Siobhan Brennan, RN",
        email: "siobhan.brennan@lakeside.example",
        story: "Lakeside nursing supervisor",
    },
];

/// What the supervisors hear, by email: every new call, escalations and
/// SLA breaches.
pub const SUPERVISOR_KINDS: [EventKind; 3] = [
    EventKind::TicketReceived,
    EventKind::TicketEscalated,
    EventKind::SlaBreached,
];

impl DemoRecipient {
    /// The UpsertRecipient request (a fixed request id: re-running is a no-op).
    pub fn request(&self) -> UpsertRecipientRequest {
        let email = NotificationChannel::Email as i32;
        UpsertRecipientRequest {
            request_id: format!("demo-recipient-{}-{}", self.tenant, self.subject),
            recipient: Some(Recipient {
                kind: self.kind as i32,
                subject_id: self.subject.to_owned(),
                name: self.name.to_owned(),
                addresses: vec![ChannelAddress {
                    channel: email,
                    address: self.email.to_owned(),
                }],
                preferences: Some(Preferences {
                    subscriptions: SUPERVISOR_KINDS
                        .iter()
                        .map(|k| Subscription {
                            event_kind: *k as i32,
                            channels: vec![email],
                        })
                        .collect(),
                    quiet_hours: None,
                }),
                ..Default::default()
            }),
            expected_version: 0,
        }
    }
}

/// Connects to notification and makes one call (see [`reach`]).
pub async fn connect(url: &str, timeout: Duration, token: &SecretString) -> Result<Reach> {
    reach(url, timeout, token, "notification", |s| async move {
        // Notification answers for one tenant per call: ask as the first hospital.
        let s = s
            .for_tenant(Some(super::TENANTS[0].id))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        s.recipients()
            .list_recipients(ListRecipientsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
    })
    .await
}

/// Upserts each hospital's supervisor (fixed request ids) and shows the
/// recipients of their kind as notification holds them.
pub(super) async fn ensure_recipients(notification: &Session, p: &Progress) -> Result<()> {
    for r in &RECIPIENTS {
        let scoped = notification.for_tenant(Some(r.tenant))?;
        let note = match scoped.recipients().upsert_recipient(r.request()).await {
            Ok(_) => "",
            // The fixed request id served an older definition: keep it.
            Err(s) if s.code() == Code::FailedPrecondition => " (kept as stored)",
            Err(s) => {
                return Err(anyhow::Error::new(s)
                    .context(format!("adding {}'s supervisor {}", r.tenant, r.subject)));
            }
        };
        p.line(&format!(
            "{:<9} {:<12} {} <{}>: every new call, escalations, SLA breaches by email{note}",
            r.tenant, r.subject, r.story, r.email
        ));
        let req = ListRecipientsRequest {
            kinds: vec![
                RecipientKind::Supervisor as i32,
                RecipientKind::OnCall as i32,
            ],
            ..Default::default()
        };
        let held = list_recipients(&scoped, req, 20).await?;
        p.block(&render::recipient_table(&held).render());
    }
    p.line("callers and analysts are recipients already (from intake's and routing's events);");
    p.line("SMS and pager are off here: notification has no NOTIFICATION_SMS_URL / NOTIFICATION_PAGER_URL");
    Ok(())
}

/// The run's deliveries per ticket id.
pub type Deliveries = HashMap<String, Vec<Delivery>>;

/// True when every ticket has a delivery and none waits for its first attempt.
pub fn settled(created: &[Ticket], deliveries: &Deliveries) -> bool {
    created.iter().all(|t| {
        deliveries.get(&t.ticket_id).is_some_and(|d| {
            !d.is_empty() && d.iter().all(|d| d.state != DeliveryState::Pending as i32)
        })
    })
}

async fn read_deliveries(notification: &Session, created: &[Ticket]) -> Result<Deliveries> {
    let mut out = HashMap::new();
    for t in created {
        let session = notification.for_tenant(Some(&t.tenant_id))?;
        let req = ListDeliveriesRequest {
            ticket_id: t.ticket_id.clone(),
            ..Default::default()
        };
        out.insert(
            t.ticket_id.clone(),
            list_deliveries(&session, req, 500).await?,
        );
    }
    Ok(out)
}

/// Re-reads the run's deliveries until they are [`settled`] and stopped
/// growing, or `wait` passes; returns them as last read.
async fn wait_delivered(
    notification: &Session,
    created: &[Ticket],
    wait: Duration,
) -> Result<Deliveries> {
    let deadline = Instant::now() + wait;
    let mut last = read_deliveries(notification, created).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = read_deliveries(notification, created).await?;
        let count = |d: &Deliveries| d.values().map(Vec::len).sum::<usize>();
        let done = settled(created, &now) && count(&now) == count(&last);
        if done || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Files in `dir` ending in `.eml` and modified since `since`: what the
/// mail sink received during the run, which includes messages about
/// earlier runs' tickets (a re-route, an escalation) sent meanwhile.
pub fn mail_files_since(dir: &Path, since: SystemTime) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let fresh = entry.metadata()?.modified().is_ok_and(|m| m >= since);
        if fresh && entry.path().extension().is_some_and(|e| e == "eml") {
            n += 1;
        }
    }
    Ok(n)
}

/// What notification made of the run, for the summary.
#[derive(Debug, Clone)]
pub enum NotificationOutcome {
    /// Nothing answered at this URL.
    Unreachable(String),
    /// Notification answered.
    Checked {
        /// Deliveries per `(channel, status)`.
        by_channel: BTreeMap<(String, String), usize>,
        /// Deliveries per event kind.
        by_kind: BTreeMap<String, usize>,
        /// Numbers of tickets nobody was told about within the wait.
        silent: Vec<String>,
        /// A tenant to name in the `wardctl delivery list` hint.
        tenant: String,
        /// The local mail sink's directory, and how many messages it got
        /// during the run (or why it could not be read).
        mail: Option<(PathBuf, Result<usize, String>)>,
        /// Why reading the deliveries stopped, if it did.
        error: Option<String>,
    },
}

impl NotificationOutcome {
    /// Counts the run's deliveries.
    pub fn checked(
        created: &[Ticket],
        deliveries: &Deliveries,
        mail: Option<(PathBuf, Result<usize, String>)>,
        error: Option<String>,
    ) -> Self {
        let mut by_channel = BTreeMap::new();
        let mut by_kind = BTreeMap::new();
        for d in deliveries.values().flatten() {
            *by_channel
                .entry((render::channel(d.channel), render::status(d)))
                .or_default() += 1;
            *by_kind.entry(render::event_kind(d.event_kind)).or_default() += 1;
        }
        NotificationOutcome::Checked {
            by_channel,
            by_kind,
            silent: created
                .iter()
                .filter(|t| deliveries.get(&t.ticket_id).is_none_or(Vec::is_empty))
                .map(|t| t.number.clone())
                .collect(),
            tenant: created
                .first()
                .map_or_else(String::new, |t| t.tenant_id.clone()),
            mail,
            error,
        }
    }

    /// The summary's notification lines.
    pub fn text(&self) -> String {
        let (by_channel, by_kind, silent, tenant, mail, error) = match self {
            NotificationOutcome::Unreachable(url) => {
                return format!("notification not reachable at {url}: nobody was told");
            }
            NotificationOutcome::Checked {
                by_channel,
                by_kind,
                silent,
                tenant,
                mail,
                error,
            } => (by_channel, by_kind, silent, tenant, mail, error),
        };
        let total: usize = by_channel.values().sum();
        let mut channels: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((channel, status), n) in by_channel {
            channels
                .entry(channel)
                .or_default()
                .push(format!("{status} {n}"));
        }
        let per_channel: Vec<String> = channels
            .iter()
            .map(|(c, s)| format!("{c} {} ({})", count_of(by_channel, c), s.join(", ")))
            .collect();
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let mut text = format!("notification: {total} deliveries for this run's tickets");
        if total > 0 {
            text.push_str(&format!(
                ": {}; by event: {}",
                per_channel.join("; "),
                kinds.join(", ")
            ));
        }
        if !silent.is_empty() {
            text.push_str(&format!("; nobody told yet about {}", silent.join(", ")));
        }
        if let Some(e) = error {
            text.push_str(&format!(" (stopped reading deliveries: {e})"));
        }
        text.push('\n');
        match mail {
            Some((dir, Ok(n))) => text.push_str(&format!(
                "email: {n} message(s) reached {} during the run (the local mail sink; earlier tickets' too)",
                dir.display()
            )),
            Some((dir, Err(e))) => text.push_str(&format!(
                "email: the mail sink's directory {} is not readable: {e}",
                dir.display()
            )),
            None => text.push_str("email: in the mailbox of notification's SMTP relay"),
        }
        text.push_str(&format!(
            "; every delivery and attempt: wardctl --tenant {tenant} delivery list"
        ));
        text
    }

    /// The summary's notification JSON.
    pub fn json(&self) -> Value {
        match self {
            NotificationOutcome::Unreachable(url) => json!({"reachable": false, "url": url}),
            NotificationOutcome::Checked {
                by_channel,
                by_kind,
                silent,
                mail,
                error,
                ..
            } => json!({
                "reachable": true,
                "deliveries": by_channel.values().sum::<usize>(),
                "by_channel": by_channel.iter().map(|((c, s), n)| json!({
                    "channel": c, "status": s, "count": n,
                })).collect::<Vec<_>>(),
                "by_event_kind": by_kind,
                "tickets_without_delivery": silent,
                "mail_dir": mail.as_ref().map(|(d, _)| d.display().to_string()),
                "mail_files": mail.as_ref().and_then(|(_, n)| n.as_ref().ok()),
                "error": error,
            }),
        }
    }
}

fn count_of(by_channel: &BTreeMap<(String, String), usize>, channel: &str) -> usize {
    by_channel
        .iter()
        .filter(|((c, _), _)| c == channel)
        .map(|(_, n)| n)
        .sum()
}

/// The notification step: wait for the run's deliveries, show them, and
/// count what reached the mail sink.
pub(super) async fn report(
    notification: &Session,
    created: &[Ticket],
    wait: Duration,
    mail_dir: Option<&Path>,
    run_started: SystemTime,
    zone: Zone,
    p: &Progress,
) -> NotificationOutcome {
    let waited = Instant::now();
    let (deliveries, error) = match wait_delivered(notification, created, wait).await {
        Ok(d) => (d, None),
        Err(e) => {
            let text = crate::error_text(&e);
            p.line(&format!("NOTIFICATION STOPPED ANSWERING: {text}"));
            (HashMap::new(), Some(text))
        }
    };
    let mut all: Vec<Delivery> = created
        .iter()
        .flat_map(|t| deliveries.get(&t.ticket_id).cloned().unwrap_or_default())
        .collect();
    all.sort_by(|a, b| (&a.number, a.event_kind).cmp(&(&b.number, b.event_kind)));
    p.line(&format!(
        "{} deliveries for {} tickets after {:.1} s",
        all.len(),
        created.len(),
        waited.elapsed().as_secs_f64()
    ));
    p.print("");
    p.block(&render::delivery_table(&all, zone).render());
    let mail = mail_dir.map(|dir| {
        let n = mail_files_since(dir, run_started).map_err(|e| e.to_string());
        (dir.to_owned(), n)
    });
    NotificationOutcome::checked(created, &deliveries, mail, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::events::DeliveryStatus;

    fn ticket(n: usize, tenant: &str) -> Ticket {
        Ticket {
            ticket_id: format!("t-{n}"),
            number: format!("STM-{n:06}"),
            tenant_id: tenant.to_owned(),
            ..Default::default()
        }
    }

    fn delivery(
        ticket: &str,
        kind: EventKind,
        channel: NotificationChannel,
        state: DeliveryState,
        outcome: DeliveryStatus,
    ) -> Delivery {
        Delivery {
            ticket_id: ticket.to_owned(),
            event_kind: kind as i32,
            channel: channel as i32,
            state: state as i32,
            outcome: outcome as i32,
            ..Default::default()
        }
    }

    #[test]
    fn every_hospital_has_a_supervisor_who_hears_new_calls_by_email() {
        for t in &super::super::TENANTS {
            let r = RECIPIENTS.iter().find(|r| r.tenant == t.id).unwrap();
            let req = r.request();
            assert!(req.request_id.starts_with("demo-recipient-"));
            let rec = req.recipient.unwrap();
            assert_eq!(rec.addresses[0].channel, NotificationChannel::Email as i32);
            let subs = rec.preferences.unwrap().subscriptions;
            assert!(
                subs.iter()
                    .any(|s| s.event_kind == EventKind::TicketReceived as i32)
            );
            assert!(
                subs.iter()
                    .all(|s| s.channels == vec![NotificationChannel::Email as i32])
            );
        }
        assert!(
            super::super::routing::ROSTER
                .iter()
                .any(|a| a.id == RECIPIENTS[0].subject && a.supervisor),
            "St Mary's supervisor is the roster's"
        );
    }

    #[test]
    fn deliveries_are_counted_by_channel_status_and_event() {
        use DeliveryState::*;
        use EventKind::*;
        use NotificationChannel::*;
        let created = vec![
            ticket(1, "stmarys"),
            ticket(2, "stmarys"),
            ticket(3, "lakeside"),
        ];
        let mut d: Deliveries = HashMap::new();
        d.insert(
            "t-1".into(),
            vec![
                delivery(
                    "t-1",
                    TicketReceived,
                    Email,
                    Finished,
                    DeliveryStatus::Delivered,
                ),
                delivery(
                    "t-1",
                    TicketAssigned,
                    Email,
                    Finished,
                    DeliveryStatus::Delivered,
                ),
                delivery(
                    "t-1",
                    TicketAssigned,
                    Email,
                    RetryScheduled,
                    DeliveryStatus::Unspecified,
                ),
            ],
        );
        d.insert(
            "t-2".into(),
            vec![delivery(
                "t-2",
                TicketReceived,
                Webhook,
                Finished,
                DeliveryStatus::Failed,
            )],
        );
        assert!(!settled(&created, &d), "t-3 has none yet");
        let out = NotificationOutcome::checked(
            &created,
            &d,
            Some((PathBuf::from("/x/mail"), Ok(3))),
            None,
        );
        let text = out.text();
        assert!(
            text.starts_with("notification: 4 deliveries for this run's tickets: email 3 (delivered 2, retry-scheduled 1); webhook 1 (failed 1); by event: ticket-assigned 2, ticket-received 2; nobody told yet about STM-000003\n"),
            "{text}"
        );
        assert!(
            text.contains("email: 3 message(s) reached /x/mail during the run"),
            "{text}"
        );
        assert!(
            text.contains("wardctl --tenant stmarys delivery list"),
            "{text}"
        );
        let j = out.json();
        assert_eq!(j["deliveries"], 4);
        assert_eq!(j["tickets_without_delivery"][0], "STM-000003");
        assert_eq!(j["mail_files"], 3);

        d.insert(
            "t-3".into(),
            vec![delivery(
                "t-3",
                TicketReceived,
                Email,
                Pending,
                DeliveryStatus::Unspecified,
            )],
        );
        assert!(!settled(&created, &d), "a pending delivery is not settled");
        d.get_mut("t-3").unwrap()[0].state = Finished as i32;
        assert!(settled(&created, &d));

        let relay = NotificationOutcome::checked(&created, &HashMap::new(), None, None).text();
        assert!(
            relay.contains("0 deliveries") && relay.contains("SMTP relay"),
            "{relay}"
        );
        let down = NotificationOutcome::Unreachable("http://n:50054".into());
        assert!(down.text().contains("not reachable at http://n:50054"));
        assert_eq!(down.json()["reachable"], false);
    }

    #[test]
    fn only_fresh_eml_files_count() {
        let dir = std::env::temp_dir().join(format!("wardctl-mail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.eml"), "x").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let before = SystemTime::now() - Duration::from_secs(60);
        let after = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(mail_files_since(&dir, before).unwrap(), 1);
        assert_eq!(mail_files_since(&dir, after).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(mail_files_since(&dir, before).is_err());
    }
}
