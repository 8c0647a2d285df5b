//! The HTTP channels: the SMS gateway, the pager provider and tenants'
//! webhooks. One client, rustls, redirects not followed (an endpoint is
//! configured with its final URL; following a redirect would send a signed
//! body somewhere nobody registered).
//!
//! Request shapes:
//! - SMS: `POST <NOTIFICATION_SMS_URL>` `{"to": "+1312...", "body": "..."}`.
//! - Pager (Events-API style): `POST <NOTIFICATION_PAGER_URL>`
//!   `{"routing_key": "<pager key>", "event_action": "trigger",
//!   "dedup_key": "<delivery id>", "payload": {"summary": "...",
//!   "severity": "critical", "source": "wardline"}}`.
//! - Webhook: `POST <endpoint url>` with the rendered JSON body and
//!   `Wardline-Signature`, `Wardline-Delivery-Id`, `Wardline-Event-Kind`.
//!
//! Every request carries `Idempotency-Key: <delivery id>`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::egress::{GuardedResolver, check_target, is_blocked};
use super::{Channel, Outgoing};
use crate::config::GatewayConfig;
use crate::domain::egress::Policy;
use crate::domain::retry::{Verdict, classify_http};
use crate::domain::{ErrorClass, kind_label, signature};

/// The shared HTTP client, and the egress policy its requests obey.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    policy: Arc<Policy>,
}

/// The shared HTTP client: connections only to what `policy` allows (see
/// [`super::egress`]), no redirects, no proxy, a time limit per attempt.
pub fn client(timeout: Duration, policy: Arc<Policy>) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(GuardedResolver::new(policy.clone()))
        .user_agent(concat!("wardline-notification/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(Client { http, policy })
}

fn classify_error(e: &reqwest::Error) -> Verdict {
    if is_blocked(e) {
        return Verdict::failed(ErrorClass::InvalidAddress, 0);
    }
    if e.is_timeout() {
        return Verdict::failed(ErrorClass::Timeout, 0);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return Verdict::failed(ErrorClass::Tls, 0);
        }
        source = s.source();
    }
    if e.is_builder() {
        return Verdict::failed(ErrorClass::InvalidAddress, 0);
    }
    Verdict::failed(ErrorClass::Connection, 0)
}

async fn post(
    client: &Client,
    url: &str,
    token: Option<&SecretString>,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Verdict {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Verdict::failed(ErrorClass::InvalidAddress, 0);
    };
    if let Err(refusal) = check_target(&client.policy, &parsed) {
        tracing::warn!(%refusal, "outbound request refused by the egress policy");
        return Verdict::failed(ErrorClass::InvalidAddress, 0);
    }
    let mut req = client
        .http
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t.expose_secret());
    }
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    match req.send().await {
        Ok(resp) => classify_http(resp.status().as_u16()),
        Err(e) => {
            if is_blocked(&e) {
                tracing::warn!(error = %e, "outbound request refused by the egress policy");
            }
            classify_error(&e)
        }
    }
}

/// SMS through the configured HTTP gateway.
pub struct Sms {
    client: Client,
    gateway: GatewayConfig,
}

impl Sms {
    /// The channel for `gateway`.
    pub fn new(client: Client, gateway: &GatewayConfig) -> Self {
        Self {
            client,
            gateway: gateway.clone(),
        }
    }
}

impl Channel for Sms {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if !wardline_kit::validate::is_e164(&msg.address) {
                return Verdict::failed(ErrorClass::InvalidAddress, 0);
            }
            let body = serde_json::json!({ "to": msg.address, "body": msg.message.body });
            post(
                &self.client,
                &self.gateway.url,
                self.gateway.token.as_ref(),
                &[("Idempotency-Key", msg.delivery_id.to_string())],
                body.to_string().into_bytes(),
            )
            .await
        })
    }
}

/// Pages through a webhook-style provider.
pub struct Pager {
    client: Client,
    gateway: GatewayConfig,
}

impl Pager {
    /// The channel for `gateway`.
    pub fn new(client: Client, gateway: &GatewayConfig) -> Self {
        Self {
            client,
            gateway: gateway.clone(),
        }
    }
}

impl Channel for Pager {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let body = serde_json::json!({
                "routing_key": msg.address,
                "event_action": "trigger",
                "dedup_key": msg.delivery_id.to_string(),
                "payload": {
                    "summary": msg.message.body,
                    "severity": "critical",
                    "source": "wardline",
                    "component": kind_label(msg.event_kind),
                    "group": msg.tenant,
                },
            });
            post(
                &self.client,
                &self.gateway.url,
                self.gateway.token.as_ref(),
                &[("Idempotency-Key", msg.delivery_id.to_string())],
                body.to_string().into_bytes(),
            )
            .await
        })
    }
}

/// Signed webhooks to tenants' endpoints.
pub struct Webhook {
    client: Client,
}

impl Webhook {
    /// The channel.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Channel for Webhook {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let body = msg.message.body.clone().into_bytes();
            let secrets: Vec<&str> = msg.secrets.iter().map(String::as_str).collect();
            let sig = signature::header(&secrets, chrono::Utc::now().timestamp(), &body);
            post(
                &self.client,
                &msg.address,
                None,
                &[
                    (signature::HEADER, sig),
                    ("Wardline-Delivery-Id", msg.delivery_id.to_string()),
                    ("Wardline-Event-Kind", kind_label(msg.event_kind).to_owned()),
                    ("Idempotency-Key", msg.delivery_id.to_string()),
                ],
                body,
            )
            .await
        })
    }
}
