//! ContractService: versioned contracts per tenant.

use chrono::Utc;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::events::{from_timestamp, timestamp};
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_proto::billing::contract_service_server::ContractService;
use wardline_proto::billing::{
    Contract, CreateContractVersionRequest, GetContractRequest, ListContractVersionsRequest,
    ListContractVersionsResponse,
};

use super::{Api, READERS, decode_replay, require_request_id, tenant_of};
use crate::contract::terms_from_proto;
use crate::domain::calendar::{Period, local_date};
use crate::store;

#[tonic::async_trait]
impl ContractService for Api {
    async fn create_contract_version(
        &self,
        req: Request<CreateContractVersionRequest>,
    ) -> Result<Response<Contract>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, &[Role::VendorAdmin])?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let given = r
            .contract
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("contract: required"))?;
        let terms = terms_from_proto(given, 0).map_err(Status::invalid_argument)?;
        let hash = idempotency::request_hash("CreateContractVersion", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) = idempotency::begin(
            &mut tx,
            &tenant,
            &r.request_id,
            "CreateContractVersion",
            &hash,
        )
        .await?
        {
            return decode_replay(&bytes);
        }
        // One writer per tenant at a time: versions are numbered in order.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('billing.contract.' || $1))")
            .bind(&tenant)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_status(&e))?;
        let tz = store::tenant_zone(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| Status::not_found(format!("tenant {tenant} not found")))?;
        let versions = store::versions(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        let latest = versions.last();
        let latest_version = latest.map(|v| v.terms.version).unwrap_or(0);
        if r.expected_latest_version != latest_version {
            return Err(Status::aborted(format!(
                "expected_latest_version: the latest version is {latest_version}, not {}",
                r.expected_latest_version
            )));
        }
        let today = local_date(tz, Utc::now());
        match latest {
            Some(prev) => {
                if terms.effective_from <= today {
                    return Err(Status::failed_precondition(
                        "contract.effective_from: a new version must start after today in the tenant's time zone",
                    ));
                }
                if terms.effective_from <= prev.terms.effective_from {
                    return Err(Status::failed_precondition(
                        "contract.effective_from: must be after the latest version's",
                    ));
                }
            }
            None => {
                let issued: Option<String> = sqlx::query_scalar(
                    "SELECT period FROM periods WHERE tenant_id = $1 AND status = 2 AND period >= $2 ORDER BY period LIMIT 1",
                )
                .bind(&tenant)
                .bind(Period::of(terms.effective_from).to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_status(&e))?;
                if let Some(p) = issued {
                    return Err(Status::failed_precondition(format!(
                        "contract.effective_from: period {p} is already issued; start the contract after it"
                    )));
                }
            }
        }
        let mut contract = given.clone();
        contract.contract_id = latest
            .map(|v| v.contract.contract_id.clone())
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        contract.tenant_id = tenant.clone();
        contract.version = latest_version + 1;
        contract.effective_until = String::new();
        contract.created_at = Some(timestamp(Utc::now()));
        contract.created_by = caller.subject.clone();
        store::insert_version(&mut tx, &tenant, &contract, terms.effective_from)
            .await
            .map_err(|e| db_status(&e))?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![
                contract.contract_id.clone(),
                format!("v{}", contract.version),
            ],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        idempotency::finish(&mut tx, &tenant, &r.request_id, &contract.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        tracing::info!(tenant = %tenant, version = contract.version, "contract version created");
        Ok(Response::new(contract))
    }

    async fn get_contract(
        &self,
        req: Request<GetContractRequest>,
    ) -> Result<Response<Contract>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let mut tx = self.begin(&tenant).await?;
        let versions = store::versions(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        let found = if r.version != 0 {
            versions.into_iter().find(|v| v.terms.version == r.version)
        } else {
            let tz = store::tenant_zone(&mut tx, &tenant)
                .await
                .map_err(|e| db_status(&e))?
                .ok_or_else(|| Status::not_found(format!("tenant {tenant} not found")))?;
            let at = match &r.at {
                Some(t) => {
                    from_timestamp(t).ok_or_else(|| Status::invalid_argument("at: out of range"))?
                }
                None => Utc::now(),
            };
            let date = local_date(tz, at);
            versions
                .into_iter()
                .filter(|v| v.terms.effective_from <= date)
                .max_by_key(|v| v.terms.effective_from)
        };
        tx.commit().await.map_err(|e| db_status(&e))?;
        found.map(|v| Response::new(v.contract)).ok_or_else(|| {
            Status::not_found(format!("no contract version of tenant {tenant} matches"))
        })
    }

    async fn list_contract_versions(
        &self,
        req: Request<ListContractVersionsRequest>,
    ) -> Result<Response<ListContractVersionsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let size = super::page_size(r.page_size)? as usize;
        let before: u32 = if r.page_token.is_empty() {
            u32::MAX
        } else {
            r.page_token.parse().map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?
        };
        let mut tx = self.begin(&tenant).await?;
        let mut versions: Vec<Contract> = store::versions(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?
            .into_iter()
            .map(|v| v.contract)
            .filter(|c| c.version < before)
            .collect();
        tx.commit().await.map_err(|e| db_status(&e))?;
        versions.reverse();
        let more = versions.len() > size;
        versions.truncate(size);
        let next_page_token = if more {
            versions
                .last()
                .map(|c| c.version.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListContractVersionsResponse {
            contracts: versions,
            next_page_token,
        }))
    }
}
