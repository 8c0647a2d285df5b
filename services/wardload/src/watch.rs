//! When each ticket was assigned (or queued) and billed: core NATS
//! subscriptions to every load tenant's events, taken before the first
//! send. The first arrival per ticket counts; arrivals are joined with the
//! sends at the end, so an event that beats its CreateTicket response is
//! not lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use prost::Message as _;
use wardline_proto::events::EventEnvelope;
use wardline_proto::events::event_envelope::Payload;

use crate::hooks::Receiver;

/// Event arrivals by ticket id.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// `ticket.assigned`.
    pub assigned: HashMap<String, Instant>,
    /// `ticket.queued`.
    pub queued: HashSet<String>,
    /// `call.metered`.
    pub billed: HashMap<String, Instant>,
}

impl Events {
    fn record(&mut self, payload: Option<Payload>, at: Instant) {
        match payload {
            Some(Payload::TicketAssigned(p)) => {
                self.assigned.entry(p.ticket_id).or_insert(at);
            }
            Some(Payload::TicketQueued(p)) => {
                self.queued.insert(p.ticket_id);
            }
            Some(Payload::CallMetered(p)) => {
                self.billed.entry(p.ticket_id).or_insert(at);
            }
            _ => {}
        }
    }
}

/// The running subscriptions.
pub struct Watch {
    events: Arc<Mutex<Events>>,
    nats: async_nats::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Subscribes to `wardline.events.<tenant>.>` of every tenant.
    pub async fn start(nats_url: &str, tenants: &[String]) -> Result<Self> {
        let nats = wardctl::grpc::nats_options(nats_url, "wardline-load")?
            .connect(nats_url)
            .await
            .with_context(|| format!("cannot connect to NATS at {nats_url}"))?;
        let events: Arc<Mutex<Events>> = Arc::default();
        let mut tasks = Vec::new();
        for t in tenants {
            let mut sub = nats
                .subscribe(format!("wardline.events.{t}.>"))
                .await
                .with_context(|| format!("subscribing to {t}'s events"))?;
            let events = events.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    let at = Instant::now();
                    let Ok(env) = EventEnvelope::decode(m.payload.as_ref()) else {
                        continue;
                    };
                    match events.lock() {
                        Ok(mut e) => e.record(env.payload, at),
                        Err(_) => return,
                    }
                }
            }));
        }
        nats.flush().await.context("NATS flush")?;
        Ok(Self {
            events,
            nats,
            tasks,
        })
    }

    /// What arrived so far.
    pub fn events(&self) -> Events {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// A reader of [`Watch::counts`] for a task of its own.
    pub fn counts_fn(&self) -> impl Fn() -> (usize, usize, usize) + Send + 'static {
        let events = self.events.clone();
        move || {
            events
                .lock()
                .map(|e| (e.assigned.len(), e.queued.len(), e.billed.len()))
                .unwrap_or_default()
        }
    }

    /// True once ticket `id` is assigned or queued, billed, and (when the
    /// receiver is given) notified of its assignment.
    pub fn finished(&self, id: &str, notified: Option<&Receiver>) -> bool {
        let Ok(e) = self.events.lock() else {
            return true;
        };
        let assigned = e.assigned.contains_key(id);
        (assigned || e.queued.contains(id))
            && e.billed.contains_key(id)
            && (!assigned || notified.is_none_or(|r| r.arrived(id).is_some()))
    }

    /// Ends the subscriptions.
    pub async fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.nats.clone().drain().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::events::{CallMetered, TicketAssigned, TicketQueued};

    #[test]
    fn the_first_arrival_counts() {
        let mut e = Events::default();
        let (t0, t1) = (
            Instant::now(),
            Instant::now() + std::time::Duration::from_secs(1),
        );
        let assigned = |id: &str| {
            Some(Payload::TicketAssigned(TicketAssigned {
                ticket_id: id.into(),
                ..Default::default()
            }))
        };
        e.record(assigned("a"), t0);
        e.record(assigned("a"), t1);
        e.record(
            Some(Payload::TicketQueued(TicketQueued {
                ticket_id: "b".into(),
                ..Default::default()
            })),
            t0,
        );
        e.record(
            Some(Payload::CallMetered(CallMetered {
                ticket_id: "a".into(),
                ..Default::default()
            })),
            t1,
        );
        e.record(None, t0);
        assert_eq!(e.assigned["a"], t0);
        assert!(e.queued.contains("b"));
        assert_eq!(e.billed["a"], t1);
    }
}
