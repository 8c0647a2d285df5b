//! NATS connection and idempotent JetStream provisioning.
//!
//! One stream, `WARDLINE_EVENTS`, holds every event on
//! `wardline.events.<tenant>.<aggregate>.<event>`. A second stream,
//! `WARDLINE_DEADLETTER`, keeps poison events with their reason on
//! `wardline.deadletter.<service>.<tenant>`. Both are created or brought up
//! to date by every service at start-up, so there is no separate
//! provisioning step to forget.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Name of the event stream.
pub const EVENTS_STREAM: &str = "WARDLINE_EVENTS";
/// Subjects of the event stream.
pub const EVENTS_SUBJECTS: &str = "wardline.events.>";
/// Name of the dead-letter stream.
pub const DEADLETTER_STREAM: &str = "WARDLINE_DEADLETTER";
/// Subjects of the dead-letter stream.
pub const DEADLETTER_SUBJECTS: &str = "wardline.deadletter.>";
/// Duplicate window of the event stream. It must exceed the relay's worst
/// retry of one row (rows are retried within seconds; a relay that crashed
/// after publishing and before marking is restarted within minutes), so a
/// re-published event is dropped by `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Could not connect.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// Could not create or update a stream.
    #[error("cannot provision stream {stream}: {reason}")]
    Provision {
        /// Stream name.
        stream: &'static str,
        /// Server's answer.
        reason: String,
    },
}

/// Connects to NATS. The client reconnects by itself for ever afterwards;
/// the first connection is retried too, so start order does not matter.
pub async fn connect(url: &str, service: &str) -> Result<async_nats::Client, NatsError> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("wardline-{service}"))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
        .connect(url)
        .await?;
    Ok(client)
}

/// The event stream's configuration for `replicas` replicas.
pub fn events_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.into(),
        subjects: vec![EVENTS_SUBJECTS.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: Duration::from_secs(400 * 24 * 60 * 60),
        ..Default::default()
    }
}

/// The dead-letter stream's configuration.
pub fn deadletter_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: DEADLETTER_STREAM.into(),
        subjects: vec![DEADLETTER_SUBJECTS.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Creates both streams, or updates them when their configuration drifted.
/// Safe to call from every replica concurrently; retried until NATS answers.
pub async fn provision_streams(js: &jetstream::Context, replicas: usize) -> Result<(), NatsError> {
    for cfg in [
        events_stream_config(replicas),
        deadletter_stream_config(replicas),
    ] {
        let name: &'static str = if cfg.name == EVENTS_STREAM {
            EVENTS_STREAM
        } else {
            DEADLETTER_STREAM
        };
        let mut delay = Duration::from_millis(200);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = async {
                let mut s = js
                    .get_or_create_stream(cfg.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let current = s.info().await.map_err(|e| e.to_string())?.config.clone();
                if current.subjects != cfg.subjects
                    || current.duplicate_window != cfg.duplicate_window
                {
                    js.update_stream(cfg.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(reason) if attempts >= 30 => {
                    return Err(NatsError::Provision {
                        stream: name,
                        reason,
                    });
                }
                Err(reason) => {
                    tracing::warn!(stream = name, %reason, "stream not provisioned yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Ok(())
}

/// Subject of an event: `wardline.events.<tenant>.<aggregate>.<event>`.
pub fn event_subject(tenant: &str, aggregate: &str, event: &str) -> String {
    format!("wardline.events.{tenant}.{aggregate}.{event}")
}

/// Subject of a dead letter: `wardline.deadletter.<service>.<tenant>`.
pub fn deadletter_subject(service: &str, tenant: &str) -> String {
    let tenant = if tenant.is_empty() {
        "_unknown"
    } else {
        tenant
    };
    format!("wardline.deadletter.{service}.{tenant}")
}

/// The tenant token of an event subject, if it is one.
pub fn tenant_of_subject(subject: &str) -> Option<&str> {
    let mut parts = subject.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("wardline"), Some("events"), Some(t)) => Some(t),
        _ => None,
    }
}

/// Consumer filter subjects for `kinds` (e.g. `"ticket.assigned"`) limited
/// to `tenants` (all tenants when empty).
pub fn filter_subjects(tenants: &[String], kinds: &[&str]) -> Vec<String> {
    let tenant_tokens: Vec<&str> = if tenants.is_empty() {
        vec!["*"]
    } else {
        tenants.iter().map(String::as_str).collect()
    };
    tenant_tokens
        .iter()
        .flat_map(|t| {
            kinds
                .iter()
                .map(move |k| format!("wardline.events.{t}.{k}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(
            event_subject("stmarys", "ticket", "created"),
            "wardline.events.stmarys.ticket.created"
        );
        assert_eq!(
            tenant_of_subject("wardline.events.stmarys.ticket.created"),
            Some("stmarys")
        );
        assert_eq!(tenant_of_subject("other.x"), None);
        assert_eq!(
            filter_subjects(&[], &["ticket.assigned"]),
            vec!["wardline.events.*.ticket.assigned"]
        );
        assert_eq!(
            filter_subjects(&["a".into(), "b".into()], &["x.y"]),
            vec!["wardline.events.a.x.y", "wardline.events.b.x.y"]
        );
        assert_eq!(
            deadletter_subject("intake", ""),
            "wardline.deadletter.intake._unknown"
        );
    }
}
