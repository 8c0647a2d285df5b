//! `wardctl tenant ...`: create, show and list tenants, add facilities.

use anyhow::{Result, bail};
use wardline_proto::intake::{
    AddFacilityRequest, CreateTenantRequest, Facility, GetTenantRequest, ListTenantsRequest, Tenant,
};

use super::{Context, print_json};
use crate::cli::TenantCommand;
use crate::grpc::Session;
use crate::render;

/// Runs a tenant command.
pub async fn run(ctx: &Context, cmd: TenantCommand) -> Result<()> {
    match cmd {
        TenantCommand::Create {
            id,
            name,
            time_zone,
            prefix,
            facilities,
            reopen_window_hours,
        } => {
            let session = ctx.session(None).await?;
            let req = CreateTenantRequest {
                request_id: ctx.request_id(),
                tenant_id: id,
                name,
                time_zone,
                ticket_prefix: prefix,
                facilities: facilities
                    .into_iter()
                    .map(|f| Facility {
                        facility_id: f.id,
                        name: f.name,
                    })
                    .collect(),
                reopen_window_hours,
            };
            let tenant = session.tenants().create_tenant(req).await?.into_inner();
            show(ctx, &tenant);
        }
        TenantCommand::Get { id } => {
            let Some(id) = id.or_else(|| ctx.tenant.clone()) else {
                bail!("which tenant? give its id (wardctl tenant get stmarys) or --tenant");
            };
            let session = ctx.session(Some(&id)).await?;
            let tenant = get(&session, &id).await?;
            show(ctx, &tenant);
        }
        TenantCommand::List => {
            let session = ctx.session(None).await?;
            let tenants = list_all(&session).await?;
            if ctx.json {
                print_json(&tenants);
            } else if tenants.is_empty() {
                println!("no tenants yet (create one with: wardctl tenant create ...)");
            } else {
                print!("{}", render::tenant_table(&tenants, ctx.utc).render());
            }
        }
        TenantCommand::AddFacility { id, name } => {
            let Some(tenant) = ctx.tenant.as_deref() else {
                bail!(
                    "add-facility needs --tenant (or WARDCTL_TENANT): the tenant to add the facility to"
                );
            };
            let session = ctx.session(Some(tenant)).await?;
            let req = AddFacilityRequest {
                request_id: ctx.request_id(),
                facility: Some(Facility {
                    facility_id: id,
                    name,
                }),
            };
            let tenant = session.tenants().add_facility(req).await?.into_inner();
            show(ctx, &tenant);
        }
    }
    Ok(())
}

fn show(ctx: &Context, tenant: &Tenant) {
    if ctx.json {
        print_json(tenant);
    } else {
        print!("{}", render::tenant_details(tenant, ctx.utc));
    }
}

/// Gets one tenant.
pub async fn get(session: &Session, id: &str) -> Result<Tenant> {
    let req = GetTenantRequest {
        tenant_id: id.to_owned(),
    };
    Ok(session.tenants().get_tenant(req).await?.into_inner())
}

/// Every tenant, following the pages.
pub async fn list_all(session: &Session) -> Result<Vec<Tenant>> {
    let req = ListTenantsRequest::default();
    paged!(usize::MAX, session.tenants(), list_tenants, req, tenants)
}
