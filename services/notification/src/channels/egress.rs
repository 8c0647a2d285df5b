//! The egress guard on every outbound HTTP request (webhooks, the SMS
//! gateway, the pager provider): [`crate::domain::egress::Policy`] applied
//! to the addresses the connection is actually made to.
//!
//! - Names are resolved by [`GuardedResolver`], which reqwest uses for
//!   every connection: the addresses it hands back are the only ones
//!   connected to, and it refuses a name if any of them is not allowed
//!   (resolve, check, pin: no second lookup a rebinding server could answer
//!   differently).
//! - IP literals never reach a resolver, so [`check_target`] judges them
//!   before the request is made.
//! - The client follows no redirects and uses no proxy (a proxy would make
//!   the proxy the address connected to), and never reads response bodies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::egress::{Policy, Refusal};

/// How long a registration-time lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// A refusal by the guard, recognisable in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("egress refused: {0}")]
pub struct Blocked(#[from] pub Refusal);

/// reqwest's resolver with the policy applied.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
}

impl GuardedResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            policy.check_resolved(&host, &ips).map_err(Blocked)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Judges an IP-literal host before a request (names are judged by the
/// resolver when connecting). `Ok` for names.
pub fn check_target(policy: &Policy, url: &reqwest::Url) -> Result<(), Refusal> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.check_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => policy.check_ip(IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

/// The registration-time check of an endpoint URL: an IP literal is judged
/// at once; a name is resolved (with a short timeout) and every address
/// judged. A name that does not resolve now is accepted: DNS may not know
/// it yet, and the send-time check is the one that counts.
pub async fn check_registration(policy: &Policy, url: &reqwest::Url) -> Result<(), Refusal> {
    let Some(url::Host::Domain(name)) = url.host() else {
        return check_target(policy, url);
    };
    if policy.allows_name(name) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port))).await;
    match lookup {
        Ok(Ok(addrs)) => {
            let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if ips.is_empty() {
                return Ok(());
            }
            policy.check_resolved(name, &ips)
        }
        Ok(Err(_)) | Err(_) => Ok(()),
    }
}

/// True when `e` (or a cause of it) is the guard's refusal.
pub fn is_blocked(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<Blocked>() {
            return true;
        }
        source = s.source();
    }
    false
}
