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
    let js = jetstream::new(nats.client().await);
    let stream = js
        .get_stream(wardline_kit::nats::EVENTS_STREAM)
        .await
        .expect("event stream exists");
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
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
