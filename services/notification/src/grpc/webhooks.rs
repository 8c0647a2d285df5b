//! WebhookService: a tenant's endpoints, their signing secrets and rotation.
//!
//! A secret is shown once, in the response that created it; it is stored
//! only sealed (`domain::sealing`), and the stored idempotency response
//! leaves it out, so a retry of the same request gets the endpoint without
//! the secret (rotate to get a new one). Rotation keeps the previous secret
//! signing until the overlap ends, so the receiver can switch at any time
//! in between.

use chrono::Utc;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::audit;
use wardline_kit::auth::Caller;
use wardline_kit::events::timestamp;
use wardline_kit::idempotency::{self, Claim};
use wardline_proto::notification::webhook_service_server::WebhookService;
use wardline_proto::notification::{
    CreateWebhookEndpointRequest, CreateWebhookEndpointResponse, DeleteWebhookEndpointRequest,
    DeleteWebhookEndpointResponse, ListWebhookEndpointsRequest, ListWebhookEndpointsResponse,
    RotateWebhookSecretRequest, RotateWebhookSecretResponse, WebhookEndpoint,
};

use super::{
    ADMINS, Api, db, decode_replay, event_kind, invalid, page_size, parse_uuid, require_request_id,
    tenant_of,
};
use crate::domain::retry::Verdict;
use crate::domain::{ErrorClass, signature};
use crate::jobs::sender::{Attempted, finish_attempts};
use crate::store::attempts;
use crate::store::deliveries;
use crate::store::webhooks::{self as store, EndpointRow as Row};

const DEFAULT_OVERLAP: u32 = 86_400;
const MAX_OVERLAP: u32 = crate::limits::OVERLAP_SECONDS;

fn to_proto(r: &Row) -> WebhookEndpoint {
    WebhookEndpoint {
        endpoint_id: r.endpoint_id.to_string(),
        tenant_id: r.tenant_id.clone(),
        url: r.url.clone(),
        event_kinds: r.event_kinds.iter().map(|k| i32::from(*k)).collect(),
        created_at: Some(timestamp(r.created_at)),
        secret_issued_at: Some(timestamp(r.secret_issued_at)),
        previous_secret_expires_at: r
            .previous_expires_at
            .filter(|t| *t > Utc::now())
            .map(timestamp),
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("webhook endpoint {id} not found"))
}

/// Checks an endpoint URL's form: https (http only when allowed), at most
/// 2048 characters, a host, no credentials, no fragment. Where it points is
/// judged by the egress policy ([`crate::channels::egress`]).
pub(crate) fn check_url(url: &str, allow_http: bool) -> Result<reqwest::Url, Status> {
    if url.is_empty() {
        return Err(invalid("url: required"));
    }
    if url.len() > crate::limits::URL {
        return Err(invalid(format!(
            "url: at most {} characters",
            crate::limits::URL
        )));
    }
    // The URL parser would quietly drop or escape them; refused instead,
    // so the stored URL is the one the admin sees.
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("url: no spaces or control characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid("url: not a URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(invalid("url: must be an https:// URL")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url: needs a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("url: must not carry credentials"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("url: must not have a #fragment"));
    }
    Ok(parsed)
}

/// Seals what is not sealed under the current key: clear secrets written
/// before secrets were sealed (migration 0003), and secrets sealed under an
/// older key (key rotation). Runs at start-up; the table holds endpoints,
/// not deliveries, so one pass is small.
pub async fn seal_at_rest(
    pool: &sqlx::PgPool,
    keys: &crate::domain::sealing::Keyring,
) -> anyhow::Result<()> {
    // Every tenant's endpoints: start-up maintenance of the service's own
    // secrets, before any request is served.
    let mut conn = wardline_kit::db::begin(pool, wardline_kit::db::Scope::AllTenants).await?;
    let rows = store::unsealed(&mut conn, keys.current_id()).await?;
    let current = keys.current_id();
    let mut resealed = 0;
    for (id, clear, prev_clear, sealed, prev_sealed) in rows {
        let bound = id.to_string();
        let reseal = |clear: Option<String>,
                      sealed: Option<Vec<u8>>|
         -> anyhow::Result<(Option<Vec<u8>>, bool)> {
            Ok(match (clear, sealed) {
                (Some(c), _) => (Some(keys.seal(&bound, &c)), true),
                (None, Some(s)) if crate::domain::sealing::Keyring::key_id(&s) != Some(current) => {
                    (Some(keys.seal(&bound, &keys.open(&bound, &s)?)), true)
                }
                (None, s) => (s, false),
            })
        };
        let (secret, a) = reseal(clear, sealed)?;
        let (previous, b) = reseal(prev_clear, prev_sealed)?;
        if a || b {
            store::store_sealed(&mut conn, id, secret.as_deref(), previous.as_deref()).await?;
            resealed += 1;
        }
    }
    conn.commit().await?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            key = current,
            "webhook secrets sealed under the current key"
        );
    }
    Ok(())
}

async fn lock(conn: &mut sqlx::PgConnection, tenant: &str, id: Uuid) -> Result<Row, Status> {
    store::lock(conn, tenant, id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id.to_string()))
}

async fn get(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Row, Status> {
    store::get(conn, id).await.map_err(db)
}

#[tonic::async_trait]
impl WebhookService for Api {
    async fn create_webhook_endpoint(
        &self,
        req: Request<CreateWebhookEndpointRequest>,
    ) -> Result<Response<CreateWebhookEndpointResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let url = check_url(&r.url, self.webhook_allow_http)?;
        crate::channels::egress::check_registration(&self.egress, &url)
            .await
            .map_err(|refusal| invalid(format!("url: {refusal}")))?;
        if r.event_kinds.is_empty() {
            return Err(invalid("event_kinds: at least one"));
        }
        let mut kinds: Vec<i16> = Vec::new();
        for (i, k) in r.event_kinds.iter().enumerate() {
            let k = event_kind(*k, &format!("event_kinds[{i}]"))? as i16;
            if kinds.contains(&k) {
                return Err(invalid(format!("event_kinds[{i}]: duplicate")));
            }
            kinds.push(k);
        }
        let hash = idempotency::request_hash("CreateWebhookEndpoint", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) = idempotency::begin(
            &mut tx,
            &tenant,
            &r.request_id,
            "CreateWebhookEndpoint",
            &hash,
        )
        .await?
        {
            return decode_replay(&bytes);
        }
        let id = Uuid::now_v7();
        let secret = signature::new_secret();
        let sealed = self.secret_keys.seal(&id.to_string(), &secret);
        store::insert(&mut tx, id, &tenant, &r.url, &kinds, &sealed)
            .await
            .map_err(db)?;
        // The endpoint's id only: its URL and secret are not for the record.
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![id.to_string()],
            &r.request_id,
        )
        .await
        .map_err(db)?;
        let mut resp = CreateWebhookEndpointResponse {
            endpoint: Some(to_proto(&get(&mut tx, id).await?)),
            secret: String::new(),
        };
        // Stored for replay without the secret: it exists only sealed.
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        resp.secret = secret;
        tx.commit().await.map_err(db)?;
        tracing::info!(endpoint = %id, "webhook endpoint created");
        Ok(Response::new(resp))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<RotateWebhookSecretResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let id = parse_uuid(&r.endpoint_id, "endpoint_id")?;
        let overlap = match r.overlap_seconds {
            0 => DEFAULT_OVERLAP,
            n if n <= MAX_OVERLAP => n,
            _ => return Err(invalid("overlap_seconds: at most 604800 (7 days)")),
        };
        let hash = idempotency::request_hash("RotateWebhookSecret", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) = idempotency::begin(
            &mut tx,
            &tenant,
            &r.request_id,
            "RotateWebhookSecret",
            &hash,
        )
        .await?
        {
            return decode_replay(&bytes);
        }
        lock(&mut tx, &tenant, id).await?;
        let secret = signature::new_secret();
        let sealed = self.secret_keys.seal(&id.to_string(), &secret);
        store::rotate(&mut tx, id, &sealed, f64::from(overlap))
            .await
            .map_err(db)?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![id.to_string()],
            &r.request_id,
        )
        .await
        .map_err(db)?;
        let mut resp = RotateWebhookSecretResponse {
            endpoint: Some(to_proto(&get(&mut tx, id).await?)),
            secret: String::new(),
        };
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        resp.secret = secret;
        tx.commit().await.map_err(db)?;
        tracing::info!(endpoint = %id, overlap, "webhook secret rotated");
        Ok(Response::new(resp))
    }

    async fn list_webhook_endpoints(
        &self,
        req: Request<ListWebhookEndpointsRequest>,
    ) -> Result<Response<ListWebhookEndpointsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        let size = page_size(r.page_size, 100)?;
        // Oldest first; endpoint ids are UUIDv7, so id order is creation order.
        let after = if r.page_token.is_empty() {
            Uuid::nil()
        } else {
            Uuid::parse_str(&r.page_token)
                .map_err(|_| invalid("page_token: not a token from a previous response"))?
        };
        let mut conn = self.begin(&tenant).await?;
        let rows = store::list(&mut conn, &tenant, after, size + 1)
            .await
            .map_err(db)?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        Ok(Response::new(ListWebhookEndpointsResponse {
            endpoints: page.iter().map(to_proto).collect(),
            next_page_token: match page.last() {
                Some(l) if more => l.endpoint_id.to_string(),
                _ => String::new(),
            },
        }))
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<DeleteWebhookEndpointRequest>,
    ) -> Result<Response<DeleteWebhookEndpointResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let id = parse_uuid(&r.endpoint_id, "endpoint_id")?;
        let hash = idempotency::request_hash("DeleteWebhookEndpoint", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) = idempotency::begin(
            &mut tx,
            &tenant,
            &r.request_id,
            "DeleteWebhookEndpoint",
            &hash,
        )
        .await?
        {
            return decode_replay(&bytes);
        }
        lock(&mut tx, &tenant, id).await?;
        let now = Utc::now();
        store::delete(&mut tx, id, now).await.map_err(db)?;
        // Pending deliveries end FAILED with ENDPOINT_DELETED, recorded as
        // an attempt so the reason is visible (array statements, however
        // many). One in flight finishes on its own (its attempt then finds
        // the endpoint deleted or succeeds).
        let mut pending = deliveries::lock_pending_for_endpoint(&mut tx, id)
            .await
            .map_err(db)?;
        for p in &mut pending {
            p.attempt_count += 1;
        }
        let ids: Vec<Uuid> = pending.iter().map(|p| p.delivery_id).collect();
        let counts: Vec<i32> = pending.iter().map(|p| p.attempt_count).collect();
        attempts::start(&mut tx, &ids, &counts, false)
            .await
            .map_err(db)?;
        let trace = wardline_kit::outbox::TraceContext::current();
        let items: Vec<_> = pending
            .iter()
            .map(|p| {
                (
                    Attempted::of(p),
                    Verdict::failed(ErrorClass::EndpointDeleted, 0),
                    &trace,
                )
            })
            .collect();
        finish_attempts(&mut tx, &items, &self.policy, false)
            .await
            .map_err(db)?;
        // The endpoint and the deliveries its deletion cancelled.
        let changed = std::iter::once(id)
            .chain(pending.iter().map(|p| p.delivery_id))
            .map(|u| u.to_string())
            .collect();
        audit::record(&mut tx, &caller, &tenant, changed, &r.request_id)
            .await
            .map_err(db)?;
        let resp = DeleteWebhookEndpointResponse {
            endpoint_id: id.to_string(),
            deleted_at: Some(timestamp(now)),
            cancelled_deliveries: pending.len() as u32,
        };
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(endpoint = %id, cancelled = pending.len(), "webhook endpoint deleted");
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        check_url("https://hooks.stmarys.org/wardline", false).unwrap();
        check_url("http://127.0.0.1:8080/x", true).unwrap();
        for (u, allow) in [
            ("http://127.0.0.1:8080/x", false),
            ("ftp://x.org/", true),
            ("https://user:pw@x.org/", false),
            ("https://x.org/#frag", false),
            ("not a url", false),
            ("", false),
        ] {
            let e = check_url(u, allow).unwrap_err();
            assert!(e.message().starts_with("url:"), "{u}: {}", e.message());
        }
        assert!(check_url(&format!("https://x.org/{}", "a".repeat(2048)), false).is_err());
    }
}
