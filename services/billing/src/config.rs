//! Billing's configuration (environment variables, see the README table).

use wardline_kit::config::{ConfigError, Env, ServiceConfig, ServiceDefaults};

/// Defaults of billing's addresses and database.
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    grpc_addr: "0.0.0.0:50053",
    admin_addr: "127.0.0.1:9103",
    database_url: "postgres://postgres@127.0.0.1:5432/wardline_billing",
};

/// Everything billing reads at start-up: the `BILLING_*` service variables
/// and the shared ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses, database, relay, consumer workers, token key, NATS.
    pub service: ServiceConfig,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, "BILLING", DEFAULTS)?,
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
        assert_eq!(c.service.grpc_addr.port(), 50053);
        assert_eq!(c.service.admin_addr.port(), 9103);
        let e = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
            ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            ("WARDLINE_ENV", "development".to_owned()),
            ("BILLING_CONSUMER_WORKERS", "many".to_owned()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("BILLING_CONSUMER_WORKERS"));
    }
}
