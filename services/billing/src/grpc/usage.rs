//! UsageService: a period's usage, its charges, and unbilled calls.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::db::Scope;
use wardline_kit::events::{from_timestamp, timestamp};
use wardline_kit::grpc::db_status;
use wardline_proto::billing::usage_service_server::UsageService;
use wardline_proto::billing::{
    BillingTier, GetUsageRequest, ListChargesRequest, ListChargesResponse, ListUnbilledRequest,
    ListUnbilledResponse, UnbilledCall, Usage, UsageBucket,
};

use super::{Api, READERS, invoice_status, period_or_current, tenant_of};
use crate::domain::calendar::AfterHours;
use crate::domain::rating::LineKind;
use crate::invoice;

#[derive(sqlx::FromRow)]
struct UnbilledRow {
    tenant_id: String,
    ticket_id: Uuid,
    number: String,
    source_event_id: Uuid,
    created_at: DateTime<Utc>,
    tier: i16,
    priority: i16,
    category: i16,
    any_version: bool,
}

#[tonic::async_trait]
impl UsageService for Api {
    async fn get_usage(&self, req: Request<GetUsageRequest>) -> Result<Response<Usage>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let mut tx = self.begin(&tenant).await?;
        let period = period_or_current(&mut tx, &tenant, "period", &r.period).await?;
        let (inv, c) = invoice::current(&mut tx, &tenant, period)
            .await
            .map_err(invoice_status)?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let rated = &c.rated;
        let mut buckets: BTreeMap<(i32, i32), (u64, u64)> = BTreeMap::new();
        for ch in rated
            .charges
            .iter()
            .filter(|c| c.kind != LineKind::SlaCredit && c.rule_code != "after_hours")
        {
            let tier = match ch.tier {
                Some(crate::domain::rating::Tier::Clinical) => BillingTier::Clinical,
                _ => BillingTier::Technical,
            } as i32;
            let e = buckets.entry((tier, i32::from(ch.priority))).or_default();
            e.0 += 1;
            if ch.after_hours != AfterHours::No {
                e.1 += 1;
            }
        }
        Ok(Response::new(Usage {
            tenant_id: tenant,
            period: period.to_string(),
            as_of: Some(timestamp(Utc::now())),
            contract_versions: rated.contract_versions.clone(),
            calls: rated.calls,
            by_tier_priority: buckets
                .into_iter()
                .map(
                    |((tier, priority), (calls, after_hours_calls))| UsageBucket {
                        tier,
                        priority,
                        calls,
                        after_hours_calls,
                    },
                )
                .collect(),
            after_hours_calls: rated.after_hours_calls,
            calls_included_allowance: rated.allowance,
            included_calls: rated.included_calls,
            overage_calls: rated.overage_calls,
            p1_response_breaches: rated.p1_response_breaches,
            p2_response_breaches: rated.p2_response_breaches,
            unbilled_calls: rated.unbilled.len() as u64,
            amount: inv.total,
        }))
    }

    async fn list_charges(
        &self,
        req: Request<ListChargesRequest>,
    ) -> Result<Response<ListChargesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let size = super::page_size(r.page_size)? as usize;
        super::check_filter("kinds", r.kinds.len())?;
        let offset: usize = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse().map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?
        };
        let mut tx = self.begin(&tenant).await?;
        let period = period_or_current(&mut tx, &tenant, "period", &r.period).await?;
        let (inv, c) = invoice::current(&mut tx, &tenant, period)
            .await
            .map_err(invoice_status)?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let issued = inv.status == wardline_proto::billing::InvoiceStatus::Issued as i32;
        let mut charges = invoice::charges(&c, issued.then_some(inv.invoice_id.as_str()));
        charges.retain(|ch| {
            (r.kinds.is_empty() || r.kinds.contains(&ch.kind))
                && (r.ticket_id.is_empty() || ch.ticket_id == r.ticket_id)
        });
        charges.sort_by(|a, b| {
            (
                a.occurred_at.as_ref().map(|t| (t.seconds, t.nanos)),
                &a.charge_id,
            )
                .cmp(&(
                    b.occurred_at.as_ref().map(|t| (t.seconds, t.nanos)),
                    &b.charge_id,
                ))
        });
        let page: Vec<_> = charges.iter().skip(offset).take(size).cloned().collect();
        let next_page_token = if offset + size < charges.len() {
            (offset + size).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(ListChargesResponse {
            charges: page,
            next_page_token,
        }))
    }

    async fn list_unbilled(
        &self,
        req: Request<ListUnbilledRequest>,
    ) -> Result<Response<ListUnbilledResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(&[Role::VendorAdmin, Role::Billing])?;
        let r = req.into_inner();
        if !r.tenant_id.is_empty()
            && !wardline_kit::validate::is_slug(&r.tenant_id, 2, crate::limits::TENANT_ID)
        {
            return Err(Status::invalid_argument(format!(
                "tenant_id: 2-{} of [a-z0-9-], starting with a letter",
                crate::limits::TENANT_ID
            )));
        }
        let tenant: Option<String> = if caller.all_tenants && caller.has_any(&[Role::VendorAdmin]) {
            Some(r.tenant_id.clone())
                .filter(|t| !t.is_empty())
                .or_else(|| caller.tenant.clone())
        } else {
            if !r.tenant_id.is_empty() && Some(r.tenant_id.as_str()) != caller.tenant.as_deref() {
                return Err(Status::permission_denied(
                    "tenant_id: only an all-tenants vendor admin may name a tenant",
                ));
            }
            Some(caller.tenant()?.to_owned())
        };
        let size = super::page_size(r.page_size)?;
        let after = if r.page_token.is_empty() {
            Uuid::nil()
        } else {
            Uuid::parse_str(&r.page_token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?
        };
        let (from, to) = match &r.created {
            Some(range) => (
                range.start.as_ref().and_then(from_timestamp),
                range.end.as_ref().and_then(from_timestamp),
            ),
            None => (None, None),
        };
        // A vendor's listing of every tenant sees every tenant's rows; any
        // other listing is one tenant's.
        let mut tx = self
            .begin_scoped(tenant.as_deref().map_or(Scope::AllTenants, Scope::Tenant))
            .await?;
        let rows: Vec<UnbilledRow> = sqlx::query_as(
            "SELECT c.tenant_id, c.ticket_id, c.number, c.source_event_id, c.created_at, c.tier, c.priority, c.category,
                    EXISTS (SELECT 1 FROM contract_versions v WHERE v.tenant_id = c.tenant_id) AS any_version
               FROM calls c
              WHERE ($1::text IS NULL OR c.tenant_id = $1) AND c.ticket_id > $2
                AND ($3::timestamptz IS NULL OR c.created_at >= $3) AND ($4::timestamptz IS NULL OR c.created_at < $4)
                AND NOT EXISTS (SELECT 1 FROM contract_versions v WHERE v.tenant_id = c.tenant_id AND v.effective_from <= c.local_date)
              ORDER BY c.ticket_id LIMIT $5",
        )
        .bind(&tenant)
        .bind(after)
        .bind(from)
        .bind(to)
        .bind(size + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        let more = rows.len() as i64 > size;
        let calls: Vec<UnbilledCall> = rows
            .iter()
            .take(size as usize)
            .map(|u| UnbilledCall {
                tenant_id: u.tenant_id.clone(),
                ticket_id: u.ticket_id.to_string(),
                number: u.number.clone(),
                source_event_id: u.source_event_id.to_string(),
                created_at: Some(timestamp(u.created_at)),
                tier: i32::from(u.tier),
                priority: i32::from(u.priority),
                category: i32::from(u.category),
                reason_code: if u.any_version {
                    "not_yet_in_force"
                } else {
                    "no_contract"
                }
                .into(),
            })
            .collect();
        let next_page_token = if more {
            calls
                .last()
                .map(|c| c.ticket_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListUnbilledResponse {
            calls,
            next_page_token,
        }))
    }
}
