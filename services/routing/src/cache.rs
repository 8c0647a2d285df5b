//! What a routing decision needs about a tenant, cached in the process:
//! the category rules, the SLA targets and the static part of the analysts
//! covering it (coverage, skills, shifts, time zone, credentials).
//!
//! What must hold:
//! - **A change is seen by the next decision, on every replica.** Each
//!   decision reads `policy_generation` (one row, no lock), which triggers
//!   bump in the same transaction as any change to rules, targets or the
//!   static directory data, whichever path wrote it. An entry is used only
//!   while its generation equals the one just read; otherwise the tenant is
//!   reloaded. No TTL: the check is exact and costs nothing extra, because
//!   it rides on the read below.
//! - **What moves every decision is never cached.** Load, idle clock,
//!   availability and capacity are read fresh with the generation in the
//!   same statement, so ranking and the recorded explanation see the
//!   current values; the capacity check itself stays the engine's atomic
//!   `UPDATE` (a cached number never decides capacity).
//! - An entry is labelled with the generation read *before* it was loaded,
//!   so its data is never older than its label (a conservative label only
//!   costs a spare reload). A label never moves backwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::decision::AnalystFacts;
use crate::domain::rules::{CATEGORIES, Rule, default_rule};
use crate::domain::sla::Targets;
use crate::domain::{Availability, Category};
use crate::{directory, policy};

/// One tenant's cached policy at one generation.
#[derive(Debug)]
struct Entry {
    generation: i64,
    /// In [`CATEGORIES`] order.
    rules: Vec<Rule>,
    targets: Targets,
    /// Static facts; the dynamic fields are as loaded and overwritten per decision.
    analysts: Vec<AnalystFacts>,
    /// Ids of `analysts`, in the same order (bound to the live read).
    ids: Vec<String>,
    /// Position of each id in `analysts`.
    index: HashMap<String, usize>,
}

/// The per-process cache, shared by the consumer workers, the drainer and
/// the timer scanner.
#[derive(Debug, Default)]
pub struct PolicyCache {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

/// A tenant's policy for the decisions of one transaction: cached rules,
/// targets and analysts, with the analysts' load, idle clock, availability
/// and capacity as read at [`PolicyCache::policy`].
#[derive(Debug)]
pub struct Policy {
    entry: Arc<Entry>,
    /// The candidates of a decision (static facts + the live values).
    pub analysts: Vec<AnalystFacts>,
    /// Whether the ticket asked about (see [`PolicyCache::policy_for_ticket`])
    /// was in the database when the policy was read.
    pub ticket_known: bool,
    /// Which of the tickets asked about (see
    /// [`PolicyCache::policy_for_tickets`]) were in the database.
    pub known_tickets: Vec<Uuid>,
}

impl Policy {
    /// The rule in force for `category`.
    pub fn rule(&self, category: Category) -> std::borrow::Cow<'_, Rule> {
        match CATEGORIES.iter().position(|c| *c == category) {
            Some(i) => std::borrow::Cow::Borrowed(&self.entry.rules[i]),
            None => std::borrow::Cow::Owned(default_rule(category)),
        }
    }

    /// The tenant's SLA targets.
    pub fn targets(&self) -> &Targets {
        &self.entry.targets
    }

    /// Records that this transaction raised `analyst`'s load, so the next
    /// decision made with this policy (a queue drain) ranks by it.
    pub fn took(&mut self, analyst: &str) {
        if let Some(a) = self.analysts.iter_mut().find(|a| a.analyst_id == analyst) {
            a.current_load += 1;
        }
    }
}

#[derive(sqlx::FromRow)]
struct Live {
    generation: i64,
    known: Vec<Uuid>,
    ids: Vec<String>,
    availability: Vec<i16>,
    max_concurrent: Vec<i32>,
    current_load: Vec<i32>,
    idle_since: Vec<DateTime<Utc>>,
}

/// The generation, which of tickets `$2` are known, and the live values of
/// analysts `$1` (in no particular order: matched by id, which spares five
/// sorts per decision). One statement whatever the number of analysts.
const LIVE: &str = "SELECT g.generation, ARRAY(SELECT ticket_id FROM tickets WHERE ticket_id = ANY($2::uuid[])) AS known,
        COALESCE(l.ids, '{}') AS ids, COALESCE(l.availability, '{}') AS availability,
        COALESCE(l.max_concurrent, '{}') AS max_concurrent, COALESCE(l.current_load, '{}') AS current_load,
        COALESCE(l.idle_since, '{}') AS idle_since
   FROM policy_generation g
   LEFT JOIN LATERAL (
        SELECT array_agg(a.analyst_id) AS ids, array_agg(a.availability) AS availability,
               array_agg(a.max_concurrent) AS max_concurrent, array_agg(a.current_load) AS current_load,
               array_agg(a.idle_since) AS idle_since
          FROM analysts a WHERE a.analyst_id = ANY($1::text[])) l ON TRUE";

impl PolicyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
    }

    fn store(&self, tenant: &str, entry: Arc<Entry>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(tenant) {
            Some(held) if held.generation > entry.generation => {}
            _ => {
                entries.insert(tenant.to_owned(), entry);
            }
        }
    }

    /// The tenant's policy for a decision now: one round trip when the
    /// cached entry is current, four when the tenant is (re)loaded.
    pub async fn policy(
        &self,
        conn: &mut PgConnection,
        tenant: &str,
    ) -> Result<Policy, sqlx::Error> {
        self.policy_for_ticket(conn, tenant, Uuid::nil()).await
    }

    /// [`PolicyCache::policy`], also telling whether `ticket` is known
    /// (what a creation needs to know, asked in the same round trip).
    pub async fn policy_for_ticket(
        &self,
        conn: &mut PgConnection,
        tenant: &str,
        ticket: Uuid,
    ) -> Result<Policy, sqlx::Error> {
        let tickets = if ticket.is_nil() {
            vec![]
        } else {
            vec![ticket]
        };
        self.policy_for_tickets(conn, tenant, &tickets).await
    }

    /// [`PolicyCache::policy`], also telling which of `tickets` are known
    /// (what a batch of creations needs, asked in the same round trip).
    pub async fn policy_for_tickets(
        &self,
        conn: &mut PgConnection,
        tenant: &str,
        tickets: &[Uuid],
    ) -> Result<Policy, sqlx::Error> {
        let cached = self.cached(tenant);
        let empty = Vec::new();
        let ids = cached.as_ref().map_or(&empty, |e| &e.ids);
        let live: Live = sqlx::query_as(LIVE)
            .bind(ids)
            .bind(tickets)
            .fetch_one(&mut *conn)
            .await?;
        if let Some(entry) = cached
            && entry.generation == live.generation
            && let Some(analysts) = merge(&entry, &live)
        {
            metrics::counter!("wardline_routing_policy_cache_total", "outcome" => "hit")
                .increment(1);
            return Ok(Policy {
                entry,
                analysts,
                ticket_known: !live.known.is_empty(),
                known_tickets: live.known,
            });
        }
        metrics::counter!("wardline_routing_policy_cache_total", "outcome" => "load").increment(1);
        let rules = policy::effective_rules(conn, tenant).await?;
        let targets = policy::targets(conn, tenant).await?;
        let analysts = directory::candidates(conn, tenant).await?;
        let ids: Vec<String> = analysts.iter().map(|a| a.analyst_id.clone()).collect();
        let entry = Arc::new(Entry {
            generation: live.generation,
            rules,
            targets,
            index: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect(),
            ids,
            analysts: analysts.clone(),
        });
        self.store(tenant, entry.clone());
        Ok(Policy {
            entry,
            analysts,
            ticket_known: !live.known.is_empty(),
            known_tickets: live.known,
        })
    }
}

/// The cached analysts with their live values, `None` when the live read
/// does not match them one to one (an analyst was removed).
fn merge(entry: &Entry, live: &Live) -> Option<Vec<AnalystFacts>> {
    if live.ids.len() != entry.ids.len() {
        return None;
    }
    let mut at: Vec<Option<usize>> = vec![None; entry.ids.len()];
    for (j, id) in live.ids.iter().enumerate() {
        *at.get_mut(*entry.index.get(id)?)? = Some(j);
    }
    entry
        .analysts
        .iter()
        .zip(at)
        .map(|(a, j)| {
            let j = j?;
            Some(AnalystFacts {
                availability: Availability::try_from(i32::from(live.availability[j]))
                    .unwrap_or(Availability::Offline),
                max_concurrent: u32::try_from(live.max_concurrent[j]).unwrap_or(0),
                current_load: u32::try_from(live.current_load[j]).unwrap_or(0),
                idle_since: live.idle_since[j],
                ..a.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
