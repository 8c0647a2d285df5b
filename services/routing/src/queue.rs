//! The queue: tickets nobody could take when they came, served by
//! priority, then age. A slot freed by an event or a timer is handed to the
//! head of that analyst's eligible queue in the freeing transaction
//! ([`hand_over`]); capacity that appears otherwise (availability, a
//! directory or rule change, a shift starting) is served by the periodic
//! [`drain`], which the API wakes once its change is committed.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use wardline_kit::db::{self, Scope};

use crate::assignment::{Routed, facts_of, route_queued};
use crate::cache::{Policy, PolicyCache};
use crate::domain::decision;
use crate::store::tickets::{self, TicketRow, queue_start};

/// Whether `analyst` is among the eligible candidates for `t` under `policy`
/// (capacity included, as read live with the policy).
fn eligible_for(t: &TicketRow, policy: &Policy, analyst: &str, now: DateTime<Utc>) -> bool {
    let category = t.category.get();
    let d = decision::decide(&facts_of(t), &policy.rule(category), &policy.analysts, now);
    d.ranked().any(|v| v.analyst_id == analyst)
}

/// Whether `analyst` still has a free slot in `policy`'s live view.
fn has_room(policy: &Policy, analyst: &str) -> bool {
    policy
        .analysts
        .iter()
        .any(|a| a.analyst_id == analyst && a.current_load < a.max_concurrent)
}

/// How many waiting tickets a hand-over reads at a time, and at most in all:
/// a slot no ticket among the first [`HAND_OVER_PAGES`] pages fits is left
/// to the periodic drain, so a resolution never reads a whole long queue.
const HAND_OVER_PAGE: i64 = 64;
/// See [`HAND_OVER_PAGE`].
const HAND_OVER_PAGES: usize = 16;

/// Hands the capacity just freed by `analyst` (in this transaction) to the
/// head of their eligible queue: waiting tickets in queue order (priority,
/// then age) across the tenants they cover; the first one they are eligible
/// for is locked and routed (to the best-ranked analyst with room, which is
/// normally them), and so on while they have room. So a freed slot never
/// goes to a P2 while a P1 they could take waits, and never waits for the
/// periodic drain. Only the tickets taken are locked (waiting for a lock
/// another hand-over holds, then checking the ticket still waits), so
/// concurrent hand-overs take the head in turn. Returns how many tickets
/// were assigned.
pub async fn hand_over(
    conn: &mut PgConnection,
    cache: &PolicyCache,
    analyst: &str,
) -> Result<usize, sqlx::Error> {
    let mut policies: HashMap<String, Policy> = HashMap::new();
    let mut after = queue_start();
    let mut assigned = 0;
    for _ in 0..HAND_OVER_PAGES {
        let page = tickets::queue_of_analyst(conn, analyst, after, HAND_OVER_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.queue_key();
        let last_page = (page.len() as i64) < HAND_OVER_PAGE;
        for seen in page {
            let policy = match policies.entry(seen.tenant_id.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(cache.policy(conn, &seen.tenant_id).await?),
            };
            if !has_room(policy, analyst) {
                return Ok(assigned);
            }
            if !eligible_for(&seen, policy, analyst, Utc::now()) {
                continue;
            }
            // Taken meanwhile, or changed so that it no longer fits: next.
            let Some(mut t) = tickets::lock_waiting(conn, seen.ticket_id).await? else {
                continue;
            };
            if !eligible_for(&t, policy, analyst, Utc::now()) {
                continue;
            }
            if let Routed::Assigned(who) = route_queued(conn, &mut t, policy).await? {
                assigned += 1;
                // Other tenants' views learn of the slot just taken (an
                // analyst covering several tenants is in each of them).
                for (tenant, p) in policies.iter_mut() {
                    if *tenant != t.tenant_id {
                        p.took(&who);
                    }
                }
            }
        }
        if last_page {
            break;
        }
    }
    Ok(assigned)
}

/// [`hand_over`] inside a transaction that sees `tenant`'s rows only (an
/// event batch's): the analyst's queue spans every tenant they cover, so
/// the hand-over sees every tenant's rows (machinery across tenants, like
/// [`drain`]; each ticket is still decided under its own tenant's policy),
/// and the transaction goes back to `tenant`'s rows for the events after
/// it. Two statements more, paid only by events that free a slot.
pub async fn hand_over_within(
    conn: &mut PgConnection,
    cache: &PolicyCache,
    analyst: &str,
    tenant: &str,
) -> Result<usize, sqlx::Error> {
    db::set_scope(conn, Scope::AllTenants).await?;
    let assigned = hand_over(conn, cache, analyst).await?;
    db::set_scope(conn, Scope::Tenant(tenant)).await?;
    Ok(assigned)
}

/// Tries to assign waiting tickets (P1 first, then oldest), page by page:
/// what capacity freed outside a hand-over (an analyst available again, a
/// shift starting, a directory change) goes to. Returns how many were
/// assigned. Rows locked by another replica are skipped.
///
/// Each tenant's policy (with the analysts' live loads) is read once per
/// pass, on first use, and kept across the pass's pages (the loads this
/// pass takes are counted in as it goes). So an analyst the pass saw full
/// stays full for it: a slot freed while it runs goes to the queue head by
/// the freeing transaction's hand-over or by the next pass (the wake-up),
/// never to whichever ticket this pass happens to evaluate next.
pub async fn drain(pool: &PgPool, cache: &PolicyCache) -> Result<usize, sqlx::Error> {
    let mut assigned = 0;
    let mut after = queue_start();
    let mut policies: HashMap<String, Policy> = HashMap::new();
    for _ in 0..50 {
        // Every tenant's rows: a pass serves every queue in one priority
        // order, because an analyst covering several tenants takes the
        // oldest P1 of any of them first (each ticket is still decided
        // under its own tenant's policy).
        let mut tx = db::begin(pool, Scope::AllTenants).await?;
        let rows = tickets::queue_page(&mut tx, after, 16).await?;
        let Some(last) = rows.last() else { break };
        after = last.queue_key();
        let n = rows.len();
        for mut t in rows {
            let policy = match policies.entry(t.tenant_id.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(cache.policy(&mut tx, &t.tenant_id).await?),
            };
            if let Routed::Assigned(who) = route_queued(&mut tx, &mut t, policy).await? {
                assigned += 1;
                for (tenant, p) in policies.iter_mut() {
                    if *tenant != t.tenant_id {
                        p.took(&who);
                    }
                }
            }
        }
        tx.commit().await?;
        if n < 16 {
            break;
        }
    }
    Ok(assigned)
}
