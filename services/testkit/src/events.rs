//! Reading what reached `WARDLINE_EVENTS`, as a consumer would.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use prost::Message;
use wardline_proto::events::EventEnvelope;

/// One message of the stream, decoded, with the headers tests check.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Subject.
    pub subject: String,
    /// `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// `traceparent` header.
    pub traceparent: Option<String>,
    /// Decoded body.
    pub envelope: EventEnvelope,
    /// Raw body.
    pub raw: Vec<u8>,
}

/// Every message currently in the stream on `filter`, read from the start
/// with an ephemeral ordered consumer. Waits up to `settle` for more.
pub async fn read_all(nats: &crate::TestNats, filter: &str, settle: Duration) -> Vec<Seen> {
    let mut messages = from_start(nats, wardline_kit::nats::EVENTS_STREAM, filter).await;
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(settle, messages.next()).await {
        let header = |k: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_owned())
        };
        out.push(Seen {
            subject: msg.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            traceparent: header("traceparent"),
            envelope: EventEnvelope::decode(msg.payload.as_ref()).expect("an EventEnvelope"),
            raw: msg.payload.to_vec(),
        });
    }
    out
}

/// The messages of `stream` on `filter`, from the first, through an
/// ephemeral ordered consumer.
async fn from_start(nats: &crate::TestNats, stream: &str, filter: &str) -> consumer::pull::Ordered {
    let js = jetstream::new(nats.client().await);
    let stream = js.get_stream(stream).await.expect("the stream exists");
    stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer")
        .messages()
        .await
        .expect("messages")
}

/// Waits until at least `n` messages are on `filter` (up to `secs`), then
/// returns all of them (after a short settle, so extra copies show up too).
pub async fn wait_for(nats: &crate::TestNats, filter: &str, n: usize, secs: u64) -> Vec<Seen> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = read_all(nats, filter, Duration::from_millis(300)).await;
        if seen.len() >= n || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One message of `WARDLINE_DEADLETTER`, as stored: nothing decoded, so a
/// test can look at every byte a reader of the stream gets.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Subject (`wardline.deadletter.<service>.<tenant>`).
    pub subject: String,
    /// Every header, name and value.
    pub headers: Vec<(String, String)>,
    /// Raw body (the refused event's bytes).
    pub raw: Vec<u8>,
}

impl DeadLetter {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every byte of the message (subject, headers, body), for scanning.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.subject.as_bytes().to_vec();
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(&self.raw);
        out
    }
}

/// Every message in the dead-letter stream, read from the start; waits up
/// to `settle` for more.
pub async fn dead_letters(nats: &crate::TestNats, settle: Duration) -> Vec<DeadLetter> {
    let mut messages = from_start(
        nats,
        wardline_kit::nats::DEADLETTER_STREAM,
        wardline_kit::nats::DEADLETTER_SUBJECTS,
    )
    .await;
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(settle, messages.next()).await {
        let headers = msg
            .headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .flat_map(|(k, vs)| {
                        vs.iter()
                            .map(move |v| (k.to_string(), v.as_str().to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            subject: msg.subject.to_string(),
            headers,
            raw: msg.payload.to_vec(),
        });
    }
    out
}
