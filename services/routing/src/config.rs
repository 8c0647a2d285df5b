//! Routing's configuration (environment variables, see the README table).

use std::time::Duration;

use wardline_kit::config::{ConfigError, Env, ServiceConfig, ServiceDefaults};

/// Defaults of routing's addresses and database.
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    grpc_addr: "0.0.0.0:50052",
    admin_addr: "127.0.0.1:9102",
    database_url: "postgres://postgres@127.0.0.1:5432/wardline_routing",
};

/// Everything routing reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `ROUTING_*` service variables and the shared ones.
    pub service: ServiceConfig,
    /// `ROUTING_SCAN_INTERVAL_MS`: how often due timers are looked for.
    pub scan_interval: Duration,
    /// `ROUTING_DRAIN_INTERVAL_MS`: how often queues are retried even without
    /// a wake-up (shifts start by the clock, not by an event).
    pub drain_interval: Duration,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, "ROUTING", DEFAULTS)?,
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
        let c = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
            ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            // The defaults are for a laptop: plaintext, no NATS identity.
            ("WARDLINE_ENV", "development".to_owned()),
        ]))
        .unwrap();
        assert_eq!(c.service.grpc_addr.port(), 50052);
        assert_eq!(c.scan_interval, Duration::from_millis(500));
        let e = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
            ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            ("WARDLINE_ENV", "development".to_owned()),
            ("ROUTING_SCAN_INTERVAL_MS", "soon".to_owned()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("ROUTING_SCAN_INTERVAL_MS"));
    }
}
