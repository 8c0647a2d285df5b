//! Test helpers in the zero-to-production style: real servers, fresh state.
//!
//! - [`TestNats`]: a private `nats-server` with JetStream on a free loopback
//!   port and a temporary store, killed when dropped (and when the test
//!   process dies, through the parent-death signal).
//! - [`TestDb`]: a fresh database per test on the shared PostgreSQL, dropped
//!   afterwards, also when the test fails.
//! - [`token`] and [`Auth`]: signed tokens and an interceptor for typed clients.
//! - [`build`]: the events producers publish (tenant and ticket created),
//!   and publishing them as the relay does, for tests playing a producer.
//! - [`events`]: reading what reached the event stream.
//! - [`TestPgCluster`]: a private PostgreSQL cluster (initdb/pg_ctl) that a
//!   test may restart with `pg_ctl restart -m immediate`.
//! - [`ServiceProcess`]: a service binary as a process, for SIGKILL and
//!   SIGSTOP tests.
//! - [`TestOtlp`]: a real OTLP/gRPC trace receiver, for trace tests.
//! - [`TestSmtp`] and [`HttpSink`]: real local SMTP and HTTP receivers that
//!   stand in for third-party endpoints (mail relay, SMS gateway, webhook
//!   receiver, pager provider), with scripted failures.
//!
//! Variables: `WARDLINE_NATS_SERVER_BIN` (a nats-server >= 2.10; default
//! `nats-server` on PATH) and `WARDLINE_TEST_DATABASE_URL` (a role that may
//! create databases; default `postgres://postgres@127.0.0.1:5432/postgres`).

pub mod build;
pub mod events;
mod http_sink;
mod nats;
mod otlp;
mod pg;
mod pg_cluster;
mod process;
mod smtp;

pub use http_sink::{HttpSink, Received};
pub use nats::TestNats;
pub use nats::free_port;
pub use nats::stable_port;
pub use otlp::{ReceivedSpan, TestOtlp};
pub use pg::TestDb;
pub use pg_cluster::TestPgCluster;
pub use process::ServiceProcess;
pub use smtp::{Mail, TestSmtp};

use secrecy::SecretString;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use wardline_kit::auth::Role;

/// Notification's sealing key list in tests (`NOTIFICATION_SECRET_KEYS`).
pub const SEALING_KEYS: &str = "test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The signing secret every test service and client uses.
pub const SECRET: &str = "wardline-test-secret-0123456789-abcdefghijklmnop";

/// The secret as the services take it.
pub fn secret() -> SecretString {
    SecretString::from(SECRET)
}

/// A token for `subject` in `tenant` (use `"*"` for the vendor scope).
pub fn token(subject: &str, tenant: &str, roles: &[Role]) -> String {
    wardline_kit::auth::mint(
        &secret(),
        subject,
        tenant,
        roles,
        std::time::Duration::from_secs(3600),
    )
    .expect("a token can be minted")
}

/// Adds `authorization` (and `x-tenant-id`, for vendor tokens) to every call.
#[derive(Clone)]
pub struct Auth {
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    tenant: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Auth {
    /// Sends `token`, naming `tenant` in `x-tenant-id` when given.
    pub fn new(token: &str, tenant: Option<&str>) -> Self {
        Self {
            bearer: Some(format!("Bearer {token}").parse().expect("token is ASCII")),
            tenant: tenant.map(|t| t.parse().expect("tenant is ASCII")),
        }
    }

    /// Sends no credentials.
    pub fn anonymous() -> Self {
        Self {
            bearer: None,
            tenant: None,
        }
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        if let Some(t) = &self.tenant {
            req.metadata_mut()
                .insert(wardline_kit::auth::TENANT_HEADER, t.clone());
        }
        Ok(req)
    }
}

/// A lazily connecting channel to `addr`.
pub fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect_lazy()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
