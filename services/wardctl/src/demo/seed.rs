//! The scenario's seed data, created idempotently: fixed request ids, so a
//! second run changes nothing and shows what the services hold.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::{Datelike as _, Utc};
use chrono_tz::Tz;
use tonic::Code;
use wardline_proto::billing::{Contract, CreateContractVersionRequest, GetContractRequest};
use wardline_proto::events::Availability;
use wardline_proto::intake::{AddFacilityRequest, CreateTenantRequest, GetTenantRequest, Tenant};
use wardline_proto::notification::{ListRecipientsRequest, RecipientKind, UpsertRecipientRequest};
use wardline_proto::routing::{
    Analyst, GetAnalystRequest, SetAvailabilityRequest, UpsertAnalystRequest,
};

use super::Progress;
use super::scenario::{SeedAnalyst, SeedContract, SeedRecipient};
use crate::grpc::{Session, describe_status};
use crate::render::{self, billing as billing_render, notification as notification_render};

/// Creates the tenant (or finds it), then adds any facility it lacks.
pub async fn tenant(intake: &Session, spec: &CreateTenantRequest, p: &Progress) -> Result<Tenant> {
    let id = &spec.tenant_id;
    let scoped = intake.for_tenant(Some(id))?;
    let req = CreateTenantRequest {
        request_id: format!("demo-tenant-{id}"),
        ..spec.clone()
    };
    let (mut tenant, note) = match intake.tenants().create_tenant(req).await {
        Ok(r) => (r.into_inner(), ""),
        Err(s) if s.code() == Code::AlreadyExists => {
            let req = GetTenantRequest {
                tenant_id: id.clone(),
            };
            (
                scoped.tenants().get_tenant(req).await?.into_inner(),
                " (already there)",
            )
        }
        Err(s) => return Err(anyhow::Error::new(s).context(format!("creating tenant {id}"))),
    };
    for f in &spec.facilities {
        if tenant
            .facilities
            .iter()
            .all(|h| h.facility_id != f.facility_id)
        {
            let req = AddFacilityRequest {
                request_id: format!("demo-facility-{id}-{}", f.facility_id),
                facility: Some(f.clone()),
            };
            tenant = scoped.tenants().add_facility(req).await?.into_inner();
            p.line(&format!("added facility {} to {id}", f.facility_id));
        }
    }
    let facilities: Vec<&str> = tenant
        .facilities
        .iter()
        .map(|f| f.facility_id.as_str())
        .collect();
    p.line(&format!(
        "{}  {}, {}, numbers {}-…, facilities {}{note}",
        tenant.tenant_id,
        tenant.name,
        tenant.time_zone,
        tenant.ticket_prefix,
        facilities.join(", ")
    ));
    Ok(tenant)
}

/// Upserts each analyst, makes them available, and shows the roster.
pub async fn roster(
    routing: &Session,
    analysts: &[SeedAnalyst],
    run: &str,
    p: &Progress,
) -> Result<()> {
    let mut held = Vec::new();
    for a in analysts {
        let (analyst, note) = analyst(routing, &a.analyst, run).await?;
        p.line(&format!("{:<15} {}{note}", analyst.analyst_id, a.role));
        held.push(analyst);
    }
    p.print("");
    p.block(&render::routing::analyst_table(&held).render());
    Ok(())
}

async fn analyst(routing: &Session, spec: &Analyst, run: &str) -> Result<(Analyst, String)> {
    let id = &spec.analyst_id;
    let mut notes = Vec::new();
    let req = UpsertAnalystRequest {
        request_id: format!("demo-analyst-{id}"),
        analyst: Some(spec.clone()),
        expected_version: 0,
    };
    match routing.analysts().upsert_analyst(req).await {
        Ok(_) => {}
        // The fixed request id served an earlier definition: keep it.
        Err(s) if s.code() == Code::FailedPrecondition => notes.push("kept as stored".to_owned()),
        Err(s) => return Err(anyhow::Error::new(s).context(format!("creating analyst {id}"))),
    }
    // A replayed upsert answers with the first result: read the current state.
    let req = GetAnalystRequest {
        analyst_id: id.clone(),
    };
    let mut current = routing.analysts().get_analyst(req).await?.into_inner();
    let wanted = spec.availability;
    if wanted != 0 && current.availability != wanted {
        let was = render::label::<Availability>(current.availability);
        let req = SetAvailabilityRequest {
            request_id: format!("demo-available-{id}-{run}"),
            analyst_id: id.clone(),
            availability: wanted,
            expected_version: 0,
        };
        current = routing.analysts().set_availability(req).await?.into_inner();
        notes.push(format!(
            "was {was}, now {}",
            render::label::<Availability>(wanted)
        ));
    }
    let note = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    Ok((current, note))
}

/// The first day of the current month in `time_zone` (UTC when unknown).
pub fn first_of_month(time_zone: &str) -> String {
    let now = Utc::now();
    let local = match time_zone.parse::<Tz>() {
        Ok(tz) => now.with_timezone(&tz).date_naive(),
        Err(_) => now.date_naive(),
    };
    local
        .with_day(1)
        .unwrap_or(local)
        .format("%Y-%m-%d")
        .to_string()
}

/// Creates each hospital's contract version (or shows the one billing
/// holds). Billing learns tenants from intake's events: NOT_FOUND is
/// retried until `wait` passes. Returns the tenants with a contract.
pub async fn contracts(
    billing: &Session,
    specs: &[SeedContract],
    tenants: &[Tenant],
    wait: Duration,
    p: &Progress,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + wait;
    let mut with_contract = Vec::new();
    for spec in specs {
        let zone = tenants
            .iter()
            .find(|t| t.tenant_id == spec.tenant)
            .map_or("UTC", |t| t.time_zone.as_str());
        let mut contract = spec.contract.clone();
        if contract.effective_from.is_empty() {
            contract.effective_from = first_of_month(zone);
        }
        let scoped = billing.for_tenant(Some(&spec.tenant))?;
        match contract_version(&scoped, &spec.tenant, contract, deadline).await? {
            Ok((c, note)) => {
                p.line(&format!(
                    "{:<9} {}{note}",
                    spec.tenant,
                    billing_render::contract_line(&c)
                ));
                p.line(&format!("{:<9} {}", "", spec.story));
                with_contract.push(spec.tenant.clone());
            }
            Err(why) => p.line(&format!("{:<9} no contract: {why}", spec.tenant)),
        }
    }
    Ok(with_contract)
}

/// Creates the version; `Ok(Err(why))` when billing still does not know
/// the tenant or refuses and holds none.
async fn contract_version(
    billing: &Session,
    tenant: &str,
    contract: Contract,
    deadline: Instant,
) -> Result<std::result::Result<(Contract, &'static str), String>> {
    let req = CreateContractVersionRequest {
        request_id: format!("demo-contract-{tenant}"),
        contract: Some(contract),
        expected_latest_version: 0,
    };
    loop {
        let s = match billing
            .contracts()
            .create_contract_version(req.clone())
            .await
        {
            Ok(c) => return Ok(Ok((c.into_inner(), ""))),
            Err(s) => s,
        };
        match s.code() {
            // Billing has not applied intake's tenant.created yet.
            Code::NotFound if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Code::NotFound => {
                return Ok(Err(format!(
                    "billing does not know it ({})",
                    describe_status(&s)
                )));
            }
            // A version exists already (an earlier run, another month).
            Code::FailedPrecondition | Code::Aborted => {
                let current = billing
                    .contracts()
                    .get_contract(GetContractRequest::default())
                    .await;
                return Ok(match current {
                    Ok(c) => Ok((c.into_inner(), " (already there)")),
                    Err(_) => Err(format!("refused: {}", describe_status(&s))),
                });
            }
            _ => return Err(anyhow::Error::new(s).context(format!("creating {tenant}'s contract"))),
        }
    }
}

/// Upserts each recipient and shows the tenant's supervisors and on-call.
pub async fn recipients(
    notification: &Session,
    specs: &[SeedRecipient],
    p: &Progress,
) -> Result<()> {
    for r in specs {
        let scoped = notification.for_tenant(Some(&r.tenant))?;
        let subject = &r.recipient.subject_id;
        let req = UpsertRecipientRequest {
            request_id: format!("demo-recipient-{}-{subject}", r.tenant),
            recipient: Some(r.recipient.clone()),
            expected_version: 0,
        };
        let note = match scoped.recipients().upsert_recipient(req).await {
            Ok(_) => "",
            Err(s) if s.code() == Code::FailedPrecondition => " (kept as stored)",
            Err(s) => {
                return Err(
                    anyhow::Error::new(s).context(format!("adding {}'s {subject}", r.tenant))
                );
            }
        };
        p.line(&format!(
            "{:<9} {:<12} {}{note}",
            r.tenant, subject, r.story
        ));
        let req = ListRecipientsRequest {
            kinds: vec![
                RecipientKind::Supervisor as i32,
                RecipientKind::OnCall as i32,
            ],
            ..Default::default()
        };
        let held = crate::commands::notification::list_recipients(&scoped, req, 20)
            .await
            .with_context(|| format!("listing {}'s recipients", r.tenant))?;
        p.block(&notification_render::recipient_table(&held).render());
    }
    p.line("callers and analysts are recipients already (from intake's and routing's events)");
    Ok(())
}
