//! TenantService: tenants and facilities.

use prost::Message;
use tonic::{Request, Response, Status};
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::db::Scope;
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_kit::validate;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{TenantCreated, TenantUpdated};
use wardline_proto::intake::tenant_service_server::TenantService;
use wardline_proto::intake::{
    AddFacilityRequest, CreateTenantRequest, Facility, GetTenantRequest, ListTenantsRequest,
    ListTenantsResponse, Tenant,
};

use super::{Api, convert, require_request_id};
use crate::limits;
use crate::storage::{self, FacilityRow, InsertTenant, TenantRow};

/// Default hours a resolved ticket may be reopened.
pub const DEFAULT_REOPEN_WINDOW_HOURS: u32 = 72;

fn validate_facility(f: &Facility, field: &str) -> Result<FacilityRow, Status> {
    if !validate::is_slug(&f.facility_id, 1, limits::FACILITY_ID) {
        return Err(Status::invalid_argument(format!(
            "{field}.facility_id: 1-{} of [a-z0-9-], starting with a letter",
            limits::FACILITY_ID
        )));
    }
    if !validate::is_display_text(&f.name, limits::NAME) {
        return Err(Status::invalid_argument(format!(
            "{field}.name: 1-{} characters, no control characters",
            limits::NAME
        )));
    }
    Ok(FacilityRow {
        facility_id: f.facility_id.clone(),
        name: f.name.trim().to_owned(),
    })
}

fn validate_create(r: &CreateTenantRequest) -> Result<TenantRow, Status> {
    require_request_id(&r.request_id)?;
    if !validate::is_slug(&r.tenant_id, 2, limits::TENANT_ID) {
        return Err(Status::invalid_argument(format!(
            "tenant_id: 2-{} of [a-z0-9-], starting with a letter",
            limits::TENANT_ID
        )));
    }
    if !validate::is_display_text(&r.name, limits::NAME) {
        return Err(Status::invalid_argument(format!(
            "name: 1-{} characters, no control characters",
            limits::NAME
        )));
    }
    if r.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(Status::invalid_argument(
            "time_zone: not an IANA time zone (e.g. America/Chicago)",
        ));
    }
    let prefix_ok = (2..=limits::TICKET_PREFIX).contains(&r.ticket_prefix.len())
        && r.ticket_prefix.chars().all(|c| c.is_ascii_uppercase());
    if !prefix_ok {
        return Err(Status::invalid_argument(format!(
            "ticket_prefix: 2-{} uppercase letters",
            limits::TICKET_PREFIX
        )));
    }
    if r.reopen_window_hours > limits::REOPEN_WINDOW_HOURS {
        return Err(Status::invalid_argument(format!(
            "reopen_window_hours: at most {} (90 days)",
            limits::REOPEN_WINDOW_HOURS
        )));
    }
    if r.facilities.len() > limits::FACILITIES {
        return Err(Status::invalid_argument(format!(
            "facilities: at most {}",
            limits::FACILITIES
        )));
    }
    let mut facilities = Vec::with_capacity(r.facilities.len());
    for (i, f) in r.facilities.iter().enumerate() {
        let f = validate_facility(f, &format!("facilities[{i}]"))?;
        if facilities
            .iter()
            .any(|x: &FacilityRow| x.facility_id == f.facility_id)
        {
            return Err(Status::invalid_argument(format!(
                "facilities[{i}].facility_id: duplicate"
            )));
        }
        facilities.push(f);
    }
    Ok(TenantRow {
        tenant_id: r.tenant_id.clone(),
        name: r.name.trim().to_owned(),
        time_zone: r.time_zone.clone(),
        ticket_prefix: r.ticket_prefix.clone(),
        reopen_window_hours: if r.reopen_window_hours == 0 {
            DEFAULT_REOPEN_WINDOW_HOURS
        } else {
            r.reopen_window_hours
        } as i32,
        active: true,
        created_at: chrono::Utc::now(),
        facilities,
    })
}

#[tonic::async_trait]
impl TenantService for Api {
    async fn create_tenant(
        &self,
        req: Request<CreateTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let caller = Caller::from_request(&req)?;
        // A new hospital is the vendor's decision: a vendor_admin pinned to
        // one tenant administers that tenant only.
        caller.require_vendor(Role::VendorAdmin)?;
        let r = req.into_inner();
        let row = validate_create(&r)?;
        tracing::Span::current().record("tenant", row.tenant_id.as_str());
        let hash = idempotency::request_hash("CreateTenant", &r);
        // Every tenant's scope: only an all-tenants vendor admin gets here
        // (above), the new tenant's row is not in any tenant's scope yet,
        // and the key belongs to the vendor pseudo-tenant.
        let mut tx = self.begin(Scope::AllTenants).await?;
        // Vendor-level keys are scoped to the vendor pseudo-tenant.
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, "_vendor", &r.request_id, "CreateTenant", &hash).await?
        {
            return decode_replay(&bytes);
        }
        match storage::insert_tenant(&mut tx, &row)
            .await
            .map_err(|e| db_status(&e))?
        {
            InsertTenant::Created => {}
            InsertTenant::IdTaken => {
                return Err(Status::already_exists(format!(
                    "tenant_id: {} already exists",
                    row.tenant_id
                )));
            }
            InsertTenant::PrefixTaken => {
                return Err(Status::already_exists(format!(
                    "ticket_prefix: {} is used by another tenant",
                    row.ticket_prefix
                )));
            }
        }
        let env = wardline_kit::events::envelope(
            "intake",
            &row.tenant_id,
            &row.tenant_id,
            1,
            Payload::TenantCreated(TenantCreated {
                tenant: Some(convert::tenant_info(&row)),
            }),
        );
        wardline_kit::outbox::enqueue(&mut tx, &env)
            .await
            .map_err(super::outbox_status)?;
        // On record under the new tenant: its admins see who created it.
        audit::record(
            &mut tx,
            &caller,
            &row.tenant_id,
            vec![row.tenant_id.clone()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = convert::tenant(&row);
        idempotency::finish(&mut tx, "_vendor", &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        tracing::info!(tenant = %row.tenant_id, "tenant created");
        Ok(Response::new(resp))
    }

    async fn get_tenant(&self, req: Request<GetTenantRequest>) -> Result<Response<Tenant>, Status> {
        let caller = Caller::from_request(&req)?;
        // As the proto says: billing reads contracts and invoices, not the
        // hospital's set-up.
        caller.require(&[
            Role::VendorAdmin,
            Role::TenantAdmin,
            Role::Analyst,
            Role::Requester,
        ])?;
        let r = req.into_inner();
        if !r.tenant_id.is_empty() && !validate::is_slug(&r.tenant_id, 2, limits::TENANT_ID) {
            return Err(Status::invalid_argument(format!(
                "tenant_id: 2-{} of [a-z0-9-], starting with a letter",
                limits::TENANT_ID
            )));
        }
        let tenant = if r.tenant_id.is_empty() {
            caller.tenant()?.to_owned()
        } else if caller.all_tenants || caller.tenant.as_deref() == Some(r.tenant_id.as_str()) {
            r.tenant_id
        } else {
            // Another tenant's id looks exactly like a missing one.
            return Err(Status::not_found(format!(
                "tenant {} not found",
                r.tenant_id
            )));
        };
        let mut conn = self.begin(Scope::Tenant(&tenant)).await?;
        let row = storage::get_tenant(&mut conn, &tenant)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| Status::not_found(format!("tenant {tenant} not found")))?;
        conn.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(convert::tenant(&row)))
    }

    async fn list_tenants(
        &self,
        req: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        // The list of every hospital is the vendor's; a pinned vendor_admin
        // (its own tenant's administrator) reads its tenant with GetTenant.
        caller.require_vendor(Role::VendorAdmin)?;
        let r = req.into_inner();
        let size = wardline_kit::api::page_size(
            r.page_size,
            limits::DEFAULT_TENANTS_PAGE,
            limits::PAGE_SIZE,
        )?;
        if !r.page_token.is_empty() && !validate::is_slug(&r.page_token, 2, limits::TENANT_ID) {
            return Err(Status::invalid_argument(
                "page_token: not a token from a previous response",
            ));
        }
        // Every tenant's scope: the list of hospitals is the all-tenants
        // vendor admin's only (checked above).
        let mut tx = self.begin(Scope::AllTenants).await?;
        let rows = storage::list_tenants(&mut tx, &r.page_token, size + 1)
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let more = rows.len() as i64 > size;
        let tenants: Vec<Tenant> = rows
            .iter()
            .take(size as usize)
            .map(convert::tenant)
            .collect();
        let next_page_token = if more {
            tenants
                .last()
                .map(|t| t.tenant_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListTenantsResponse {
            tenants,
            next_page_token,
        }))
    }

    async fn add_facility(
        &self,
        req: Request<AddFacilityRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(&[Role::VendorAdmin, Role::TenantAdmin])?;
        let tenant = caller.tenant()?.to_owned();
        tracing::Span::current().record("tenant", tenant.as_str());
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let facility = r
            .facility
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("facility: required"))?;
        let facility = validate_facility(facility, "facility")?;
        let hash = idempotency::request_hash("AddFacility", &r);
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "AddFacility", &hash).await?
        {
            return decode_replay(&bytes);
        }
        // Lock the tenant row so concurrent facility changes publish in order.
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1::bigint FROM tenants WHERE tenant_id = $1 FOR UPDATE")
                .bind(&tenant)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_status(&e))?;
        if exists.is_none() {
            return Err(Status::not_found(format!("tenant {tenant} not found")));
        }
        if !storage::insert_facility(&mut tx, &tenant, &facility)
            .await
            .map_err(|e| db_status(&e))?
        {
            return Err(Status::already_exists(format!(
                "facility.facility_id: {} already exists",
                facility.facility_id
            )));
        }
        let row = storage::get_tenant(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| Status::not_found(format!("tenant {tenant} not found")))?;
        let env = wardline_kit::events::envelope(
            "intake",
            &tenant,
            &tenant,
            0,
            Payload::TenantUpdated(TenantUpdated {
                tenant: Some(convert::tenant_info(&row)),
            }),
        );
        wardline_kit::outbox::enqueue(&mut tx, &env)
            .await
            .map_err(super::outbox_status)?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![tenant.clone(), facility.facility_id.clone()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = convert::tenant(&row);
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(resp))
    }
}

pub(super) fn decode_replay<M: Message + Default>(bytes: &[u8]) -> Result<Response<M>, Status> {
    M::decode(bytes)
        .map(Response::new)
        .map_err(|_| Status::internal("stored response is unreadable"))
}
