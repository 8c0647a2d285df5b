//! The webhook receiver `wardline-load` runs on 127.0.0.1: each tenant's
//! endpoint subscribes to ticket assignments, so notification's signed POST
//! of a ticket's assignment is the moment the ticket is *notified*. The
//! body is notification's default webhook document (`{"ticket": {"id":
//! ...}, ...}`); only the ticket id is read. Signatures are not checked:
//! the receiver measures, it does not act.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

/// First arrival per ticket id.
pub type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// The ticket id in a webhook body, if it has one.
pub fn ticket_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("ticket")?
        .get("id")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

async fn receive(State(seen): State<Arrivals>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    if let Some(id) = ticket_id(&body)
        && let Ok(mut seen) = seen.lock()
    {
        seen.entry(id).or_insert(at);
    }
    StatusCode::NO_CONTENT
}

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What arrived.
    pub arrivals: Arrivals,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on 127.0.0.1 for the webhook receiver")?;
        let addr = listener.local_addr()?;
        let arrivals: Arrivals = Arc::default();
        let app = Router::new()
            .route("/hook/{tenant}", post(receive))
            .with_state(arrivals.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "webhook receiver stopped");
            }
        });
        Ok(Self {
            addr,
            arrivals,
            task,
        })
    }

    /// When ticket `id`'s assignment was posted, if it was.
    pub fn arrived(&self, id: &str) -> Option<Instant> {
        self.arrivals.lock().ok()?.get(id).copied()
    }

    /// A counter of the tickets whose assignment was posted, for a task of its own.
    pub fn counter(&self) -> impl Fn() -> usize + Send + 'static {
        let arrivals = self.arrivals.clone();
        move || arrivals.lock().map(|a| a.len()).unwrap_or_default()
    }

    /// The endpoint URL of `tenant`.
    pub fn url(&self, tenant: &str) -> String {
        format!("http://{}/hook/{tenant}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_id_is_read_from_the_default_document() {
        let body = br#"{"event": {"kind": "ticket.assigned"}, "ticket": {"id": "0190-abc", "number": "LDA-000001"}}"#;
        assert_eq!(ticket_id(body).as_deref(), Some("0190-abc"));
        assert_eq!(ticket_id(br#"{"invoice": {"id": "x"}}"#), None);
        assert_eq!(ticket_id(br#"{"ticket": {"id": ""}}"#), None);
        assert_eq!(ticket_id(b"not json"), None);
    }
}
