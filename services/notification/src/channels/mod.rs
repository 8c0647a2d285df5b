//! The channels, behind one trait.
//!
//! A [`Channel`] takes a rendered message and says what the attempt came
//! to as a [`Verdict`]; it never retries by itself (the sender schedules
//! retries as rows, so a restart loses none). Every request carries the
//! delivery id as an idempotency key (`Message-ID` for email,
//! `Idempotency-Key`/`Wardline-Delivery-Id` or the pager's dedup key over
//! HTTP), so a receiver can drop the copy that the rare repeated attempt
//! after a crash produces (see `docs/notification-delivery.md`).
//!
//! - [`email`]: SMTP through lettre (STARTTLS, implicit TLS or plain; auth
//!   when configured).
//! - [`http`]: the SMS gateway, the pager provider and tenants' webhooks,
//!   over one reqwest client (rustls, no redirects).

pub mod egress;
pub mod email;
pub mod http;

use std::sync::Arc;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::retry::Verdict;
use crate::domain::template::Rendered;
use crate::domain::{EventKind, NotificationChannel};

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Delivery id: the idempotency key of every attempt.
    pub delivery_id: Uuid,
    /// Tenant slug.
    pub tenant: String,
    /// What happened.
    pub event_kind: EventKind,
    /// Email address, E.164 number, pager key or URL.
    pub address: String,
    /// Rendered subject and body.
    pub message: Rendered,
    /// Webhooks: the valid signing secrets, newest first.
    pub secrets: Vec<String>,
}

/// A way to reach someone.
pub trait Channel: Send + Sync {
    /// Makes one attempt. Must return within the configured send timeout
    /// (the sender also enforces it).
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Verdict>;
}

/// The configured channels. A channel that is not configured (no SMS
/// gateway, no pager provider) is `None`, and nothing is recorded for it.
#[derive(Clone)]
pub struct Channels {
    /// Email.
    pub email: Option<Arc<dyn Channel>>,
    /// SMS.
    pub sms: Option<Arc<dyn Channel>>,
    /// Webhooks.
    pub webhook: Option<Arc<dyn Channel>>,
    /// Pager.
    pub pager: Option<Arc<dyn Channel>>,
}

impl Channels {
    /// The channels `config` describes.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        // reqwest and lettre use rustls without a built-in provider; the
        // ring provider is installed once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = http::client(config.send_timeout, config.egress.clone())?;
        Ok(Self {
            email: Some(Arc::new(email::Email::new(
                &config.smtp,
                config.send_timeout,
                config.send_concurrency,
            )?)),
            sms: config
                .sms
                .as_ref()
                .map(|g| Arc::new(http::Sms::new(client.clone(), g)) as Arc<dyn Channel>),
            webhook: Some(Arc::new(http::Webhook::new(client.clone()))),
            pager: config
                .pager
                .as_ref()
                .map(|g| Arc::new(http::Pager::new(client.clone(), g)) as Arc<dyn Channel>),
        })
    }

    /// The channel for `c`, if configured.
    pub fn get(&self, c: NotificationChannel) -> Option<&Arc<dyn Channel>> {
        match c {
            NotificationChannel::Email => self.email.as_ref(),
            NotificationChannel::Sms => self.sms.as_ref(),
            NotificationChannel::Webhook => self.webhook.as_ref(),
            NotificationChannel::Pager => self.pager.as_ref(),
            NotificationChannel::Unspecified => None,
        }
    }

    /// True when `c` is configured.
    pub fn enabled(&self, c: NotificationChannel) -> bool {
        self.get(c).is_some()
    }
}
