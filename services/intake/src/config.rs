//! Intake's configuration (environment variables, see the README table).

use std::net::SocketAddr;

use secrecy::SecretString;
use wardline_kit::config::{CommonConfig, ConfigError, DbConfig, Env};
use wardline_kit::outbox::RelayConfig;

/// Everything intake reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `INTAKE_GRPC_ADDR` (default `0.0.0.0:50051`).
    pub grpc_addr: SocketAddr,
    /// `INTAKE_ADMIN_ADDR` (default `0.0.0.0:9101`): metrics and health.
    pub admin_addr: SocketAddr,
    /// `INTAKE_DATABASE_URL`, `INTAKE_DB_MAX_CONNECTIONS`.
    pub db: DbConfig,
    /// Shared variables (`NATS_URL`, `WARDLINE_*`).
    pub common: CommonConfig,
    /// `WARDLINE_JWT_SECRET`: HS256 key tokens are verified with (at least 32 characters).
    pub jwt_secret: SecretString,
    /// `INTAKE_RELAY_BATCH`, `INTAKE_RELAY_POLL_MS`.
    pub relay: RelayConfig,
    /// `INTAKE_CONSUMER_WORKERS`: concurrent handlers of routing events.
    pub consumer_workers: usize,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let relay = RelayConfig {
            batch: env.parse("INTAKE_RELAY_BATCH", 512)?,
            poll: env.millis("INTAKE_RELAY_POLL_MS", 1000)?,
            ..RelayConfig::default()
        };
        Ok(Self {
            grpc_addr: env.addr("INTAKE_GRPC_ADDR", "0.0.0.0:50051")?,
            admin_addr: env.addr("INTAKE_ADMIN_ADDR", "0.0.0.0:9101")?,
            db: DbConfig::from_env(
                env,
                "INTAKE",
                "postgres://postgres@127.0.0.1:5432/wardline_intake",
            )?,
            common: CommonConfig::from_env(env)?,
            jwt_secret: env.secret("WARDLINE_JWT_SECRET", 32)?,
            relay,
            consumer_workers: env.parse("INTAKE_CONSUMER_WORKERS", 4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_required_and_named() {
        let e = Config::from_env(&Env::from_pairs([("X", "y")])).unwrap_err();
        assert!(e.to_string().contains("WARDLINE_JWT_SECRET"), "{e}");
    }

    #[test]
    fn defaults() {
        let c =
            Config::from_env(&Env::from_pairs([("WARDLINE_JWT_SECRET", "s".repeat(32))])).unwrap();
        assert_eq!(c.grpc_addr.port(), 50051);
        assert_eq!(c.admin_addr.port(), 9101);
        assert_eq!(c.relay.batch, 512);
        assert_eq!(c.db.max_connections, 16);
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let e = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWT_SECRET", "s".repeat(32)),
            ("INTAKE_GRPC_ADDR", "localhost".to_owned()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("INTAKE_GRPC_ADDR"), "{e}");
        let e = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWT_SECRET", "s".repeat(32)),
            ("INTAKE_DATABASE_URL", "mysql://x".to_owned()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("INTAKE_DATABASE_URL"), "{e}");
    }
}
