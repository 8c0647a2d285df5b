//! Intake's configuration (environment variables, see the README table).

use wardline_kit::config::{ConfigError, Env, ServiceConfig, ServiceDefaults};

/// Defaults of intake's addresses and database.
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    grpc_addr: "0.0.0.0:50051",
    admin_addr: "127.0.0.1:9101",
    database_url: "postgres://postgres@127.0.0.1:5432/wardline_intake",
};

/// Everything intake reads at start-up: the `INTAKE_*` service variables
/// (addresses, database, relay, consumer workers) and the shared ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// `INTAKE_GRPC_ADDR`, `INTAKE_ADMIN_ADDR`, `INTAKE_DATABASE_URL`,
    /// `INTAKE_DB_MAX_CONNECTIONS`, `INTAKE_RELAY_BATCH`, `INTAKE_RELAY_POLL_MS`,
    /// `INTAKE_CONSUMER_WORKERS`, `WARDLINE_JWT_SECRET`, `NATS_URL`, `WARDLINE_*`.
    pub service: ServiceConfig,
    /// `INTAKE_TENANT_RATE`: tickets per second one tenant may create through
    /// this replica (0 = unlimited); over it, CreateTicket is RESOURCE_EXHAUSTED.
    pub tenant_rate: u32,
    /// `INTAKE_TENANT_BURST`: tickets a tenant may create at once above the rate.
    pub tenant_burst: u32,
    /// `INTAKE_CREATE_MAX_BATCH` (most tickets committed in one transaction,
    /// default 256) and `INTAKE_CREATE_CONCURRENCY` (create transactions in
    /// flight at once, default 4): the group commit of CreateTicket.
    pub writer: crate::create::WriterConfig,
    /// `INTAKE_NOTE_RATE` (notes per second one tenant may add through this
    /// replica, default 50; 0 = unlimited), `INTAKE_NOTE_BURST` (default 100).
    pub note_rate: (u32, u32),
    /// `INTAKE_MAX_NOTES_PER_TICKET`: AddNote beyond it is RESOURCE_EXHAUSTED
    /// (default 500).
    pub max_notes_per_ticket: i64,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, "INTAKE", DEFAULTS)?,
            tenant_rate: env.parse("INTAKE_TENANT_RATE", 200)?,
            tenant_burst: env.parse("INTAKE_TENANT_BURST", 400)?,
            writer: crate::create::WriterConfig {
                max_batch: env.parse("INTAKE_CREATE_MAX_BATCH", 256)?,
                concurrency: env.parse("INTAKE_CREATE_CONCURRENCY", 4)?,
            },
            note_rate: (
                env.parse("INTAKE_NOTE_RATE", 50)?,
                env.parse("INTAKE_NOTE_BURST", 100)?,
            ),
            max_notes_per_ticket: env.parse("INTAKE_MAX_NOTES_PER_TICKET", 500)?,
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
        let c = Config::from_env(&Env::from_pairs([
            ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
            ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
            // The defaults are for a laptop: plaintext, no NATS identity.
            ("WARDLINE_ENV", "development".to_owned()),
        ]))
        .unwrap();
        assert_eq!(c.service.grpc_addr.port(), 50051);
        assert_eq!(c.service.admin_addr.port(), 9101);
        assert_eq!(c.service.relay.batch, 512);
        assert_eq!(c.service.db.max_connections, 16);
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (var, value) in [
            ("INTAKE_GRPC_ADDR", "localhost"),
            ("INTAKE_DATABASE_URL", "mysql://x"),
        ] {
            let e = Config::from_env(&Env::from_pairs([
                ("WARDLINE_JWKS_FILE", "/jwks.json".to_owned()),
                ("WARDLINE_JWT_ISSUER", "https://idp.example.org".to_owned()),
                (var, value.to_owned()),
            ]))
            .unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
    }
}
