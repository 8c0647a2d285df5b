//! Test helpers in the zero-to-production style: real servers, fresh state.
//!
//! - [`TestNats`]: a private `nats-server` with JetStream on a free loopback
//!   port and a temporary store, killed when dropped (and when the test
//!   process dies, through the parent-death signal).
//! - [`TestDb`]: a fresh database per test on the shared PostgreSQL, dropped
//!   afterwards, also when the test fails.
//! - [`auth_env`], [`token`] and [`Auth`]: how test services verify tokens
//!   (the production path: an ES256 issuer's JWKS file, issuer and
//!   per-service audiences), tokens signed by that issuer, and an
//!   interceptor for typed clients.
//! - [`TestIdp`]: a hospital identity provider stand-in: real ES256/RS256
//!   keys, their JWKS served over HTTP on loopback, tokens signed with them.
//! - [`build`]: the events producers publish (tenant and ticket created),
//!   and publishing them as the relay does, for tests playing a producer.
//! - [`events`]: reading what reached the event stream and the dead-letter stream.
//! - [`hostile`]: mutated envelopes for the consumers' property tests, and
//!   the check that each ended applied or dead-lettered.
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
pub mod hostile;
mod http_sink;
mod idp;
pub mod limits;
mod nats;
mod otlp;
mod pg;
mod pg_cluster;
mod process;
pub mod rls;
mod smtp;

pub use http_sink::{HttpSink, Received};
pub use idp::{IDP_ISSUER, TestIdp, provider_claims};
pub use nats::TestNats;
pub use nats::free_port;
pub use nats::stable_port;
pub use otlp::{ReceivedSpan, TestOtlp};
pub use pg::{OWNER_ROLE, RUNTIME_ROLE, TestDb};
pub use pg_cluster::TestPgCluster;
pub use process::ServiceProcess;
pub use smtp::{Mail, TestSmtp};

use std::sync::OnceLock;

use secrecy::SecretString;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use wardline_kit::auth::Role;
use wardline_kit::auth::signing::{Claims, DevIssuer, Signer};

/// Notification's sealing key list in tests (`NOTIFICATION_SECRET_KEYS`).
pub const SEALING_KEYS: &str = "test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// An HS256 secret, for the tests of the development-only HS256 path
/// (with `WARDLINE_ENV=development`). Published in the repository, so
/// refused in production (`wardline_kit::auth::settings::KNOWN_SECRET_SHA256`).
pub const SECRET: &str = "wardline-test-secret-0123456789-abcdefghijklmnop";

/// The secret as the services take it.
pub fn secret() -> SecretString {
    SecretString::from(SECRET)
}

/// The test issuer: an ES256 key made once per test process, its JWKS in a
/// file that lives as long as the process.
struct Issuer {
    signer: Signer,
    jwks_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wardline-test-issuer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let issuer = DevIssuer::at(&dir);
        issuer
            .ensure()
            .expect("the test issuer's key and JWKS can be written");
        Issuer {
            signer: issuer.signer().expect("the test issuer's key reads back"),
            jwks_file: issuer.jwks_file(),
            key_file: issuer.key_file(),
        }
    })
}

/// The variables that make a service verify the test kit's tokens: the
/// test issuer's `WARDLINE_JWKS_FILE` and `WARDLINE_JWT_ISSUER` (audiences
/// stay each service's default, `wardline-<service>`). Every service test
/// configures auth through this.
pub fn auth_env() -> Vec<(String, String)> {
    vec![
        (
            "WARDLINE_JWKS_FILE".to_owned(),
            issuer().jwks_file.display().to_string(),
        ),
        (
            "WARDLINE_JWT_ISSUER".to_owned(),
            wardline_kit::auth::settings::DEV_ISSUER.to_owned(),
        ),
    ]
}

/// The test issuer's private key file, for clients that mint their own
/// tokens (`wardctl --env development --issuer-key`, `wardline-load`).
pub fn issuer_key_file() -> String {
    issuer().key_file.display().to_string()
}

/// Signs `claims` with the test issuer (for tests that shape a token:
/// another issuer, a long lifetime ...).
pub fn sign(claims: &Claims) -> String {
    issuer().signer.sign(claims).expect("a token can be signed")
}

/// A token for `subject` in `tenant` (use `"*"` for the vendor scope),
/// valid an hour for every service.
pub fn token(subject: &str, tenant: &str, roles: &[Role]) -> String {
    sign(&Claims::new(
        subject,
        tenant,
        roles,
        std::time::Duration::from_secs(3600),
    ))
}

/// [`token`] with the `email` claim an identity provider states.
pub fn token_with_email(subject: &str, tenant: &str, roles: &[Role], email: &str) -> String {
    let mut claims = Claims::new(subject, tenant, roles, std::time::Duration::from_secs(3600));
    claims.email = Some(email.to_owned());
    sign(&claims)
}

/// A requester's token with the contacts an identity provider states:
/// the `email` and `phone_number` claims, each when given.
pub fn requester_token(
    subject: &str,
    tenant: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> String {
    let mut claims = Claims::new(
        subject,
        tenant,
        &[Role::Requester],
        std::time::Duration::from_secs(3600),
    );
    claims.email = email.map(str::to_owned);
    claims.phone_number = phone.map(str::to_owned);
    sign(&claims)
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
