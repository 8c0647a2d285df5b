//! Notification's configuration (environment variables, see the README table).

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use wardline_kit::config::{ConfigError, Env, ServiceConfig, ServiceDefaults};

use crate::domain::egress::Policy;
use crate::domain::retry::RetryPolicy;

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
    admin_addr: "0.0.0.0:9104",
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
        let sms = gateway(env, "NOTIFICATION_SMS", &egress)?;
        let pager = gateway(env, "NOTIFICATION_PAGER", &egress)?;
        Ok(Self {
            service,
            smtp,
            sms,
            pager,
            webhook_allow_http: env.parse("NOTIFICATION_WEBHOOK_ALLOW_HTTP", false)?,
            egress,
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
            ("WARDLINE_JWT_SECRET".to_owned(), "s".repeat(32)),
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
