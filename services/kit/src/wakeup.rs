//! Wake-ups from PostgreSQL `NOTIFY`, coalesced.
//!
//! Loops that poll a table (the outbox relay, notification's sender) are
//! woken by a trigger's `NOTIFY` so they react at once, and poll as a
//! fallback. A `NOTIFY` fires per committing transaction, so under load
//! they arrive far faster than a loop makes rounds. Taking them one per
//! round (as `PgListener::recv` hands them out) builds a backlog that
//! outlives the load: after a load run notification kept making ~180
//! empty claim rounds a second for minutes, one per stale wake-up, a
//! whole core of PostgreSQL. Here a task reads the notifications as they
//! come and turns any number of them into one pending wake-up, so a round
//! that runs after a burst covers the whole burst.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Coalesced wake-ups from one `LISTEN` channel; stops listening on drop.
pub struct Wakeup {
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Wakeup {
    /// Listens on `channel` over a connection of its own made with `pool`'s
    /// options, before returning, so nothing committed after this call goes
    /// unnoticed. When PostgreSQL is unreachable it keeps trying in the
    /// background; until then only the poll interval of [`Wakeup::wait`]
    /// wakes the caller.
    pub async fn listen(pool: &PgPool, channel: &'static str) -> Self {
        let first = match connect(pool, channel).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(channel, error = %e, "LISTEN failed; polling until it works");
                None
            }
        };
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn(listen_loop(pool.clone(), channel, notify.clone(), first));
        Self { notify, task }
    }

    /// Returns when a notification arrived since the previous call (at once
    /// if one is pending, however many there were), or after `poll`.
    pub async fn wait(&self, poll: Duration) {
        tokio::select! {
            _ = self.notify.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen_loop(
    pool: PgPool,
    channel: &'static str,
    notify: Arc<Notify>,
    first: Option<PgListener>,
) {
    let mut listener = match first {
        Some(l) => l,
        None => loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match connect(&pool, channel).await {
                Ok(l) => {
                    tracing::info!(channel, "LISTEN works again");
                    // Whatever was committed meanwhile: look now.
                    notify.notify_one();
                    break l;
                }
                Err(e) => tracing::debug!(channel, error = %e, "LISTEN still failing"),
            }
        },
    };
    loop {
        match listener.recv().await {
            // notify_one keeps at most one permit: a burst is one wake-up.
            Ok(_) => notify.notify_one(),
            Err(e) => {
                // The listener reconnects (and listens again) on the next
                // recv. Wake the caller: notifications sent meanwhile are lost.
                tracing::debug!(channel, error = %e, "LISTEN connection lost; reconnecting");
                notify.notify_one();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(channel).await?;
    Ok(l)
}
