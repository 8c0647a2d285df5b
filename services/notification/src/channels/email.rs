//! Email over SMTP with lettre.
//!
//! The transport pools connections (lettre's pool: up to one per attempt
//! in flight, `NOTIFICATION_SEND_CONCURRENCY`, each closed after a minute
//! idle), so a burst of email reuses sessions instead of paying TCP, TLS
//! and EHLO (and AUTH) per message; STARTTLS (required, not opportunistic),
//! implicit TLS or plain SMTP, and authentication, come from the
//! configuration. The `Message-ID` is derived from the delivery id, so a
//! repeated attempt carries the same id and mail systems (and people's
//! clients) can recognise the copy.

use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{Channel, Outgoing};
use crate::config::{SmtpConfig, SmtpTls};
use crate::domain::ErrorClass;
use crate::domain::retry::{Verdict, classify_smtp};

/// The email channel.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Email {
    /// How long a pooled SMTP connection may stay idle before it is closed.
    const IDLE: Duration = Duration::from_secs(60);

    /// A channel for `cfg`, each SMTP command limited to `timeout`, with up
    /// to `connections` pooled sessions (one per attempt in flight).
    pub fn new(cfg: &SmtpConfig, timeout: Duration, connections: usize) -> anyhow::Result<Self> {
        let builder = match cfg.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)?,
        };
        let pool = PoolConfig::new()
            .max_size(u32::try_from(connections.max(1)).unwrap_or(u32::MAX))
            .idle_timeout(Self::IDLE);
        let mut builder = builder
            .port(cfg.port)
            .timeout(Some(timeout))
            .pool_config(pool);
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: cfg.from.parse()?,
        })
    }

    fn message(&self, msg: &Outgoing) -> Result<Message, Verdict> {
        let to: Mailbox = msg
            .address
            .parse()
            .map_err(|_| Verdict::failed(ErrorClass::InvalidAddress, 0))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.message.subject.clone())
            .message_id(Some(format!("<{}@wardline.notification>", msg.delivery_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(msg.message.body.clone())
            .map_err(|_| Verdict::failed(ErrorClass::RenderFailed, 0))
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> Verdict {
    if let Some(code) = e.status() {
        return classify_smtp(u16::from(code));
    }
    if e.is_timeout() {
        Verdict::failed(ErrorClass::Timeout, 0)
    } else if e.is_tls() {
        Verdict::failed(ErrorClass::Tls, 0)
    } else {
        // Connection refused or reset, or a malformed reply mid-session.
        Verdict::failed(ErrorClass::Connection, 0)
    }
}

impl Channel for Email {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let message = match self.message(msg) {
                Ok(m) => m,
                Err(v) => return v,
            };
            match self.transport.send(message).await {
                Ok(response) => classify_smtp(u16::from(response.code())),
                // Not logged: the server's reply may quote the address, which
                // stays out of logs; the attempt row keeps code and class.
                Err(e) => classify(&e),
            }
        })
    }
}
