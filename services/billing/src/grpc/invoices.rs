//! InvoiceService.

use chrono::Utc;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_proto::billing::invoice_service_server::InvoiceService;
use wardline_proto::billing::{
    ExportFormat, ExportInvoiceRequest, ExportInvoiceResponse, GetDraftInvoiceRequest,
    GetInvoiceRequest, Invoice, InvoiceStatus, IssueInvoiceRequest, ListInvoicesRequest,
    ListInvoicesResponse, RebuildCheckRequest, RebuildCheckResponse,
};

use super::{
    Api, READERS, decode_replay, invoice_status, period_or_current, require_request_id, tenant_of,
};
use crate::domain::calendar::Period;
use crate::invoice::{self, Issued};

impl Api {
    /// An invoice by id, within the caller's tenant.
    async fn invoice_by_id(&self, tenant: &str, id: &str) -> Result<Invoice, Status> {
        let invoice_id = Uuid::parse_str(id)
            .map_err(|_| Status::invalid_argument("invoice_id: not a valid invoice id"))?;
        let mut tx = self.begin(tenant).await?;
        let period: Option<String> = sqlx::query_scalar(
            "SELECT period FROM periods WHERE tenant_id = $1 AND invoice_id = $2",
        )
        .bind(tenant)
        .bind(invoice_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_status(&e))?;
        let period = period
            .and_then(|p| Period::parse(&p))
            .ok_or_else(|| Status::not_found(format!("invoice {id} not found")))?;
        let invoice = invoice::current(&mut tx, tenant, period)
            .await
            .map_err(invoice_status)?
            .0;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(invoice)
    }
}

#[tonic::async_trait]
impl InvoiceService for Api {
    async fn get_invoice(
        &self,
        req: Request<GetInvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        Ok(Response::new(
            self.invoice_by_id(&tenant, &req.into_inner().invoice_id)
                .await?,
        ))
    }

    async fn list_invoices(
        &self,
        req: Request<ListInvoicesRequest>,
    ) -> Result<Response<ListInvoicesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let size = super::page_size(r.page_size)? as usize;
        super::check_filter("statuses", r.statuses.len())?;
        for (i, s) in r.statuses.iter().enumerate() {
            if wardline_proto::billing::InvoiceStatus::try_from(*s).is_err() {
                return Err(Status::invalid_argument(format!(
                    "statuses[{i}]: unknown value {s}"
                )));
            }
        }
        for (field, v) in [("period_from", &r.period_from), ("period_to", &r.period_to)] {
            if !v.is_empty() && Period::parse(v).is_none() {
                return Err(Status::invalid_argument(format!(
                    "{field}: a period YYYY-MM"
                )));
            }
        }
        if !r.page_token.is_empty() && Period::parse(&r.page_token).is_none() {
            return Err(Status::invalid_argument(
                "page_token: not a token from a previous response",
            ));
        }
        let statuses: Vec<i16> = r.statuses.iter().map(|s| *s as i16).collect();
        let mut tx = self.begin(&tenant).await?;
        let periods: Vec<(String, i16)> = sqlx::query_as(
            "SELECT period, status FROM periods WHERE tenant_id = $1
               AND ($2 = '' OR period >= $2) AND ($3 = '' OR period <= $3) AND ($4 = '' OR period < $4)
               AND (cardinality($5::smallint[]) = 0 OR status = ANY($5))
             ORDER BY period DESC LIMIT $6",
        )
        .bind(&tenant)
        .bind(&r.period_from)
        .bind(&r.period_to)
        .bind(&r.page_token)
        .bind(&statuses)
        .bind(size as i64 + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_status(&e))?;
        let more = periods.len() > size;
        let mut invoices = Vec::new();
        for (p, _) in periods.iter().take(size) {
            let period =
                Period::parse(p).ok_or_else(|| Status::internal("stored period is malformed"))?;
            let (mut inv, _) = invoice::current(&mut tx, &tenant, period)
                .await
                .map_err(invoice_status)?;
            inv.lines.clear();
            invoices.push(inv);
        }
        tx.commit().await.map_err(|e| db_status(&e))?;
        let next_page_token = if more {
            invoices
                .last()
                .map(|i| i.period.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListInvoicesResponse {
            invoices,
            next_page_token,
        }))
    }

    async fn get_draft_invoice(
        &self,
        req: Request<GetDraftInvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let mut tx = self.begin(&tenant).await?;
        let period = period_or_current(&mut tx, &tenant, "period", &r.period).await?;
        let (inv, _) = invoice::current(&mut tx, &tenant, period)
            .await
            .map_err(invoice_status)?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        if inv.status == InvoiceStatus::Issued as i32 {
            return Err(Status::failed_precondition(format!(
                "period {period} is issued as invoice {}; use GetInvoice",
                inv.invoice_id
            )));
        }
        Ok(Response::new(inv))
    }

    async fn issue_invoice(
        &self,
        req: Request<IssueInvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, &[Role::VendorAdmin])?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let period = Period::parse(&r.period)
            .ok_or_else(|| Status::invalid_argument("period: a period YYYY-MM"))?;
        let hash = idempotency::request_hash("IssueInvoice", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "IssueInvoice", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let tz = crate::store::tenant_zone(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| Status::not_found(format!("tenant {tenant} not found")))?;
        if Utc::now() < period.next().start_utc(tz) {
            return Err(Status::failed_precondition(format!(
                "period {period} has not ended in the tenant's time zone"
            )));
        }
        let issued = match invoice::issue(&mut tx, &tenant, period)
            .await
            .map_err(invoice_status)?
        {
            Issued::Now(inv) => *inv,
            Issued::Already => {
                return Err(Status::failed_precondition(format!(
                    "period {period} is already issued"
                )));
            }
        };
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![issued.invoice_id.clone(), period.to_string()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        idempotency::finish(&mut tx, &tenant, &r.request_id, &issued.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        tracing::info!(tenant = %tenant, invoice_id = %issued.invoice_id, "invoice issued");
        Ok(Response::new(issued))
    }

    async fn export_invoice(
        &self,
        req: Request<ExportInvoiceRequest>,
    ) -> Result<Response<ExportInvoiceResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, READERS)?;
        let r = req.into_inner();
        let format = match ExportFormat::try_from(r.format) {
            Ok(f @ (ExportFormat::Csv | ExportFormat::Json)) => f,
            _ => return Err(Status::invalid_argument("format: CSV or JSON")),
        };
        let inv = self.invoice_by_id(&tenant, &r.invoice_id).await?;
        let (content, content_type, ext) = match format {
            ExportFormat::Csv => (
                invoice::to_csv(&inv).into_bytes(),
                "text/csv; charset=utf-8",
                "csv",
            ),
            _ => (
                serde_json::to_vec_pretty(&invoice::to_json(&inv))
                    .map_err(|_| Status::internal("cannot render JSON"))?,
                "application/json",
                "json",
            ),
        };
        Ok(Response::new(ExportInvoiceResponse {
            content,
            content_type: content_type.into(),
            file_name: format!("{}-{}.{ext}", inv.tenant_id, inv.period),
        }))
    }

    async fn rebuild_check(
        &self,
        req: Request<RebuildCheckRequest>,
    ) -> Result<Response<RebuildCheckResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, &[Role::VendorAdmin, Role::Billing])?;
        let r = req.into_inner();
        let period = Period::parse(&r.period)
            .ok_or_else(|| Status::invalid_argument("period: a period YYYY-MM"))?;
        let mut tx = self.begin(&tenant).await?;
        let check = invoice::rebuild_check(&mut tx, &tenant, period)
            .await
            .map_err(invoice_status)?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        if !check.matches {
            tracing::error!(tenant = %tenant, invoice_id = %check.invoice_id, "rebuild check found differences");
            metrics::counter!("wardline_billing_rebuild_mismatches_total").increment(1);
        }
        Ok(Response::new(check))
    }
}
