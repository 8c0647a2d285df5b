//! Transport security settings, written once for every hop.
//!
//! Certificates always come from files named by variables, so a Kubernetes
//! Secret, a compose volume or `wardline-dev-pki`'s directory can provide
//! them without a rebuild. The rule every hop follows in production
//! (`WARDLINE_ENV=production`, the default): plaintext is accepted only
//! where it cannot leave the machine, that is to a loopback address or a
//! Unix socket; anything else must be TLS, or start-up fails with an error
//! naming the variable. `WARDLINE_ENV=development` lifts the rule (a
//! warning is logged per plaintext hop). See `docs/threat-model.md`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{ConfigError, Env};

/// `WARDLINE_ENV`: how strict transport checks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The default: plaintext only to loopback or Unix sockets; NATS
    /// credentials required.
    #[default]
    Production,
    /// Local development and tests: anything goes, with a warning.
    Development,
}

impl Profile {
    /// Reads `WARDLINE_ENV` (`production`, the default, or `development`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get("WARDLINE_ENV").as_deref().map(str::trim) {
            None | Some("production") => Ok(Self::Production),
            Some("development") => Ok(Self::Development),
            Some(other) => Err(ConfigError::Invalid {
                var: "WARDLINE_ENV".into(),
                reason: format!("{other:?} is neither production nor development"),
            }),
        }
    }

    /// Whether production's transport rules apply.
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

/// Errors reading certificate files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by a variable cannot be read.
    #[error("{var}: cannot read {path}: {source}")]
    Read {
        /// The variable naming the file.
        var: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Reads a file named by `var`.
pub fn read(var: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        var: var.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// A gRPC server's TLS: `<PREFIX>_TLS_CERT_FILE`, `<PREFIX>_TLS_KEY_FILE`
/// and, for mutual TLS, `<PREFIX>_TLS_CLIENT_CA_FILE` (clients must then
/// present a certificate signed by it).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
    /// CA that client certificates must chain to; none = no client certificates asked.
    pub client_ca_file: Option<PathBuf>,
    prefix: String,
}

impl ServerTls {
    /// Reads the variables under `prefix`; `None` when no certificate is set.
    /// A certificate without a key (or the reverse) is an error naming the
    /// missing variable.
    pub fn from_env(env: &Env, prefix: &str) -> Result<Option<Self>, ConfigError> {
        let var = |n: &str| format!("{prefix}_TLS_{n}");
        let cert = env.get(&var("CERT_FILE"));
        let key = env.get(&var("KEY_FILE"));
        let client_ca = env.get(&var("CLIENT_CA_FILE")).map(PathBuf::from);
        match (cert, key) {
            (None, None) => match client_ca {
                Some(_) => Err(ConfigError::Invalid {
                    var: var("CLIENT_CA_FILE"),
                    reason: format!("needs {} and {}", var("CERT_FILE"), var("KEY_FILE")),
                }),
                None => Ok(None),
            },
            (Some(_), None) => Err(ConfigError::Missing {
                var: var("KEY_FILE"),
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                var: var("CERT_FILE"),
            }),
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert_file: cert.into(),
                key_file: key.into(),
                client_ca_file: client_ca,
                prefix: prefix.to_owned(),
            })),
        }
    }

    /// The server configuration, reading the files now (so a missing file
    /// stops start-up with the variable's name).
    pub fn tonic_config(&self) -> Result<ServerTlsConfig, TlsError> {
        let var = |n: &str| format!("{}_TLS_{n}", self.prefix);
        let identity = Identity::from_pem(
            read(&var("CERT_FILE"), &self.cert_file)?,
            read(&var("KEY_FILE"), &self.key_file)?,
        );
        let mut cfg = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file {
            cfg = cfg.client_ca_root(Certificate::from_pem(read(&var("CLIENT_CA_FILE"), ca)?));
        }
        Ok(cfg)
    }
}

/// A gRPC client's TLS: trust `ca` (PEM file; the system roots when none)
/// and present `identity` (certificate and key files) for mutual TLS.
/// `vars` names the variables for error messages: `(ca, cert, key)`.
pub fn client_tls(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    vars: (&str, &str, &str),
) -> Result<ClientTlsConfig, TlsError> {
    let mut cfg = ClientTlsConfig::new();
    match ca {
        Some(ca) => cfg = cfg.ca_certificate(Certificate::from_pem(read(vars.0, ca)?)),
        None => cfg = cfg.with_native_roots(),
    }
    if let Some((cert, key)) = identity {
        cfg = cfg.identity(Identity::from_pem(read(vars.1, cert)?, read(vars.2, key)?));
    }
    Ok(cfg)
}

/// Whether traffic to `host` stays on this machine: a loopback address,
/// `localhost`, or a Unix socket path.
pub fn is_local_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.is_empty()
        || h.starts_with('/')
        || h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `scheme://[user@]host[:port][/...]` URL.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

/// The production check of a plaintext hop: `Ok` when TLS is on, the peer
/// is local, or the profile is development (then a warning is logged);
/// otherwise an error naming `var`.
pub fn require_tls(
    profile: Profile,
    var: &str,
    tls: bool,
    host: &str,
    what: &str,
) -> Result<(), ConfigError> {
    if tls || is_local_host(host) {
        return Ok(());
    }
    if profile.is_production() {
        return Err(ConfigError::Invalid {
            var: var.into(),
            reason: format!(
                "{what} to {host} would be plaintext; configure TLS (see README, \"TLS\") or set WARDLINE_ENV=development"
            ),
        });
    }
    tracing::warn!(var, host, "{what} is plaintext (WARDLINE_ENV=development)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("nats://127.0.0.1:4222"), "127.0.0.1");
        assert_eq!(url_host("tls://u:p@nats-0:4222,nats://x"), "nats-0");
        assert_eq!(
            url_host("postgres://a:b@db.example.org/x?sslmode=disable"),
            "db.example.org"
        );
        assert_eq!(url_host("http://[::1]:4317"), "::1");
        assert_eq!(url_host("nats"), "nats");
        assert!(is_local_host("127.0.0.2") && is_local_host("::1") && is_local_host("localhost"));
        assert!(is_local_host("/var/run/postgresql"));
        assert!(!is_local_host("nats") && !is_local_host("10.0.0.1"));
    }

    #[test]
    fn the_profile_defaults_to_production_and_names_bad_values() {
        assert_eq!(
            Profile::from_env(&Env::from_pairs([("X", "y")])).unwrap(),
            Profile::Production
        );
        assert_eq!(
            Profile::from_env(&Env::from_pairs([("WARDLINE_ENV", "development")])).unwrap(),
            Profile::Development
        );
        let e = Profile::from_env(&Env::from_pairs([("WARDLINE_ENV", "prod")])).unwrap_err();
        assert!(e.to_string().contains("WARDLINE_ENV"), "{e}");
    }

    #[test]
    fn plaintext_leaves_the_machine_only_in_development() {
        let p = Profile::Production;
        assert!(require_tls(p, "V", false, "127.0.0.1", "x").is_ok());
        assert!(require_tls(p, "V", true, "db", "x").is_ok());
        let e = require_tls(p, "V", false, "db", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("V") && e.contains("WARDLINE_ENV"), "{e}");
        assert!(require_tls(Profile::Development, "V", false, "db", "x").is_ok());
    }

    #[test]
    fn server_tls_needs_both_files() {
        let env = Env::from_pairs([("S_TLS_CERT_FILE", "/c")]);
        let e = ServerTls::from_env(&env, "S").unwrap_err().to_string();
        assert!(e.contains("S_TLS_KEY_FILE"), "{e}");
        assert!(
            ServerTls::from_env(&Env::from_pairs([("X", "y")]), "S")
                .unwrap()
                .is_none()
        );
        let env = Env::from_pairs([("S_TLS_CERT_FILE", "/c"), ("S_TLS_KEY_FILE", "/k")]);
        let t = ServerTls::from_env(&env, "S").unwrap().unwrap();
        let e = t.tonic_config().unwrap_err().to_string();
        assert!(e.contains("S_TLS_CERT_FILE"), "{e}");
    }
}
