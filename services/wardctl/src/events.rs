//! Watching Wardline's events on NATS, for the demo, and the table it
//! shows them in.
//!
//! The source is a JetStream *ordered consumer* on `WARDLINE_EVENTS`
//! delivering only messages stored after it was created: it sees exactly
//! what the stream holds (one message per `Nats-Msg-Id` within the
//! duplicate window).
//!
//! Only headers and the envelope's ids and codes are read; events carry no
//! free text, and nothing here prints any.

use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::table::Table;
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

    /// The ticket id and number the event is about, if it is about one:
    /// read from the payload's proto3 JSON (`ticketId` and `number`, at its
    /// top or in its `ticket` snapshot), so every ticket event, a new one
    /// too, is recognised without a list of them here.
    pub fn ticket(&self) -> Option<(String, String)> {
        let json = serde_json::to_value(self.envelope.as_ref().ok()?).ok()?;
        let payload = json.as_object()?.values().find_map(|v| {
            let p = v.as_object()?;
            Some(
                p.get("ticket")
                    .and_then(|t| t.as_object())
                    .unwrap_or(p)
                    .clone(),
            )
        })?;
        let field = |k: &str| payload.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Some((field("ticketId")?, field("number").unwrap_or_default()))
    }

    /// The event id in the envelope.
    pub fn event_id(&self) -> Option<&str> {
        self.envelope.as_ref().ok().map(|e| e.event_id.as_str())
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
    let config = pull::OrderedConfig {
        filter_subject: filter.to_owned(),
        deliver_policy: DeliverPolicy::New,
        ..Default::default()
    };
    let mut messages = async {
        let stream = js.get_stream(EVENTS_STREAM).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
            stream.create_consumer(config).await?.messages().await?,
        )
    }
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
    .with_context(|| format!("cannot read {EVENTS_STREAM} at {url} (do the services run?)"))?;
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
    Ok(EventWatch {
        source: format!(
            "JetStream ordered consumer on {EVENTS_STREAM}, {filter}, new messages only"
        ),
        events,
        task,
    })
}

async fn connect(url: &str, wait: Duration) -> Result<async_nats::Client> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = crate::grpc::nats_options(url, "wardctl")?
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

/// Events as a table: ids and codes only (events carry no free text).
pub fn events_table(events: &[ReceivedEvent]) -> Table {
    // A subject holds a tenant slug of up to 32 characters: never cut it.
    let mut table = Table::of("SUBJECT|NATS-MSG-ID|TRACEPARENT|TICKET|V|EVENT").max_cell(120);
    for e in events {
        let version = e
            .envelope
            .as_ref()
            .map_or("-".to_owned(), |env| env.aggregate_version.to_string());
        table.row([
            e.subject.clone(),
            e.msg_id.clone().unwrap_or_else(|| "(none)".to_owned()),
            if e.traceparent { "yes" } else { "no" }.to_owned(),
            e.ticket().map_or("-".to_owned(), |(_, n)| n),
            version,
            e.kind().unwrap_or_else(|| "?".to_owned()),
        ]);
    }
    table
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
        assert_eq!(
            e.ticket(),
            Some(("t-1".to_owned(), "STM-000001".to_owned()))
        );
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
        let env = wardline_kit::events::envelope(
            "routing",
            "lakeside",
            "t-2",
            2,
            Payload::TicketAssigned(TicketAssigned {
                ticket_id: "t-2".into(),
                number: "LKS-000007".into(),
                ..Default::default()
            }),
        );
        let e = ReceivedEvent::from_parts(
            "wardline.events.lakeside.ticket.assigned",
            None,
            &env.encode_to_vec(),
        );
        assert_eq!(
            e.ticket(),
            Some(("t-2".to_owned(), "LKS-000007".to_owned()))
        );
        assert_eq!(
            events_table(&[e])
                .render()
                .lines()
                .nth(1)
                .map(|l| l.contains("LKS-000007")),
            Some(true)
        );
    }
}
