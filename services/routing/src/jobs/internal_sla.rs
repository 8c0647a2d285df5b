//! The internal-target watcher: a tenant's own stricter SLA targets
//! ([`crate::store::internal_sla`]) alert once per ticket and target with an
//! `SlaBreached` event marked `internal`, which notification sends to the
//! tenant's supervisors, billing never credits and intake does not count.
//! No escalation: the contractual clocks keep doing that.

use sqlx::PgPool;
use wardline_kit::db::{self, Scope};
use wardline_kit::events::timestamp;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{SlaBreached, SlaTarget};

use crate::assignment::publish;
use crate::store::internal_sla;
use crate::store::tickets;

/// Most alerts one transaction raises.
pub const BATCH: usize = 32;

/// Raises the alerts that are due (at most [`BATCH`]). Returns how many.
pub async fn alert_due(pool: &PgPool) -> Result<usize, sqlx::Error> {
    // Every tenant with internal targets, in one scan: the watcher is the
    // service's own machinery, not a request.
    let mut tx = db::begin(pool, Scope::AllTenants).await?;
    let due = internal_sla::due(&mut tx, BATCH as i64).await?;
    let mut raised = 0;
    for d in &due {
        // A ticket being changed right now is left for the next scan.
        let Some(mut t) = tickets::lock(&mut tx, d.ticket_id, true).await? else {
            continue;
        };
        if !internal_sla::record(&mut tx, &t.tenant_id, d).await? {
            continue;
        }
        let target = if d.target == "response" {
            SlaTarget::Response
        } else {
            SlaTarget::Resolution
        };
        metrics::counter!("wardline_sla_internal_alerts_total", "target" => d.target.clone(), "priority" => t.label())
            .increment(1);
        tracing::info!(ticket_id = %t.ticket_id, target = %d.target, "internal SLA target missed; alerting");
        let alert = Payload::SlaBreached(SlaBreached {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            priority: i32::from(t.priority.get()),
            target: target as i32,
            deadline: Some(timestamp(d.deadline)),
            breached_at: Some(timestamp(chrono::Utc::now())),
            internal: true,
        });
        publish(&mut tx, &mut t, alert).await?;
        tickets::save(&mut tx, &t).await?;
        raised += 1;
    }
    tx.commit().await?;
    Ok(raised)
}
