//! Watching Wardline's events on NATS, for the demo.
//!
//! The preferred source is a JetStream *ordered consumer* on
//! `WARDLINE_EVENTS` delivering only messages stored after it was created:
//! it sees exactly what the stream holds (one message per `Nats-Msg-Id`
//! within the duplicate window), so counting `ticket.created` per ticket
//! checks the outbox relay's exactly-once publishing. When the stream does
//! not exist yet the watcher falls back to a plain core subscription, which
//! sees what is published from then on, duplicates included.
//!
//! Only headers and the envelope's ids and codes are read; events carry no
//! free text, and nothing here prints any.

use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::mpsc;
use wardline_kit::nats::EVENTS_STREAM;
use wardline_proto::events::EventEnvelope;
use wardline_proto::events::event_envelope::Payload;

/// Subjects of every tenant's ticket events.
pub const TICKET_EVENTS: &str = "wardline.events.*.ticket.>";

/// One message as received.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// NATS subject.
    pub subject: String,
    /// `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// Whether a `traceparent` header came with it.
    pub traceparent: bool,
    /// The decoded envelope, or why it could not be decoded.
    pub envelope: Result<EventEnvelope, String>,
}

impl ReceivedEvent {
    /// Reads a message's headers and body.
    pub fn from_parts(
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: &[u8],
    ) -> Self {
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            subject: subject.to_owned(),
            msg_id: header("Nats-Msg-Id"),
            traceparent: header("traceparent").is_some(),
            envelope: EventEnvelope::decode(payload).map_err(|e| e.to_string()),
        }
    }

    fn payload(&self) -> Option<&Payload> {
        self.envelope.as_ref().ok()?.payload.as_ref()
    }

    /// `aggregate.event`, e.g. `ticket.created` (from the payload).
    pub fn kind(&self) -> Option<String> {
        self.payload().map(|p| {
            let (aggregate, event) = wardline_kit::events::kind(p);
            format!("{aggregate}.{event}")
        })
    }

    /// The ticket id and number the event is about, if it is about one.
    pub fn ticket(&self) -> Option<(&str, &str)> {
        ticket_ref(self.payload()?)
    }

    /// The event id in the envelope.
    pub fn event_id(&self) -> Option<&str> {
        self.envelope.as_ref().ok().map(|e| e.event_id.as_str())
    }
}

/// `(ticket_id, number)` of a ticket event.
pub fn ticket_ref(p: &Payload) -> Option<(&str, &str)> {
    fn snap(s: &Option<wardline_proto::events::TicketSnapshot>) -> Option<(&str, &str)> {
        s.as_ref()
            .map(|t| (t.ticket_id.as_str(), t.number.as_str()))
    }
    match p {
        Payload::TicketCreated(e) => snap(&e.ticket),
        Payload::TicketAcknowledged(e) => snap(&e.ticket),
        Payload::TicketStarted(e) => snap(&e.ticket),
        Payload::TicketHeld(e) => snap(&e.ticket),
        Payload::TicketResolved(e) => snap(&e.ticket),
        Payload::TicketClosed(e) => snap(&e.ticket),
        Payload::TicketReopened(e) => snap(&e.ticket),
        Payload::TicketTransferred(e) => snap(&e.ticket),
        Payload::TicketNoteAdded(e) => snap(&e.ticket),
        Payload::TicketAssigned(e) => Some((&e.ticket_id, &e.number)),
        Payload::TicketQueued(e) => Some((&e.ticket_id, &e.number)),
        Payload::TicketEscalated(e) => Some((&e.ticket_id, &e.number)),
        Payload::SlaBreached(e) => Some((&e.ticket_id, &e.number)),
        Payload::CallMetered(e) => Some((&e.ticket_id, &e.number)),
        Payload::TenantCreated(_)
        | Payload::TenantUpdated(_)
        | Payload::AnalystUpserted(_)
        | Payload::AnalystAvailabilityChanged(_)
        | Payload::InvoiceIssued(_)
        | Payload::DeliveryOutcome(_) => None,
    }
}

/// A running watch: events arrive on [`EventWatch::events`].
pub struct EventWatch {
    /// What is being watched, for the progress line.
    pub source: String,
    /// Received events, in arrival order.
    pub events: mpsc::UnboundedReceiver<ReceivedEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to NATS (retrying for up to `wait`) and starts watching
/// `filter` from now on.
pub async fn watch(url: &str, filter: &str, wait: Duration) -> Result<EventWatch> {
    let client = connect(url, wait).await?;
    let (tx, events) = mpsc::unbounded_channel();
    let js = async_nats::jetstream::new(client.clone());
    let ordered = async {
        let stream = js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    }
    .await;
    let (source, task) = match ordered {
        Ok(mut messages) => {
            let task = tokio::spawn(async move {
                let _client = client;
                while let Some(next) = messages.next().await {
                    match next {
                        Ok(m) => {
                            let e = ReceivedEvent::from_parts(
                                m.subject.as_str(),
                                m.headers.as_ref(),
                                &m.payload,
                            );
                            if tx.send(e).is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "JetStream ordered consumer error"),
                    }
                }
            });
            (
                format!(
                    "JetStream ordered consumer on {EVENTS_STREAM}, {filter}, new messages only"
                ),
                task,
            )
        }
        Err(reason) => {
            let mut sub = client
                .subscribe(filter.to_owned())
                .await
                .with_context(|| format!("cannot subscribe to {filter}"))?;
            let task = tokio::spawn(async move {
                let _client = client;
                while let Some(m) = sub.next().await {
                    let e = ReceivedEvent::from_parts(
                        m.subject.as_str(),
                        m.headers.as_ref(),
                        &m.payload,
                    );
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            });
            (
                format!(
                    "core NATS subscription to {filter} (stream {EVENTS_STREAM} not usable: {reason})"
                ),
                task,
            )
        }
    };
    Ok(EventWatch {
        source,
        events,
        task,
    })
}

async fn connect(url: &str, wait: Duration) -> Result<async_nats::Client> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name("wardctl")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await;
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot connect to NATS at {url}"))
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "NATS not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::events::{TicketAssigned, TicketCreated, TicketSnapshot};

    fn created() -> EventEnvelope {
        wardline_kit::events::envelope(
            "intake",
            "stmarys",
            "t-1",
            1,
            Payload::TicketCreated(TicketCreated {
                ticket: Some(TicketSnapshot {
                    ticket_id: "t-1".into(),
                    number: "STM-000001".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn a_message_is_read_from_headers_and_envelope() {
        let env = created();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", env.event_id.as_str());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let e = ReceivedEvent::from_parts(
            "wardline.events.stmarys.ticket.created",
            Some(&headers),
            &env.encode_to_vec(),
        );
        assert_eq!(e.msg_id.as_deref(), Some(env.event_id.as_str()));
        assert_eq!(e.event_id(), Some(env.event_id.as_str()));
        assert!(e.traceparent);
        assert_eq!(e.kind().as_deref(), Some("ticket.created"));
        assert_eq!(e.ticket(), Some(("t-1", "STM-000001")));
    }

    #[test]
    fn missing_headers_and_garbage_bodies_are_reported_not_fatal() {
        let e =
            ReceivedEvent::from_parts("wardline.events.x.ticket.created", None, b"\xff\xff\xff");
        assert_eq!(e.msg_id, None);
        assert!(!e.traceparent);
        assert!(e.envelope.is_err());
        assert_eq!(e.kind(), None);
        assert_eq!(e.ticket(), None);
    }

    #[test]
    fn routing_events_name_their_ticket_too() {
        let p = Payload::TicketAssigned(TicketAssigned {
            ticket_id: "t-2".into(),
            number: "LKS-000007".into(),
            ..Default::default()
        });
        assert_eq!(ticket_ref(&p), Some(("t-2", "LKS-000007")));
    }
}
