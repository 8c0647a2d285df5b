//! Typed configuration from environment variables.
//!
//! Every service reads its variables once at start-up into one `Config`
//! struct. A missing or malformed variable stops start-up with an error
//! that names the variable, because a hospital's operator at 3 a.m. should
//! not have to guess which of forty variables is wrong.

use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// A configuration variable that is missing or cannot be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {var} is required but not set")]
    Missing {
        /// The variable's name.
        var: String,
    },
    /// A variable is set to something unusable.
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: String,
        /// What is wrong with it (never the value of a secret).
        reason: String,
    },
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reads variables from a source (the process environment, or a map in
/// tests) and remembers which names were asked for, so a test can prove
/// that every variable a deployment sets is one the service reads.
pub struct Env {
    lookup: Lookup,
    keys: Vec<String>,
    read: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|k| std::env::var(k).ok()),
            keys: Vec::new(),
            read: Default::default(),
        }
    }

    /// Reads from a fixed list of pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let keys = map.keys().cloned().collect();
        Self {
            lookup: Box::new(move |k| map.get(k).cloned()),
            keys,
            read: Default::default(),
        }
    }

    /// Names given to [`Env::from_pairs`] that nothing has read.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = self
            .keys
            .iter()
            .filter(|k| !read.contains(*k))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// The raw value, treating an empty string as unset.
    pub fn get(&self, var: &str) -> Option<String> {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(var.to_owned());
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// A string with a default.
    pub fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// A required string.
    pub fn required(&self, var: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::Missing { var: var.into() })
    }

    /// A value parsed with `FromStr`, with a default.
    pub fn parse<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    var: var.into(),
                    reason: format!("cannot parse {raw:?}: {e}"),
                }),
        }
    }

    /// A socket address such as `0.0.0.0:50051`.
    pub fn addr(&self, var: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.string(var, default);
        raw.parse().map_err(|e| ConfigError::Invalid {
            var: var.into(),
            reason: format!("{raw:?} is not a host:port socket address: {e}"),
        })
    }

    /// A duration given in whole milliseconds.
    pub fn millis(&self, var: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse(var, default_ms).map(Duration::from_millis)
    }

    /// A required secret; `min_len` guards against toy keys in production.
    pub fn secret(&self, var: &str, min_len: usize) -> Result<SecretString, ConfigError> {
        let raw = self.required(var)?;
        if raw.len() < min_len {
            return Err(ConfigError::Invalid {
                var: var.into(),
                reason: format!("must be at least {min_len} characters long"),
            });
        }
        Ok(SecretString::from(raw))
    }

    /// A comma-separated list; empty when unset.
    pub fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Settings every service shares, read from unprefixed variables.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `WARDLINE_ENV`: `production` (default) or `development`; production
    /// refuses plaintext hops that leave the machine and anonymous NATS.
    pub profile: crate::tls::Profile,
    /// `NATS_URL`, `NATS_NKEY_SEED_FILE`, `NATS_CA_FILE`,
    /// `NATS_CLIENT_CERT_FILE`, `NATS_CLIENT_KEY_FILE`: where JetStream
    /// lives and who this service is there.
    pub nats: crate::nats::NatsConfig,
    /// `WARDLINE_STREAM_REPLICAS`: replicas of the event stream (1, or 3 clustered).
    pub stream_replicas: usize,
    /// `WARDLINE_SHUTDOWN_TIMEOUT_MS`: the most a graceful shutdown may take.
    pub shutdown_timeout: Duration,
    /// `WARDLINE_LOG_FORMAT`: `json` (default) or `pretty`.
    pub log_format: crate::telemetry::LogFormat,
    /// `WARDLINE_TENANTS`: when set, this replica's consumers only take these
    /// tenants' events (dedicated capacity for a large tenant).
    pub tenants: Vec<String>,
    /// `WARDLINE_EXCLUDE_TENANTS`: when set, this replica's consumers leave
    /// these tenants' events to their dedicated replicas (the shared pool
    /// beside a `WARDLINE_TENANTS` deployment). They still receive them
    /// (NATS filters cannot say "all tenants but these") and acknowledge
    /// them without touching the database.
    pub exclude_tenants: Vec<String>,
    /// `WARDLINE_CONSUMER_ACK_WAIT_MS`: how long an event handed to a
    /// consumer may stay unacknowledged before JetStream gives it to another
    /// worker (a replica that died or froze). Longer than any handler takes.
    pub consumer_ack_wait: Duration,
    /// `WARDLINE_INBOX_RETENTION_HOURS` (168, at least the stream's duplicate
    /// window plus an hour), `WARDLINE_OUTBOX_RETENTION_HOURS` (1),
    /// `WARDLINE_IDEMPOTENCY_RETENTION_HOURS` (48) and
    /// `WARDLINE_DEAD_LETTER_RETENTION_DAYS` (90) and
    /// `WARDLINE_AUDIT_RETENTION_DAYS` (2190, at least 366): how long the
    /// kit's tables keep finished rows.
    pub retention: crate::housekeeping::Retention,
    /// `WARDLINE_METRICS_TENANT_LABELS` (false): whether metric labels may
    /// name tenants (else `_all`); the admin port is unauthenticated.
    pub metrics_tenant_labels: bool,
    /// `WARDLINE_READYZ_INTERVAL_MS` (2000): how often `/readyz`'s cached
    /// state is refreshed.
    pub readyz_interval: Duration,
}

impl CommonConfig {
    /// Reads the shared variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let replicas: usize = env.parse("WARDLINE_STREAM_REPLICAS", 1)?;
        if !matches!(replicas, 1 | 3 | 5) {
            return Err(ConfigError::Invalid {
                var: "WARDLINE_STREAM_REPLICAS".into(),
                reason: "must be 1, 3 or 5".into(),
            });
        }
        let tenant_list = |var: &str| -> Result<Vec<String>, ConfigError> {
            let list = env.list(var);
            match list.iter().find(|t| !crate::validate::is_slug(t, 2, 32)) {
                Some(t) => Err(ConfigError::Invalid {
                    var: var.into(),
                    reason: format!("{t:?} is not a tenant slug"),
                }),
                None => Ok(list),
            }
        };
        let tenants = tenant_list("WARDLINE_TENANTS")?;
        let exclude_tenants = tenant_list("WARDLINE_EXCLUDE_TENANTS")?;
        if !tenants.is_empty() && !exclude_tenants.is_empty() {
            return Err(ConfigError::Invalid {
                var: "WARDLINE_EXCLUDE_TENANTS".into(),
                reason: "set it on the shared pool, WARDLINE_TENANTS on the dedicated one; not both on one replica".into(),
            });
        }
        let profile = crate::tls::Profile::from_env(env)?;
        // Spans carry tenant and ticket ids (never free text), still not
        // for the wire in clear: production exports over TLS unless the
        // collector is local (a sidecar or node agent).
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            if let Some(endpoint) = env.get(var) {
                crate::tls::require_tls(
                    profile,
                    var,
                    !endpoint.trim().starts_with("http://"),
                    crate::tls::url_host(endpoint.trim()),
                    "OTLP export",
                )?;
            }
        }
        Ok(Self {
            profile,
            nats: crate::nats::NatsConfig::from_env(env, profile)?,
            stream_replicas: replicas,
            shutdown_timeout: env.millis("WARDLINE_SHUTDOWN_TIMEOUT_MS", 20_000)?,
            log_format: env.parse("WARDLINE_LOG_FORMAT", crate::telemetry::LogFormat::Json)?,
            tenants,
            exclude_tenants,
            consumer_ack_wait: env.millis("WARDLINE_CONSUMER_ACK_WAIT_MS", 30_000)?,
            retention: retention(env)?,
            metrics_tenant_labels: env.parse("WARDLINE_METRICS_TENANT_LABELS", false)?,
            readyz_interval: env
                .millis("WARDLINE_READYZ_INTERVAL_MS", 2000)?
                .max(Duration::from_millis(100)),
        })
    }
}

fn retention(env: &Env) -> Result<crate::housekeeping::Retention, ConfigError> {
    let hours = |var: &str, default: u64| -> Result<Duration, ConfigError> {
        let h: u64 = env.parse(var, default)?;
        if h == 0 {
            return Err(ConfigError::Invalid {
                var: var.into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Duration::from_secs(h * 3600))
    };
    let inbox = hours("WARDLINE_INBOX_RETENTION_HOURS", 168)?;
    if inbox < crate::housekeeping::min_inbox_retention() {
        return Err(ConfigError::Invalid {
            var: "WARDLINE_INBOX_RETENTION_HOURS".into(),
            reason: format!(
                "must outlive the event stream's duplicate window plus an hour ({} h)",
                crate::housekeeping::min_inbox_retention().as_secs() / 3600
            ),
        });
    }
    let days: u64 = env.parse("WARDLINE_DEAD_LETTER_RETENTION_DAYS", 90)?;
    let audit_days: u64 = env.parse(
        "WARDLINE_AUDIT_RETENTION_DAYS",
        crate::housekeeping::AUDIT_RETENTION.as_secs() / 86_400,
    )?;
    let audit = Duration::from_secs(audit_days.saturating_mul(86_400));
    if audit < crate::housekeeping::MIN_AUDIT_RETENTION {
        return Err(ConfigError::Invalid {
            var: "WARDLINE_AUDIT_RETENTION_DAYS".into(),
            reason: "at least 366: the audit table keeps every record a year".into(),
        });
    }
    Ok(crate::housekeeping::Retention {
        audit,
        inbox,
        sent_outbox: hours("WARDLINE_OUTBOX_RETENTION_HOURS", 1)?,
        idempotency: hours("WARDLINE_IDEMPOTENCY_RETENTION_HOURS", 48)?,
        dead_letters: Duration::from_secs(days.max(1) * 24 * 3600),
    })
}

/// Database settings for a service: `<PREFIX>_DATABASE_URL` (the runtime
/// role the service serves as), `<PREFIX>_MIGRATE_DATABASE_URL` (the owner
/// role that migrates, optional) and `<PREFIX>_DB_MAX_CONNECTIONS`.
///
/// The two roles are what makes row-level security hold: the owner owns
/// the schema and is the only one that runs DDL; the runtime role has DML
/// on the tables and nothing else, so FORCEd policies apply to it and it
/// cannot disable them (see docs/access-model.md, "Row-level security").
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Connection URL of the runtime role (wrapped: it may carry a password).
    pub url: SecretString,
    /// Connection URL of the owner role that applies migrations at start-up.
    /// `None`: the service does not migrate; it checks that the schema is
    /// current and refuses to start otherwise (migrations then run as a
    /// separate job, e.g. `wardline-migrate`, before the rollout).
    pub migrate_url: Option<SecretString>,
    /// `WARDLINE_MIGRATE_PGPASSWORD`: the owner role's password when the
    /// migrate URL carries none (container images read it from
    /// `WARDLINE_MIGRATE_PGPASSWORD_FILE`, like `PGPASSWORD` for the
    /// runtime role), so neither password sits in a URL.
    pub migrate_password: Option<SecretString>,
    /// Pool size.
    pub max_connections: u32,
    /// How strict the start-up checks of the runtime role are.
    pub profile: crate::tls::Profile,
    /// The variables' prefix (`INTAKE`, ...), for errors that name them.
    pub prefix: String,
}

impl DbConfig {
    /// Reads `<prefix>_DATABASE_URL` (with a development default),
    /// `<prefix>_MIGRATE_DATABASE_URL` and the pool size. In production
    /// (`profile`) a server that is not local must be reached with
    /// `sslmode=verify-full` or `verify-ca` (in the URL or `PGSSLMODE`):
    /// `disable`, `allow`, `prefer` and `require` would let a machine in the
    /// middle read the PHI that flows to the database.
    pub fn from_env(
        env: &Env,
        prefix: &str,
        default_url: &str,
        profile: crate::tls::Profile,
    ) -> Result<Self, ConfigError> {
        let var = format!("{prefix}_DATABASE_URL");
        let url = checked_pg_url(var.clone(), env.string(&var, default_url), profile)?;
        let migrate_var = format!("{prefix}_MIGRATE_DATABASE_URL");
        let migrate_url = match env.get(&migrate_var) {
            Some(v) if !v.trim().is_empty() => Some(checked_pg_url(migrate_var, v, profile)?),
            _ => None,
        };
        let migrate_password = env
            .get("WARDLINE_MIGRATE_PGPASSWORD")
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        Ok(Self {
            url,
            migrate_url,
            migrate_password,
            max_connections: env.parse(&format!("{prefix}_DB_MAX_CONNECTIONS"), 16)?,
            profile,
            prefix: prefix.to_owned(),
        })
    }
}

/// Checks that `url` (the value of `var`) is a usable PostgreSQL URL and,
/// in production, reaches a remote server only over verified TLS.
fn checked_pg_url(
    var: String,
    url: String,
    profile: crate::tls::Profile,
) -> Result<SecretString, ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::Invalid {
            var,
            reason: "must be a postgres:// URL".into(),
        });
    }
    let opts: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| ConfigError::Invalid {
        var: var.clone(),
        reason: format!("not a usable PostgreSQL URL: {e}"),
    })?;
    let verified = matches!(
        opts.get_ssl_mode(),
        sqlx::postgres::PgSslMode::VerifyFull | sqlx::postgres::PgSslMode::VerifyCa
    );
    let host = match opts.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => opts.get_host().to_owned(),
    };
    if !verified && !crate::tls::is_local_host(&host) {
        if profile.is_production() {
            return Err(ConfigError::Invalid {
                var,
                reason: format!(
                    "sslmode={} to {host} is not verified TLS; use sslmode=verify-full with sslrootcert=<CA file> (or set WARDLINE_ENV=development)",
                    format!("{:?}", opts.get_ssl_mode()).to_lowercase()
                ),
            });
        }
        tracing::warn!(%var, %host, "PostgreSQL without verified TLS (WARDLINE_ENV=development)");
    }
    Ok(SecretString::from(url))
}

/// Default addresses and database of one service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// Default of `<PREFIX>_GRPC_ADDR`.
    pub grpc_addr: &'static str,
    /// Default of `<PREFIX>_ADMIN_ADDR`.
    pub admin_addr: &'static str,
    /// Default of `<PREFIX>_DATABASE_URL`.
    pub database_url: &'static str,
}

/// What every service reads, under its prefix: `<PREFIX>_GRPC_ADDR`,
/// `<PREFIX>_ADMIN_ADDR`, `<PREFIX>_DATABASE_URL`, `<PREFIX>_MIGRATE_DATABASE_URL`,
/// `<PREFIX>_DB_MAX_CONNECTIONS`, `<PREFIX>_RELAY_BATCH`,
/// `<PREFIX>_RELAY_POLL_MS`, `<PREFIX>_CONSUMER_WORKERS`,
/// `<PREFIX>_CONSUMER_BATCH`, `<PREFIX>_JWT_AUDIENCE`, plus the token
/// variables of [`crate::auth::AuthConfig`] and the [`CommonConfig`] ones. A service's own
/// `Config` embeds this and adds its extras.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Admin (metrics, health) listen address.
    pub admin_addr: SocketAddr,
    /// The service's own database.
    pub db: DbConfig,
    /// Shared variables.
    pub common: CommonConfig,
    /// `<PREFIX>_TLS_CERT_FILE`, `<PREFIX>_TLS_KEY_FILE`,
    /// `<PREFIX>_TLS_CLIENT_CA_FILE`: the gRPC port's TLS (and mutual TLS).
    pub tls: Option<crate::tls::ServerTls>,
    /// How bearer tokens are verified (keys, issuer, audience, claims).
    pub auth: crate::auth::AuthConfig,
    /// The gRPC server's limits.
    pub grpc_limits: crate::grpc::Limits,
    /// Outbox relay settings.
    pub relay: crate::outbox::RelayConfig,
    /// Concurrent event handlers in this process.
    pub consumer_workers: usize,
    /// Most events one handler applies in one transaction.
    pub consumer_batch: usize,
}

impl ServiceConfig {
    /// Reads the variables of the service with `prefix` (e.g. `INTAKE`).
    pub fn from_env(
        env: &Env,
        prefix: &str,
        defaults: ServiceDefaults,
    ) -> Result<Self, ConfigError> {
        let var = |name: &str| format!("{prefix}_{name}");
        let relay = crate::outbox::RelayConfig {
            batch: env.parse(&var("RELAY_BATCH"), 512)?,
            poll: env.millis(&var("RELAY_POLL_MS"), 1000)?,
        };
        // Malformed values first (they name their variable), then the
        // shared settings and the production transport rules.
        let profile = crate::tls::Profile::from_env(env)?;
        let grpc_addr = env.addr(&var("GRPC_ADDR"), defaults.grpc_addr)?;
        let admin_addr = env.addr(&var("ADMIN_ADDR"), defaults.admin_addr)?;
        let db = DbConfig::from_env(env, prefix, defaults.database_url, profile)?;
        let auth = crate::auth::AuthConfig::from_env(env, prefix, &prefix.to_lowercase(), profile)?;
        let grpc_limits = crate::grpc::Limits::from_env(env, prefix)?;
        let tls = crate::tls::ServerTls::from_env(env, prefix)?;
        let common = CommonConfig::from_env(env)?;
        crate::tls::require_tls(
            profile,
            &var("TLS_CERT_FILE"),
            tls.is_some() || grpc_addr.ip().is_loopback(),
            &grpc_addr.ip().to_string(),
            "the gRPC port",
        )?;
        Ok(Self {
            grpc_addr,
            admin_addr,
            db,
            tls,
            common,
            auth,
            grpc_limits,
            relay,
            consumer_workers: env.parse(&var("CONSUMER_WORKERS"), 4)?,
            consumer_batch: env.parse(&var("CONSUMER_BATCH"), 64)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("X_PORT", "abc"), ("X_ADDR", "nope")]);
        let e = env.parse::<u16>("X_PORT", 1).unwrap_err().to_string();
        assert!(e.contains("X_PORT"), "{e}");
        let e = env.addr("X_ADDR", "0.0.0.0:1").unwrap_err().to_string();
        assert!(e.contains("X_ADDR"), "{e}");
        let e = env.required("X_MISSING").unwrap_err().to_string();
        assert!(e.contains("X_MISSING"), "{e}");
    }

    #[test]
    fn secrets_never_print_and_must_be_long() {
        let env = Env::from_pairs([("S", "short"), ("L", &"x".repeat(40))]);
        let e = env.secret("S", 32).unwrap_err().to_string();
        assert!(!e.contains("short"), "{e}");
        let s = env.secret("L", 32).unwrap();
        assert!(!format!("{s:?}").contains("xxxx"));
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let env = Env::from_pairs([("EMPTY", "  ")]);
        assert_eq!(env.string("EMPTY", "d"), "d");
        assert_eq!(env.parse("NONE", 7u32).unwrap(), 7);
        let c = CommonConfig::from_env(&Env::from_pairs([
            ("EMPTY", "  "),
            ("NATS_NKEY_SEED_FILE", "/seed"),
        ]))
        .unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(c.stream_replicas, 1);
        assert!(c.tenants.is_empty());
    }

    #[test]
    fn service_config_reads_its_prefix() {
        let d = ServiceDefaults {
            grpc_addr: "0.0.0.0:1",
            admin_addr: "0.0.0.0:2",
            database_url: "postgres://x/y?sslmode=verify-full",
        };
        let env = Env::from_pairs([
            ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
            ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            ("SVC_CONSUMER_WORKERS", "7".into()),
            ("SVC_GRPC_ADDR", "127.0.0.1:9".into()),
            ("NATS_NKEY_SEED_FILE", "/seed".into()),
        ]);
        let c = ServiceConfig::from_env(&env, "SVC", d).unwrap();
        assert_eq!(c.grpc_addr.port(), 9);
        assert_eq!(c.admin_addr.port(), 2);
        assert_eq!(c.consumer_workers, 7);
        assert_eq!(c.relay.batch, 512);
        let e = ServiceConfig::from_env(
            &Env::from_pairs([
                ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
                ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
                ("SVC_RELAY_POLL_MS", "x".into()),
            ]),
            "SVC",
            d,
        )
        .unwrap_err();
        assert!(e.to_string().contains("SVC_RELAY_POLL_MS"));
        assert!(
            ServiceConfig::from_env(
                &Env::from_pairs([
                    ("WARDLINE_ENV", "development"),
                    ("SVC_GRPC_ADDR", "127.0.0.1:1")
                ]),
                "SVC",
                d
            )
            .unwrap_err()
            .to_string()
            .contains("WARDLINE_JWT_SECRET")
        );
    }

    #[test]
    fn unread_names_are_reported() {
        let env = Env::from_pairs([("A", "1"), ("TYPO_VAR", "2")]);
        let _ = env.get("A");
        assert_eq!(env.unread(), vec!["TYPO_VAR".to_owned()]);
    }

    #[test]
    fn tenants_filter_is_validated() {
        let env = Env::from_pairs([("WARDLINE_TENANTS", "stmarys, BAD!")]);
        let e = CommonConfig::from_env(&env).unwrap_err().to_string();
        assert!(e.contains("WARDLINE_TENANTS"));
    }

    #[test]
    fn a_replica_is_dedicated_or_shared_not_both() {
        let env = Env::from_pairs([
            ("WARDLINE_EXCLUDE_TENANTS", "stmarys,lakeside"),
            ("WARDLINE_ENV", "development"),
        ]);
        let c = CommonConfig::from_env(&env).unwrap();
        assert_eq!(c.exclude_tenants, ["stmarys", "lakeside"]);
        let env = Env::from_pairs([
            ("WARDLINE_TENANTS", "stmarys"),
            ("WARDLINE_EXCLUDE_TENANTS", "lakeside"),
        ]);
        let e = CommonConfig::from_env(&env).unwrap_err().to_string();
        assert!(e.contains("WARDLINE_EXCLUDE_TENANTS"), "{e}");
    }

    /// The production profile (the default) refuses, at start-up and naming
    /// the variable, every hop that would carry data in clear text off the
    /// machine or sign in to NATS anonymously; development allows them.
    #[test]
    fn production_refuses_plaintext_and_anonymous_hops() {
        let d = ServiceDefaults {
            grpc_addr: "0.0.0.0:50051",
            admin_addr: "127.0.0.1:9101",
            database_url: "postgres://svc@db.example.org/svc?sslmode=verify-full&sslrootcert=/ca.pem",
        };
        let secure = [
            ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
            ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            ("NATS_URL", "tls://nats:4222".into()),
            ("NATS_NKEY_SEED_FILE", "/run/secrets/nats.nk".into()),
            ("NATS_CA_FILE", "/run/secrets/ca.pem".into()),
            ("SVC_TLS_CERT_FILE", "/tls.pem".into()),
            ("SVC_TLS_KEY_FILE", "/tls.key".into()),
        ];
        let with = |over: &[(&str, &str)], drop: &[&str]| {
            let mut pairs: Vec<(String, String)> = secure
                .iter()
                .filter(|(k, _)| !drop.contains(k))
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            pairs.extend(over.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            ServiceConfig::from_env(&Env::from_pairs(pairs), "SVC", d)
        };
        let c = with(&[], &[]).expect("a secure configuration starts");
        assert!(c.tls.is_some());
        for (over, drop, var) in [
            (
                vec![(
                    "SVC_DATABASE_URL",
                    "postgres://svc@db.example.org/svc?sslmode=disable",
                )],
                vec![],
                "SVC_DATABASE_URL",
            ),
            (
                vec![(
                    "SVC_DATABASE_URL",
                    "postgres://svc@db.example.org/svc?sslmode=prefer",
                )],
                vec![],
                "SVC_DATABASE_URL",
            ),
            (
                vec![("SVC_DATABASE_URL", "postgres://svc@db.example.org/svc")],
                vec![],
                "SVC_DATABASE_URL",
            ),
            (vec![], vec!["NATS_NKEY_SEED_FILE"], "NATS_NKEY_SEED_FILE"),
            (
                vec![("NATS_URL", "nats://nats:4222")],
                vec!["NATS_CA_FILE"],
                "NATS_URL",
            ),
            (
                vec![],
                vec!["SVC_TLS_CERT_FILE", "SVC_TLS_KEY_FILE"],
                "SVC_TLS_CERT_FILE",
            ),
        ] {
            let e = with(&over, &drop).expect_err(var).to_string();
            assert!(e.contains(var), "{var}: {e}");
        }
        // Loopback never leaves the machine: plaintext is fine there.
        assert!(
            with(
                &[
                    ("SVC_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x"),
                    ("SVC_GRPC_ADDR", "127.0.0.1:0")
                ],
                &["SVC_TLS_CERT_FILE", "SVC_TLS_KEY_FILE"]
            )
            .is_ok()
        );
        // Development allows everything (with warnings).
        assert!(
            with(
                &[
                    ("WARDLINE_ENV", "development"),
                    ("NATS_URL", "nats://nats:4222"),
                    ("SVC_DATABASE_URL", "postgres://svc@db/svc?sslmode=disable")
                ],
                &[
                    "NATS_NKEY_SEED_FILE",
                    "NATS_CA_FILE",
                    "SVC_TLS_CERT_FILE",
                    "SVC_TLS_KEY_FILE"
                ],
            )
            .is_ok()
        );
    }
}
