//! Notification's configuration (environment variables, see the README table).

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use wardline_kit::config::{ConfigError, Env, ServiceConfig, ServiceDefaults};

use crate::domain::egress::Policy;
use crate::domain::retry::RetryPolicy;
use crate::domain::sealing::Keyring;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay or a development sink only).
    None,
    /// STARTTLS upgrade, required (port 587).
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "plain" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "tls" | "smtps" => Ok(Self::Tls),
            other => Err(format!("unknown mode {other:?} (none, starttls or tls)")),
        }
    }
}

/// The SMTP relay email goes through.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `NOTIFICATION_SMTP_HOST`.
    pub host: String,
    /// `NOTIFICATION_SMTP_PORT`.
    pub port: u16,
    /// `NOTIFICATION_SMTP_TLS`.
    pub tls: SmtpTls,
    /// `NOTIFICATION_SMTP_USERNAME` (auth only when set).
    pub username: Option<String>,
    /// `NOTIFICATION_SMTP_PASSWORD`.
    pub password: Option<SecretString>,
    /// `NOTIFICATION_SMTP_FROM`: the From header and envelope sender.
    pub from: String,
}

/// An HTTP gateway (SMS or pager).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to POST.
    pub url: String,
    /// Bearer token, when the gateway needs one.
    pub token: Option<SecretString>,
}

/// Defaults of notification's addresses and database.
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    grpc_addr: "0.0.0.0:50054",
    admin_addr: "127.0.0.1:9104",
    database_url: "postgres://postgres@127.0.0.1:5432/wardline_notification",
};

/// Everything notification reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `NOTIFICATION_*` service variables (addresses, database, relay,
    /// consumer workers) and the shared ones.
    pub service: ServiceConfig,
    /// Email relay.
    pub smtp: SmtpConfig,
    /// `NOTIFICATION_SMS_URL`, `NOTIFICATION_SMS_TOKEN`: SMS off when unset.
    pub sms: Option<GatewayConfig>,
    /// `NOTIFICATION_PAGER_URL`, `NOTIFICATION_PAGER_TOKEN`: pager off when unset.
    pub pager: Option<GatewayConfig>,
    /// `NOTIFICATION_WEBHOOK_ALLOW_HTTP`: accept `http://` endpoints (development only).
    pub webhook_allow_http: bool,
    /// `NOTIFICATION_EGRESS_ALLOW_HOSTS`: host names and IP addresses that
    /// outbound HTTP may reach although they are not public (comma-separated;
    /// default none). Everything else must be a public address.
    pub egress: Arc<Policy>,
    /// `NOTIFICATION_SECRET_KEYS_FILE` (a file holding the list) or
    /// `NOTIFICATION_SECRET_KEYS`: `id:base64key,...`, 32-byte AES-256-GCM
    /// keys sealing webhook secrets at rest, the first one current.
    /// Required unless `WARDLINE_ENV=development` (which then uses a fixed,
    /// public development key and says so). Read and parsed at start-up
    /// ([`SecretKeys::load`]), like the TLS files.
    pub secret_keys: SecretKeys,
    /// `NOTIFICATION_LINK_BASE_URL`: where ticket links in messages point.
    pub link_base_url: String,
    /// `NOTIFICATION_SEND_TIMEOUT_MS`: one attempt's limit.
    pub send_timeout: Duration,
    /// `NOTIFICATION_MAX_ATTEMPTS`, `NOTIFICATION_RETRY_BASE_MS`, `NOTIFICATION_RETRY_MAX_MS`.
    pub retry: RetryPolicy,
    /// `NOTIFICATION_SCAN_INTERVAL_MS`: how often due deliveries are looked for
    /// without a wake-up.
    pub scan_interval: Duration,
    /// `NOTIFICATION_SENDING_LEASE_MS`: an attempt in flight longer than this
    /// lost its sender (crash) and is reconciled.
    pub sending_lease: Duration,
    /// `NOTIFICATION_SEND_CONCURRENCY`: attempts in flight per replica.
    pub send_concurrency: usize,
    /// `NOTIFICATION_TENANT_RATE_PER_SEC`: messages per second per tenant (per
    /// replica); 0 turns the limit off.
    pub tenant_rate: u32,
    /// `NOTIFICATION_TENANT_BURST`: bucket size of the per-tenant limit.
    pub tenant_burst: u32,
    /// `NOTIFICATION_MAX_EVENT_AGE_SECS`: events older than this update the
    /// directory and tickets but notify nobody (a new consumer replaying
    /// the stream must not page people about last month).
    pub max_event_age: Duration,
}

fn invalid(var: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.into(),
        reason: reason.into(),
    }
}

/// A gateway URL: http(s), and an IP-literal host must pass the egress
/// policy (names are checked when connecting).
fn http_url(env: &Env, var: &str, egress: &Policy) -> Result<Option<String>, ConfigError> {
    let Some(u) = env.get(var) else {
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(&u)
        .ok()
        .filter(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some())
        .ok_or_else(|| invalid(var, "must be an http:// or https:// URL"))?;
    crate::channels::egress::check_target(egress, &parsed).map_err(|r| {
        invalid(
            var,
            format!("{r}; add the host to NOTIFICATION_EGRESS_ALLOW_HOSTS to allow it"),
        )
    })?;
    Ok(Some(u))
}

fn gateway(env: &Env, prefix: &str, egress: &Policy) -> Result<Option<GatewayConfig>, ConfigError> {
    let url = http_url(env, &format!("{prefix}_URL"), egress)?;
    let token = env.get(&format!("{prefix}_TOKEN")).map(SecretString::from);
    Ok(url.map(|url| GatewayConfig { url, token }))
}

/// The development key (`WARDLINE_ENV=development` only): public, so it
/// protects nothing; it keeps a laptop's stack starting without a key file.
const DEVELOPMENT_SECRET_KEYS: &str = "dev-public:ZGV2ZWxvcG1lbnQtb25seS1rZXktMzItYnl0ZXMhISE=";

/// Where the sealing keys come from.
#[derive(Clone)]
pub enum SecretKeys {
    /// `NOTIFICATION_SECRET_KEYS_FILE`.
    File(std::path::PathBuf),
    /// `NOTIFICATION_SECRET_KEYS` (or the development key).
    Value(SecretString),
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Value(_) => f.write_str("Value([REDACTED])"),
        }
    }
}

impl SecretKeys {
    /// Reads and parses the key list; errors name the variable.
    pub fn load(&self) -> Result<Arc<Keyring>, ConfigError> {
        let (var, spec) = match self {
            Self::File(path) => {
                let spec = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "NOTIFICATION_SECRET_KEYS_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                ("NOTIFICATION_SECRET_KEYS_FILE", spec)
            }
            Self::Value(v) => ("NOTIFICATION_SECRET_KEYS", v.expose_secret().to_owned()),
        };
        Keyring::parse(spec.trim())
            .map(Arc::new)
            .map_err(|e| invalid(var, e.to_string()))
    }
}

fn secret_keys(env: &Env) -> Result<SecretKeys, ConfigError> {
    if let Some(path) = env.get("NOTIFICATION_SECRET_KEYS_FILE") {
        return Ok(SecretKeys::File(path.into()));
    }
    if let Some(spec) = env.get("NOTIFICATION_SECRET_KEYS") {
        // Malformed values are refused now, naming the variable.
        let keys = SecretKeys::Value(SecretString::from(spec));
        keys.load()?;
        return Ok(keys);
    }
    if !wardline_kit::tls::Profile::from_env(env)?.is_production() {
        tracing::warn!(
            "no NOTIFICATION_SECRET_KEYS(_FILE): webhook secrets sealed with the public development key (WARDLINE_ENV=development)"
        );
        return Ok(SecretKeys::Value(SecretString::from(
            DEVELOPMENT_SECRET_KEYS,
        )));
    }
    Err(invalid(
        "NOTIFICATION_SECRET_KEYS_FILE",
        "required: the key webhook secrets are sealed with at rest (id:base64 of 32 bytes; wardline-dev-pki makes one for development)",
    ))
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env(env, "NOTIFICATION", DEFAULTS)?;
        let from = env.string(
            "NOTIFICATION_SMTP_FROM",
            "Wardline <noreply@wardline.local>",
        );
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "NOTIFICATION_SMTP_FROM",
                "not a mailbox, e.g. \"Wardline <noreply@example.org>\"",
            ));
        }
        let smtp = SmtpConfig {
            host: env.string("NOTIFICATION_SMTP_HOST", "127.0.0.1"),
            port: env.parse("NOTIFICATION_SMTP_PORT", 1025)?,
            tls: env.parse("NOTIFICATION_SMTP_TLS", SmtpTls::None)?,
            username: env.get("NOTIFICATION_SMTP_USERNAME"),
            password: env
                .get("NOTIFICATION_SMTP_PASSWORD")
                .map(SecretString::from),
            from,
        };
        if smtp.username.is_some() != smtp.password.is_some() {
            return Err(invalid(
                "NOTIFICATION_SMTP_PASSWORD",
                "NOTIFICATION_SMTP_USERNAME and NOTIFICATION_SMTP_PASSWORD go together",
            ));
        }
        let retry = RetryPolicy {
            max_attempts: env.parse("NOTIFICATION_MAX_ATTEMPTS", 8)?,
            base: env.millis("NOTIFICATION_RETRY_BASE_MS", 30_000)?,
            max: env.millis("NOTIFICATION_RETRY_MAX_MS", 3_600_000)?,
        };
        if retry.max_attempts == 0 {
            return Err(invalid("NOTIFICATION_MAX_ATTEMPTS", "at least 1"));
        }
        if retry.max < retry.base {
            return Err(invalid(
                "NOTIFICATION_RETRY_MAX_MS",
                "must not be below NOTIFICATION_RETRY_BASE_MS",
            ));
        }
        let send_timeout = env.millis("NOTIFICATION_SEND_TIMEOUT_MS", 10_000)?;
        let sending_lease = env.millis("NOTIFICATION_SENDING_LEASE_MS", 60_000)?;
        if sending_lease <= send_timeout {
            return Err(invalid(
                "NOTIFICATION_SENDING_LEASE_MS",
                "must exceed NOTIFICATION_SEND_TIMEOUT_MS (an attempt in flight must have ended before it is reconciled)",
            ));
        }
        let tenant_rate: u32 = env.parse("NOTIFICATION_TENANT_RATE_PER_SEC", 10)?;
        let tenant_burst: u32 = env.parse("NOTIFICATION_TENANT_BURST", 50)?;
        let link_base_url = env
            .string("NOTIFICATION_LINK_BASE_URL", "https://wardline.local")
            .trim_end_matches('/')
            .to_owned();
        if !(link_base_url.starts_with("https://") || link_base_url.starts_with("http://")) {
            return Err(invalid("NOTIFICATION_LINK_BASE_URL", "an http(s):// URL"));
        }
        let egress = Arc::new(Policy::allowing(
            env.string("NOTIFICATION_EGRESS_ALLOW_HOSTS", "").split(','),
        ));
        let secret_keys = secret_keys(env)?;
        let sms = gateway(env, "NOTIFICATION_SMS", &egress)?;
        let pager = gateway(env, "NOTIFICATION_PAGER", &egress)?;
        Ok(Self {
            service,
            smtp,
            sms,
            pager,
            webhook_allow_http: env.parse("NOTIFICATION_WEBHOOK_ALLOW_HTTP", false)?,
            egress,
            secret_keys,
            link_base_url,
            send_timeout,
            retry,
            scan_interval: env.millis("NOTIFICATION_SCAN_INTERVAL_MS", 500)?,
            sending_lease,
            send_concurrency: env.parse("NOTIFICATION_SEND_CONCURRENCY", 16)?,
            tenant_rate,
            tenant_burst,
            max_event_age: Duration::from_secs(
                env.parse("NOTIFICATION_MAX_EVENT_AGE_SECS", 86_400)?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![
            ("WARDLINE_JWKS_FILE".to_owned(), "/jwks.json".to_owned()),
            (
                "WARDLINE_JWT_ISSUER".to_owned(),
                "https://idp.example.org".to_owned(),
            ),
            // The defaults are for a laptop: plaintext, no NATS identity.
            ("WARDLINE_ENV".to_owned(), "development".to_owned()),
        ];
        all.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Config::from_env(&Env::from_pairs(all))
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.service.grpc_addr.port(), 50054);
        assert_eq!(c.service.admin_addr.port(), 9104);
        assert_eq!(c.smtp.tls, SmtpTls::None);
        assert!(c.sms.is_none() && c.pager.is_none());
        assert_eq!(c.retry.max_attempts, 8);
        assert!(!c.webhook_allow_http);
    }

    #[test]
    fn production_needs_a_sealing_key() {
        let env = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
                ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            ];
            all.extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
            Config::from_env(&Env::from_pairs(all))
        };
        // The first thing production refuses is the missing key or another
        // production rule (TLS, NATS identity): either way it names a variable.
        let e = env(&[("WARDLINE_ENV", "production")]).unwrap_err();
        assert!(
            e.to_string().contains("NOTIFICATION_")
                || e.to_string().contains("NATS")
                || e.to_string().contains("TLS"),
            "{e}"
        );
        let e = with(&[("NOTIFICATION_SECRET_KEYS", "k1:short")]).unwrap_err();
        assert!(e.to_string().contains("NOTIFICATION_SECRET_KEYS"), "{e}");
        let e = with(&[("NOTIFICATION_SECRET_KEYS_FILE", "/nonexistent/keys")])
            .unwrap()
            .secret_keys
            .load()
            .unwrap_err();
        assert!(
            e.to_string().contains("NOTIFICATION_SECRET_KEYS_FILE"),
            "{e}"
        );
        let c = with(&[(
            "NOTIFICATION_SECRET_KEYS",
            "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )])
        .unwrap();
        assert_eq!(c.secret_keys.load().unwrap().current_id(), "k2");
        // Development falls back to the public development key.
        let dev = with(&[]).unwrap().secret_keys.load().unwrap();
        assert_eq!(dev.current_id(), "dev-public");
    }

    #[test]
    fn a_gateway_inside_needs_the_allow_list() {
        let e = with(&[("NOTIFICATION_SMS_URL", "http://127.0.0.1:9000/sms")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("NOTIFICATION_SMS_URL") && msg.contains("public address"),
            "{msg}"
        );
        let c = with(&[
            ("NOTIFICATION_SMS_URL", "http://127.0.0.1:9000/sms"),
            (
                "NOTIFICATION_EGRESS_ALLOW_HOSTS",
                "127.0.0.1, gateway.internal",
            ),
        ])
        .unwrap();
        assert!(c.sms.is_some());
        assert!(c.egress.allows_name("gateway.internal"));
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("NOTIFICATION_SMTP_TLS", "sometimes"),
            ("NOTIFICATION_SMTP_FROM", "not an address"),
            ("NOTIFICATION_SMS_URL", "ftp://x"),
            ("NOTIFICATION_MAX_ATTEMPTS", "0"),
            ("NOTIFICATION_SENDING_LEASE_MS", "10"),
            ("NOTIFICATION_TENANT_RATE_PER_SEC", "fast"),
            ("NOTIFICATION_GRPC_ADDR", "nowhere"),
        ] {
            let e = with(&[(var, value)]).unwrap_err().to_string();
            assert!(e.contains(var), "{var}: {e}");
        }
        let e = with(&[("NOTIFICATION_SMTP_USERNAME", "u")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NOTIFICATION_SMTP_PASSWORD"), "{e}");
    }

    #[test]
    fn secrets_never_print() {
        let c = with(&[
            ("NOTIFICATION_SMTP_USERNAME", "mailer"),
            ("NOTIFICATION_SMTP_PASSWORD", "hunter2-secret"),
            ("NOTIFICATION_PAGER_URL", "https://pager.example/v2/enqueue"),
            ("NOTIFICATION_PAGER_TOKEN", "pager-token-secret"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("pager-token-secret"));
    }
}
