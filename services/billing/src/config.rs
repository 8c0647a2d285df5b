//! Billing's configuration (environment variables, see the README table).

use std::net::SocketAddr;

use secrecy::SecretString;
use wardline_kit::config::{CommonConfig, ConfigError, DbConfig, Env};
use wardline_kit::outbox::RelayConfig;

/// Everything billing reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `BILLING_GRPC_ADDR` (default `0.0.0.0:50053`).
    pub grpc_addr: SocketAddr,
    /// `BILLING_ADMIN_ADDR` (default `0.0.0.0:9103`).
    pub admin_addr: SocketAddr,
    /// `BILLING_DATABASE_URL`, `BILLING_DB_MAX_CONNECTIONS`.
    pub db: DbConfig,
    /// Shared variables.
    pub common: CommonConfig,
    /// `WARDLINE_JWT_SECRET`.
    pub jwt_secret: SecretString,
    /// `BILLING_RELAY_BATCH`, `BILLING_RELAY_POLL_MS`.
    pub relay: RelayConfig,
    /// `BILLING_CONSUMER_WORKERS`.
    pub consumer_workers: usize,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let relay = RelayConfig {
            batch: env.parse("BILLING_RELAY_BATCH", 512)?,
            poll: env.millis("BILLING_RELAY_POLL_MS", 1000)?,
            ..RelayConfig::default()
        };
        Ok(Self {
            grpc_addr: env.addr("BILLING_GRPC_ADDR", "0.0.0.0:50053")?,
            admin_addr: env.addr("BILLING_ADMIN_ADDR", "0.0.0.0:9103")?,
            db: DbConfig::from_env(
                env,
                "BILLING",
                "postgres://postgres@127.0.0.1:5432/wardline_billing",
            )?,
            common: CommonConfig::from_env(env)?,
            jwt_secret: env.secret("WARDLINE_JWT_SECRET", 32)?,
            relay,
            consumer_workers: env.parse("BILLING_CONSUMER_WORKERS", 4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c =
            Config::from_env(&Env::from_pairs([("WARDLINE_JWT_SECRET", "s".repeat(32))])).unwrap();
        assert_eq!(c.grpc_addr.port(), 50053);
        assert_eq!(c.admin_addr.port(), 9103);
        let e = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWT_SECRET", "s".repeat(32)),
            ("BILLING_CONSUMER_WORKERS", "many".to_owned()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("BILLING_CONSUMER_WORKERS"));
    }
}
