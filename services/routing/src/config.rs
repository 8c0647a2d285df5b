//! Routing's configuration (environment variables, see the README table).

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use wardline_kit::config::{CommonConfig, ConfigError, DbConfig, Env};
use wardline_kit::outbox::RelayConfig;

/// Everything routing reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ROUTING_GRPC_ADDR` (default `0.0.0.0:50052`).
    pub grpc_addr: SocketAddr,
    /// `ROUTING_ADMIN_ADDR` (default `0.0.0.0:9102`).
    pub admin_addr: SocketAddr,
    /// `ROUTING_DATABASE_URL`, `ROUTING_DB_MAX_CONNECTIONS`.
    pub db: DbConfig,
    /// Shared variables.
    pub common: CommonConfig,
    /// `WARDLINE_JWT_SECRET`.
    pub jwt_secret: SecretString,
    /// `ROUTING_RELAY_BATCH`, `ROUTING_RELAY_POLL_MS`.
    pub relay: RelayConfig,
    /// `ROUTING_CONSUMER_WORKERS`.
    pub consumer_workers: usize,
    /// `ROUTING_SCAN_INTERVAL_MS`: how often due timers are looked for.
    pub scan_interval: Duration,
    /// `ROUTING_DRAIN_INTERVAL_MS`: how often queues are retried even without
    /// a wake-up (shifts start by the clock, not by an event).
    pub drain_interval: Duration,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let relay = RelayConfig {
            batch: env.parse("ROUTING_RELAY_BATCH", 512)?,
            poll: env.millis("ROUTING_RELAY_POLL_MS", 1000)?,
            ..RelayConfig::default()
        };
        Ok(Self {
            grpc_addr: env.addr("ROUTING_GRPC_ADDR", "0.0.0.0:50052")?,
            admin_addr: env.addr("ROUTING_ADMIN_ADDR", "0.0.0.0:9102")?,
            db: DbConfig::from_env(
                env,
                "ROUTING",
                "postgres://postgres@127.0.0.1:5432/wardline_routing",
            )?,
            common: CommonConfig::from_env(env)?,
            jwt_secret: env.secret("WARDLINE_JWT_SECRET", 32)?,
            relay,
            consumer_workers: env.parse("ROUTING_CONSUMER_WORKERS", 4)?,
            scan_interval: env.millis("ROUTING_SCAN_INTERVAL_MS", 500)?,
            drain_interval: env.millis("ROUTING_DRAIN_INTERVAL_MS", 5000)?,
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
        assert_eq!(c.grpc_addr.port(), 50052);
        assert_eq!(c.scan_interval, Duration::from_millis(500));
        let e = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWT_SECRET", "s".repeat(32)),
            ("ROUTING_SCAN_INTERVAL_MS", "soon".to_owned()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("ROUTING_SCAN_INTERVAL_MS"));
    }
}
