//! Seeding a load run: fresh tenants (so nothing from an earlier run
//! shares their analysts' capacity), analysts that qualify for the run's
//! tickets, a contract per tenant so every call is rated, and a webhook per
//! tenant to the load command's own receiver so notification has a channel
//! that completes locally.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt as _, TryStreamExt as _};
use tonic::Code;
use wardline_proto::billing::CreateContractVersionRequest;
use wardline_proto::events::Availability;
use wardline_proto::intake::{CreateTenantRequest, Facility};
use wardline_proto::notification::{
    CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, EventKind,
};
use wardline_proto::routing::{
    Analyst, GetSlaTargetsRequest, SetSlaTargetsRequest, Skill, SkillModule, TenantCoverage,
    UpsertAnalystRequest,
};

use wardctl::grpc::{Session, describe_status};

use crate::Clients;
use crate::hooks::Receiver;
use crate::plan::{Mode, Plan};

/// Facilities of every load tenant.
pub const FACILITIES: [(&str, &str); 2] = [("main", "Load Main"), ("north", "Load North")];
/// Calls in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
/// Most tickets routing lets one analyst hold.
pub const MAX_CAPACITY: u32 = 100;

/// Calls `call` until it succeeds, fails for good, or transient failures
/// (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED: a busy pool, a
/// restart) have gone on for about 30 s. The caller sends the same request
/// (same request id) each time, so a retry is idempotent.
pub async fn retrying<T, F, Fut>(mut call: F) -> std::result::Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
                ) && Instant::now() + pause < deadline =>
            {
                tracing::debug!(status = %describe_status(&s), "seeding call failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// A short id of this run (base 36 of the Unix time in seconds).
pub fn run_id(unix_secs: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = unix_secs;
    let mut out = Vec::new();
    while n > 0 || out.is_empty() {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Tenant ids of a run: `load-<run>-000` ... (at most 32 characters).
pub fn tenant_ids(run: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("load-{run}-{i:03}")).collect()
}

/// A ticket prefix for tenant `i` of a run: `L` and five letters mixed
/// from the run id, the index and the attempt (intake wants prefixes
/// unique across tenants, and every run creates new tenants; a clash is
/// retried with the next attempt).
pub fn prefix(run: &str, i: u32, attempt: u32) -> String {
    // FNV-1a of the run id, then a multiplicative mix with index and attempt.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v = h
        .wrapping_add(u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(u64::from(attempt).wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    v ^= v >> 29;
    let mut out = String::from("L");
    for _ in 0..5 {
        out.push(char::from(b'A' + (v % 26) as u8));
        v /= 26;
    }
    out
}

/// Capacity each analyst gets: enough for every planned ticket of the
/// tenant without queueing, within routing's limit; `None` when the plan
/// is unknown (flat out for a duration): the limit.
pub fn capacity(planned_per_tenant: Option<u64>, analysts: u32) -> u32 {
    match planned_per_tenant {
        Some(t) => {
            let per = t.div_ceil(u64::from(analysts.max(1))) + 2;
            u32::try_from(per).unwrap_or(MAX_CAPACITY).min(MAX_CAPACITY)
        }
        None => MAX_CAPACITY,
    }
}

/// Creates the tenants of run `run` (UTC, two facilities each). A prefix
/// taken by another tenant is retried with another; a tenant id taken
/// already is an error (the run's tenants must be fresh).
pub async fn tenants(intake: &Session, run: &str, ids: &[String]) -> Result<()> {
    futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| async move {
            let mut attempt = 0;
            loop {
                let req = CreateTenantRequest {
                    request_id: format!("load-tenant-{id}-{attempt}"),
                    tenant_id: id.clone(),
                    name: format!("Load test hospital {i}"),
                    time_zone: "UTC".to_owned(),
                    ticket_prefix: prefix(run, i as u32, attempt),
                    facilities: FACILITIES
                        .iter()
                        .map(|(f, n)| Facility {
                            facility_id: (*f).to_owned(),
                            name: (*n).to_owned(),
                        })
                        .collect(),
                    reopen_window_hours: 0,
                };
                match retrying(|| {
                    let (mut c, req) = (intake.tenants(), req.clone());
                    async move { c.create_tenant(req).await }
                })
                .await
                {
                    Ok(_) => return Ok(()),
                    Err(s)
                        if s.code() == Code::AlreadyExists
                            && s.message().starts_with("ticket_prefix")
                            && attempt < 8 =>
                    {
                        attempt += 1;
                    }
                    Err(s) => {
                        return Err(anyhow::Error::new(s).context(format!("creating tenant {id}")));
                    }
                }
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The analyst `a` of tenant `tenant`: printing skill, covering every
/// facility, available, no shifts (always on shift), no email (so
/// notification sends them nothing: the run's only message per ticket is
/// the tenant's webhook).
pub fn analyst(tenant: &str, a: u32, capacity: u32) -> UpsertAnalystRequest {
    let id = format!("{tenant}-a{a:02}");
    UpsertAnalystRequest {
        request_id: format!("load-analyst-{id}"),
        analyst: Some(Analyst {
            analyst_id: id,
            name: format!("Load analyst {a}"),
            time_zone: "UTC".to_owned(),
            coverage: vec![TenantCoverage {
                tenant_id: tenant.to_owned(),
                facility_ids: vec![],
            }],
            skills: vec![
                Skill {
                    module: SkillModule::Printing as i32,
                    level: 4,
                },
                Skill {
                    module: SkillModule::Devices as i32,
                    level: 3,
                },
            ],
            languages: vec!["en".to_owned()],
            max_concurrent_tickets: capacity,
            availability: Availability::Available as i32,
            ..Default::default()
        }),
        expected_version: 0,
    }
}

/// Creates `per_tenant` analysts for every tenant.
pub async fn analysts(
    routing: &Session,
    ids: &[String],
    per_tenant: u32,
    capacity: u32,
) -> Result<()> {
    let reqs: Vec<UpsertAnalystRequest> = ids
        .iter()
        .flat_map(|t| (0..per_tenant).map(move |a| analyst(t, a, capacity)))
        .collect();
    futures::stream::iter(reqs)
        .map(|req| async move {
            let id = req
                .analyst
                .as_ref()
                .map(|a| a.analyst_id.clone())
                .unwrap_or_default();
            retrying(|| {
                let (mut c, req) = (routing.analysts(), req.clone());
                async move { c.upsert_analyst(req).await }
            })
            .await
            .map(|_| ())
            .map_err(|s| anyhow::Error::new(s).context(format!("creating analyst {id}")))
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Nobody acknowledges a load run's assignments, so with the default
/// acknowledgement timeout routing would re-route every ticket again and
/// again after the run (each a `ticket.assigned`, a webhook, and CPU taken
/// from whatever runs next). The run's tenants get routing's longest
/// timeout instead, an hour; their response and resolution targets stay
/// the defaults.
pub const ACK_TIMEOUT_SECS: u32 = 3600;

/// Sets [`ACK_TIMEOUT_SECS`] on each tenant, keeping its other targets.
pub async fn slow_acknowledgements(routing: &Session, ids: &[String]) -> Result<()> {
    futures::stream::iter(ids)
        .map(|id| async move {
            let session = routing.for_tenant(Some(id))?;
            let context = || format!("setting {id}'s acknowledgement timeout");
            let mut targets = retrying(|| {
                let mut c = session.sla();
                async move { c.get_sla_targets(GetSlaTargetsRequest {}).await }
            })
            .await
            .map_err(|s| anyhow::Error::new(s).context(context()))?
            .into_inner();
            targets.ack_timeout_seconds = ACK_TIMEOUT_SECS;
            let req = SetSlaTargetsRequest {
                request_id: format!("load-sla-{id}"),
                targets: Some(targets),
                expected_version: 0,
            };
            retrying(|| {
                let (mut c, req) = (session.sla(), req.clone());
                async move { c.set_sla_targets(req).await }
            })
            .await
            .map(|_| ())
            .map_err(|s| anyhow::Error::new(s).context(context()))
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Gives every tenant the example contract (wardctl's
/// `scenarios/example-contract.yaml`) from the first of this month.
/// Billing learns tenants from intake's events, so NOT_FOUND is retried for
/// up to `wait`.
pub async fn contracts(billing: &Session, ids: &[String], wait: Duration) -> Result<()> {
    let mut contract = wardctl::commands::billing::parse_contract(
        wardctl::demo::scenario::EXAMPLE_CONTRACT,
        false,
    )?;
    contract.effective_from = wardctl::demo::seed::first_of_month("UTC");
    let deadline = Instant::now() + wait;
    futures::stream::iter(ids)
        .map(|id| {
            let contract = contract.clone();
            async move {
                let session = billing.for_tenant(Some(id))?;
                loop {
                    let req = CreateContractVersionRequest {
                        request_id: format!("load-contract-{id}"),
                        contract: Some(contract.clone()),
                        expected_latest_version: 0,
                    };
                    match retrying(|| {
                        let (mut c, req) = (session.contracts(), req.clone());
                        async move { c.create_contract_version(req).await }
                    })
                    .await
                    {
                        Ok(_) => return Ok(()),
                        Err(s) if s.code() == Code::NotFound && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(s) => {
                            return Err(anyhow::Error::new(s)
                                .context(format!("creating the contract of {id}")));
                        }
                    }
                }
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// A webhook endpoint the run registered: (tenant, endpoint id).
pub type Hook = (String, String);

/// Registers each tenant's webhook (ticket assignments) at `url(tenant)`.
/// `Ok(Err(reason))` when notification refuses or is not there: the run
/// goes on without the notified stage.
pub async fn webhooks(
    notification: &Session,
    ids: &[String],
    url: impl Fn(&str) -> String,
) -> Result<std::result::Result<Vec<Hook>, String>> {
    let mut hooks = Vec::with_capacity(ids.len());
    for id in ids {
        let session = notification.for_tenant(Some(id))?;
        let client = session.webhooks();
        let req = CreateWebhookEndpointRequest {
            request_id: format!("load-webhook-{id}"),
            url: url(id),
            event_kinds: vec![EventKind::TicketAssigned as i32],
        };
        match retrying(|| {
            let mut client = client.clone();
            let req = req.clone();
            async move { client.create_webhook_endpoint(req).await }
        })
        .await
        {
            Ok(r) => {
                if let Some(e) = r.into_inner().endpoint {
                    hooks.push((id.clone(), e.endpoint_id));
                }
            }
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::Unavailable) => {
                return Ok(Err(describe_status(&s)));
            }
            Err(s) => {
                return Err(anyhow::Error::new(s).context(format!("creating {id}'s webhook")));
            }
        }
    }
    Ok(Ok(hooks))
}

/// Deletes the run's webhooks once its receiver is gone. Notification
/// cancels what is still pending for them; otherwise every late delivery
/// would retry for hours against a closed port and take sending capacity
/// from real notifications (and from the next run). Returns the number of
/// deliveries cancelled.
pub async fn remove_webhooks(notification: &Session, hooks: &[Hook]) -> Result<u64> {
    let mut cancelled = 0;
    for (tenant, endpoint) in hooks {
        let mut client = notification.for_tenant(Some(tenant))?.webhooks();
        let req = DeleteWebhookEndpointRequest {
            request_id: format!("load-webhook-delete-{endpoint}"),
            endpoint_id: endpoint.clone(),
        };
        let r = client
            .delete_webhook_endpoint(req)
            .await
            .map_err(|s| anyhow::Error::new(s).context(format!("deleting {tenant}'s webhook")))?;
        cancelled += u64::from(r.into_inner().cancelled_deliveries);
    }
    Ok(cancelled)
}

/// Checks the seeding plan makes sense before anything is created.
pub fn check(tenants: u32, analysts: u32) -> Result<()> {
    anyhow::ensure!((1..=1000).contains(&tenants), "--tenants: 1-1000");
    anyhow::ensure!((1..=1000).contains(&analysts), "--analysts: 1-1000");
    Ok(())
}

/// What a run seeded, and where its webhooks post.
pub struct Seeded {
    /// The run's tenants.
    pub tenants: Vec<String>,
    /// Tickets each analyst may hold.
    pub capacity: u32,
    /// The webhook receiver.
    pub receiver: Receiver,
    /// The webhooks registered (removed at the end).
    pub hooks: Vec<Hook>,
    /// Why `notified` is not measured, when it is not.
    pub notified_off: Option<String>,
}

/// Seeds the run's tenants, analysts, acknowledgement timeouts, contracts
/// and webhooks.
pub async fn everything(c: &Clients, plan: &Plan, run: &str) -> Result<Seeded> {
    let tenants = tenant_ids(run, plan.tenants);
    let per_tenant = plan
        .planned()
        .map(|n| (n + plan.warmup_tickets()).div_ceil(u64::from(plan.tenants)));
    let capacity = capacity(per_tenant, plan.analysts);
    if let Some(t) = per_tenant.filter(|t| *t > u64::from(capacity) * u64::from(plan.analysts)) {
        eprintln!(
            "note: {t} tickets per tenant exceed {} analysts x {capacity} (routing's most per analyst): the rest will queue; raise --analysts or --tenants",
            plan.analysts
        );
    }
    self::tenants(&c.intake[0], run, &tenants).await?;
    analysts(&c.routing, &tenants, plan.analysts, capacity).await?;
    slow_acknowledgements(&c.routing, &tenants).await?;
    contracts(&c.billing, &tenants, Duration::from_secs(30)).await?;
    let receiver = Receiver::start().await?;
    let (hooks, notified_off) = match &c.notification {
        None => (Vec::new(), Some("notification is not reachable".to_owned())),
        Some(n) => match webhooks(n, &tenants, |t| receiver.url(t)).await? {
            Ok(h) => (h, None),
            Err(why) => (
                Vec::new(),
                Some(format!(
                    "notification refused the run's http:// webhook receiver ({why}); to measure it, start notification with NOTIFICATION_WEBHOOK_ALLOW_HTTP=true and NOTIFICATION_EGRESS_ALLOW_HOSTS=127.0.0.1 (scripts/demo.sh does)"
                )),
            ),
        },
    };
    eprintln!(
        "seeded {} tenants, {} analysts each (capacity {capacity}), a contract each, {}",
        plan.tenants,
        plan.analysts,
        if notified_off.is_none() {
            format!("webhooks to {}", receiver.addr)
        } else {
            "no webhooks".to_owned()
        }
    );
    if let (None, Mode::Rate(r)) = (&notified_off, plan.mode)
        && r / f64::from(plan.tenants) > 10.0
    {
        eprintln!(
            "note: {:.0} webhook messages/s per tenant; notification's per-tenant rate (NOTIFICATION_TENANT_RATE_PER_SEC, default 10) may hold them back: create->notified then measures that limit",
            r / f64::from(plan.tenants)
        );
    }
    Ok(Seeded {
        tenants,
        capacity,
        receiver,
        hooks,
        notified_off,
    })
}

/// Removes the run's webhooks (see [`remove_webhooks`]), saying so.
pub async fn cleanup(c: &Clients, seeded: &Seeded) {
    let (Some(n), false) = (&c.notification, seeded.hooks.is_empty()) else {
        return;
    };
    match remove_webhooks(n, &seeded.hooks).await {
        Ok(cancelled) => eprintln!(
            "removed the run's {} webhooks ({cancelled} deliveries still pending for them cancelled)",
            seeded.hooks.len()
        ),
        Err(e) => eprintln!(
            "warning: the run's webhooks are still registered ({}); remove them with `wardctl --tenant <tenant> webhook delete <id>`",
            wardctl::error_text(&e)
        ),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_prefixes_are_valid_for_intake() {
        let run = run_id(1_764_064_000);
        assert!(run.len() <= 7 && run.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(run_id(0), "0");
        assert_eq!(run_id(35), "z");
        assert_eq!(run_id(36), "10");
        let ids = tenant_ids(&run, 3);
        assert_eq!(ids[2], format!("load-{run}-002"));
        assert!(ids.iter().all(|i| i.len() <= 32));
        let mut seen = std::collections::HashSet::new();
        for r in ["tp1z75", "tp1z76", "tp1zii"] {
            for i in 0..200 {
                let p = prefix(r, i, 0);
                assert!((2..=6).contains(&p.len()) && p.chars().all(|c| c.is_ascii_uppercase()));
                seen.insert(p);
            }
        }
        assert!(
            seen.len() >= 595,
            "prefixes rarely clash: {} of 600",
            seen.len()
        );
        assert_eq!(prefix("tp1z75", 3, 0), prefix("tp1z75", 3, 0));
        assert_ne!(prefix("tp1z75", 3, 0), prefix("tp1z75", 3, 1));
    }

    #[test]
    fn capacity_covers_the_plan_within_routings_limit() {
        assert_eq!(capacity(Some(20), 5), 6);
        assert_eq!(capacity(Some(0), 5), 2);
        assert_eq!(capacity(Some(10_000), 5), MAX_CAPACITY);
        assert_eq!(capacity(None, 5), MAX_CAPACITY);
        let a = analyst("load-x-000", 3, 7).analyst.unwrap();
        assert_eq!(a.analyst_id, "load-x-000-a03");
        assert_eq!(a.max_concurrent_tickets, 7);
        assert!(
            a.email.is_empty(),
            "no email: nothing to send but the webhook"
        );
    }
}
