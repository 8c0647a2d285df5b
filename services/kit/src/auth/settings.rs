//! What a service verifies tokens against, read from the environment.
//!
//! Production takes keys from the hospital's identity provider: a JWKS
//! fetched from `WARDLINE_JWKS_URL` (or read from `WARDLINE_JWKS_FILE`),
//! with the issuer (`WARDLINE_JWT_ISSUER`) and this service's own audience
//! (`<PREFIX>_JWT_AUDIENCE`, default `wardline-<service>`) required and a
//! maximum lifetime. A shared HS256 secret (`WARDLINE_JWT_SECRET`) is for
//! development and tests only, behind `WARDLINE_ENV=development`; a secret
//! that was ever committed to the repository is refused outside that mode
//! even before the mode is looked at, with a message saying so.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::Role;
use crate::config::{ConfigError, Env};
use crate::tls::Profile;

/// The issuer of development tokens (`wardctl token`, the test kit) when
/// `WARDLINE_JWT_ISSUER` is unset in development.
pub const DEV_ISSUER: &str = "wardline-dev";

/// The services whose audiences a development token carries.
pub const SERVICES: &[&str] = &["intake", "routing", "billing", "notification"];

/// The default audience of `service`: `wardline-<service>`.
pub fn default_audience(service: &str) -> String {
    format!("wardline-{service}")
}

/// SHA-256 (hex) of every `WARDLINE_JWT_SECRET` value that was ever
/// committed to this repository (`.env`, examples, docs, tests). Anyone who
/// has read the repository knows them, so outside development they are
/// refused at start-up. `tests/repository_secrets.rs` greps the tracked
/// files for `JWT_SECRET=` values and fails when one is missing here.
pub const KNOWN_SECRET_SHA256: &[&str] = &[
    // `.env` and docker-compose before issue 11 ("change-me-dev-only-...").
    "a49c1837f3a3dc10a8b147fd4dc162b98731fa49d4461fb19f6cdc04c2523987",
    // The placeholder of deploy/k8s/secrets.example.yaml ("REPLACE-with-...").
    "f29a648cc47b0251096ec5e2451c076ccf205dff0876397acdb5459e2a6238f2",
    // The test kit's secret (wardline_testkit::SECRET).
    "21b11be036e7344967167c0fbbda6191a0620859742de103cb5673bec7cbf8d1",
];

/// Whether `secret` is one of the repository's published secrets.
pub fn is_known_secret(secret: &str) -> bool {
    let digest = hex::encode(Sha256::digest(secret.trim().as_bytes()));
    KNOWN_SECRET_SHA256.contains(&digest.as_str())
}

/// Where verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `WARDLINE_JWKS_URL`: the provider's JWKS endpoint.
    JwksUrl(String),
    /// `WARDLINE_JWKS_FILE`: a JWKS document on disk (the development
    /// issuer's, or one an operator syncs from the provider).
    JwksFile(PathBuf),
    /// `WARDLINE_JWT_SECRET`: HS256 (development only).
    Secret(SecretString),
}

/// How the provider's claims become a Wardline caller.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// `WARDLINE_JWT_SUBJECT_CLAIM` (`sub`).
    pub subject: String,
    /// `WARDLINE_JWT_ROLES_CLAIM` (`roles`): a dotted path into the claims
    /// (`realm_access.roles`), to an array of strings or one string.
    pub roles: String,
    /// `WARDLINE_JWT_TENANT_CLAIM` (`tenant`): a dotted path to the tenant
    /// slug (or `*`).
    pub tenant: String,
    /// `WARDLINE_JWT_EMAIL_CLAIM` (`email`): the person's email, which a
    /// requester's ticket is answered at.
    pub email: String,
    /// `WARDLINE_JWT_PHONE_CLAIM` (`phone_number`, OpenID Connect's): the
    /// person's phone (E.164), which a requester's ticket may be texted at.
    pub phone: String,
    /// `WARDLINE_JWT_ROLE_MAP` (`Wardline.Analyst=analyst,...`): provider
    /// values to Wardline roles. Empty: values are taken as Wardline role
    /// names (`analyst`, `tenant_admin` ...). Unmapped values are ignored.
    pub role_map: Vec<(String, Role)>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            roles: "roles".into(),
            tenant: "tenant".into(),
            email: "email".into(),
            phone: "phone_number".into(),
            role_map: Vec::new(),
        }
    }
}

impl ClaimMapping {
    /// The Wardline roles of the provider's `values`.
    pub fn roles<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> Vec<Role> {
        let mut out = Vec::new();
        for v in values {
            if self.role_map.is_empty() {
                if let Ok(r) = serde_json::from_value::<Role>(serde_json::Value::from(v)) {
                    out.push(r);
                }
            } else {
                out.extend(
                    self.role_map
                        .iter()
                        .filter(|(from, _)| from == v)
                        .map(|(_, r)| *r),
                );
            }
        }
        out.sort_by_key(|r| *r as u8);
        out.dedup();
        out
    }
}

/// Everything token verification needs.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Where keys come from.
    pub keys: KeySource,
    /// `WARDLINE_JWT_ISSUER`: the only accepted `iss`.
    pub issuer: String,
    /// `<PREFIX>_JWT_AUDIENCE` (comma-separated; default `wardline-<service>`):
    /// a token must name one of them in `aud`.
    pub audiences: Vec<String>,
    /// `WARDLINE_JWT_MAX_LIFETIME_SECS` (5400): `exp - iat` above it is refused.
    pub max_lifetime: Duration,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (30 s).
    pub leeway: Duration,
    /// Claim names and the role map.
    pub mapping: ClaimMapping,
    /// `WARDLINE_JWKS_REFRESH_SECS` (900): how often keys are re-read.
    pub refresh: Duration,
    /// `WARDLINE_JWKS_MIN_REFRESH_SECS` (30): the least time between two
    /// reads triggered by an unknown `kid`, so a flood of invented kids
    /// costs the provider one request per interval.
    pub min_refresh: Duration,
    /// `WARDLINE_JWKS_CA_FILE`: a CA to trust (besides the system's) for
    /// the JWKS URL, for a provider behind the hospital's own CA.
    pub jwks_ca_file: Option<PathBuf>,
    /// `WARDLINE_TENANT_WRITE_RATE` (500) and `WARDLINE_TENANT_WRITE_BURST`
    /// (1000): mutating RPCs per second one tenant may make through this
    /// replica, every service and method together (0 turns it off); over
    /// it, RESOURCE_EXHAUSTED with the time to wait.
    pub write_rate: (u32, u32),
}

fn invalid(var: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.into(),
        reason: reason.into(),
    }
}

/// Parses `WARDLINE_JWT_ROLE_MAP` (`from=role,...`).
pub fn parse_role_map(raw: &[String]) -> Result<Vec<(String, Role)>, ConfigError> {
    raw.iter()
        .map(|entry| {
            let (from, to) = entry
                .rsplit_once('=')
                .filter(|(f, _)| !f.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        "WARDLINE_JWT_ROLE_MAP",
                        format!("{entry:?} is not provider-value=wardline-role"),
                    )
                })?;
            let role: Role = serde_json::from_value(serde_json::Value::from(to.trim()))
                .map_err(|_| {
                    invalid(
                        "WARDLINE_JWT_ROLE_MAP",
                        format!(
                            "{:?} is not a Wardline role (vendor_admin, tenant_admin, analyst, requester, billing)",
                            to.trim()
                        ),
                    )
                })?;
            Ok((from.trim().to_owned(), role))
        })
        .collect()
}

impl AuthConfig {
    /// Reads the variables of the service `service` (audience prefix `prefix`).
    pub fn from_env(
        env: &Env,
        prefix: &str,
        service: &str,
        profile: Profile,
    ) -> Result<Self, ConfigError> {
        let url = env.get("WARDLINE_JWKS_URL").map(|u| u.trim().to_owned());
        let file = env.get("WARDLINE_JWKS_FILE").map(PathBuf::from);
        let secret = env.get("WARDLINE_JWT_SECRET");
        let keys = match (url, file, secret) {
            (Some(url), None, None) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid("WARDLINE_JWKS_URL", "must be an https:// URL"));
                }
                crate::tls::require_tls(
                    profile,
                    "WARDLINE_JWKS_URL",
                    url.starts_with("https://"),
                    crate::tls::url_host(&url),
                    "fetching the JWKS",
                )?;
                KeySource::JwksUrl(url)
            }
            (None, Some(file), None) => KeySource::JwksFile(file),
            (None, None, Some(secret)) => {
                if is_known_secret(&secret) && profile.is_production() {
                    return Err(invalid(
                        "WARDLINE_JWT_SECRET",
                        "is a development secret published in the Wardline repository; anyone could sign tokens with it. Use WARDLINE_JWKS_URL (your identity provider) instead",
                    ));
                }
                if profile.is_production() {
                    return Err(invalid(
                        "WARDLINE_JWT_SECRET",
                        "HS256 shared-secret tokens are for development only (WARDLINE_ENV=development): every holder of the secret can sign any token. Set WARDLINE_JWKS_URL (or WARDLINE_JWKS_FILE) to your identity provider's keys",
                    ));
                }
                if secret.len() < 32 {
                    return Err(invalid(
                        "WARDLINE_JWT_SECRET",
                        "must be at least 32 characters long",
                    ));
                }
                if is_known_secret(&secret) {
                    tracing::warn!(
                        "WARDLINE_JWT_SECRET is a published development secret (WARDLINE_ENV=development)"
                    );
                }
                KeySource::Secret(SecretString::from(secret))
            }
            (None, None, None) => {
                return Err(ConfigError::Missing {
                    var: "WARDLINE_JWKS_URL (or WARDLINE_JWKS_FILE; WARDLINE_JWT_SECRET with WARDLINE_ENV=development)".into(),
                });
            }
            _ => {
                return Err(invalid(
                    "WARDLINE_JWKS_URL",
                    "set only one of WARDLINE_JWKS_URL, WARDLINE_JWKS_FILE and WARDLINE_JWT_SECRET",
                ));
            }
        };
        let issuer = match env.get("WARDLINE_JWT_ISSUER") {
            Some(i) => i.trim().to_owned(),
            None if !profile.is_production() => DEV_ISSUER.to_owned(),
            None => {
                return Err(ConfigError::Missing {
                    var: "WARDLINE_JWT_ISSUER".into(),
                });
            }
        };
        let aud_var = format!("{prefix}_JWT_AUDIENCE");
        let mut audiences = env.list(&aud_var);
        if audiences.is_empty() {
            audiences.push(default_audience(service));
        }
        let max_secs: u64 = env.parse("WARDLINE_JWT_MAX_LIFETIME_SECS", 5400)?;
        if max_secs == 0 {
            return Err(invalid(
                "WARDLINE_JWT_MAX_LIFETIME_SECS",
                "must be at least 1",
            ));
        }
        let mapping = ClaimMapping {
            subject: env.string("WARDLINE_JWT_SUBJECT_CLAIM", "sub"),
            roles: env.string("WARDLINE_JWT_ROLES_CLAIM", "roles"),
            tenant: env.string("WARDLINE_JWT_TENANT_CLAIM", "tenant"),
            email: env.string("WARDLINE_JWT_EMAIL_CLAIM", "email"),
            phone: env.string("WARDLINE_JWT_PHONE_CLAIM", "phone_number"),
            role_map: parse_role_map(&env.list("WARDLINE_JWT_ROLE_MAP"))?,
        };
        let refresh: u64 = env.parse("WARDLINE_JWKS_REFRESH_SECS", 900)?;
        let min_refresh: u64 = env.parse("WARDLINE_JWKS_MIN_REFRESH_SECS", 30)?;
        Ok(Self {
            keys,
            issuer,
            audiences,
            max_lifetime: Duration::from_secs(max_secs),
            leeway: Duration::from_secs(30),
            mapping,
            refresh: Duration::from_secs(refresh.max(1)),
            min_refresh: Duration::from_secs(min_refresh),
            jwks_ca_file: env.get("WARDLINE_JWKS_CA_FILE").map(PathBuf::from),
            write_rate: (
                env.parse("WARDLINE_TENANT_WRITE_RATE", 500)?,
                env.parse("WARDLINE_TENANT_WRITE_BURST", 1000)?,
            ),
        })
    }

    /// A development configuration verifying HS256 tokens of `secret` for
    /// `audience` (unit tests).
    pub fn hs256(secret: &SecretString, audience: &str) -> Self {
        Self {
            keys: KeySource::Secret(SecretString::from(secret.expose_secret().to_owned())),
            issuer: DEV_ISSUER.into(),
            audiences: vec![audience.to_owned()],
            max_lifetime: Duration::from_secs(5400),
            leeway: Duration::from_secs(30),
            mapping: ClaimMapping::default(),
            refresh: Duration::from_secs(900),
            min_refresh: Duration::from_secs(30),
            jwks_ca_file: None,
            write_rate: (500, 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        let env = Env::from_pairs(pairs.iter().copied());
        let profile = Profile::from_env(&env)?;
        AuthConfig::from_env(&env, "INTAKE", "intake", profile)
    }

    #[test]
    fn production_needs_an_identity_provider() {
        let secret = "a-long-enough-random-looking-secret-0123456789";
        let e = read(&[("WARDLINE_JWT_SECRET", secret)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WARDLINE_JWT_SECRET") && e.contains("development"),
            "{e}"
        );
        assert!(
            read(&[
                ("WARDLINE_JWT_SECRET", secret),
                ("WARDLINE_ENV", "development")
            ])
            .is_ok()
        );
        let e = read(&[("WARDLINE_JWKS_FILE", "/jwks.json")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WARDLINE_JWT_ISSUER"), "{e}");
        let c = read(&[
            ("WARDLINE_JWKS_URL", "https://login.example.org/keys"),
            ("WARDLINE_JWT_ISSUER", "https://login.example.org/"),
        ])
        .unwrap();
        assert_eq!(c.audiences, ["wardline-intake"]);
        assert_eq!(c.max_lifetime, Duration::from_secs(5400));
        let e = read(&[
            ("WARDLINE_JWKS_URL", "http://idp.example.org/keys"),
            ("WARDLINE_JWT_ISSUER", "x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("WARDLINE_JWKS_URL"), "{e}");
        let e = read(&[("WARDLINE_ENV", "development")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WARDLINE_JWKS_URL"), "{e}");
        let e = read(&[
            ("WARDLINE_JWKS_FILE", "/x"),
            ("WARDLINE_JWT_SECRET", secret),
            ("WARDLINE_ENV", "development"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("only one"), "{e}");
    }

    #[test]
    fn the_published_secret_is_refused_naming_the_variable() {
        for s in crate::auth::settings::tests::published() {
            assert!(is_known_secret(s), "{s}");
            let e = read(&[("WARDLINE_JWT_SECRET", s)]).unwrap_err().to_string();
            assert!(
                e.contains("WARDLINE_JWT_SECRET") && e.contains("published"),
                "{e}"
            );
            assert!(!e.contains(s), "the error must not print the secret");
        }
        assert!(!is_known_secret("something-else-entirely-0123456789abcdef"));
    }

    pub(crate) fn published() -> [&'static str; 3] {
        [
            "change-me-dev-only-jwt-signing-secret-0123456789",
            "REPLACE-with-at-least-32-random-characters-000000",
            "wardline-test-secret-0123456789-abcdefghijklmnop",
        ]
    }

    #[test]
    fn claims_map_to_roles_by_configuration() {
        let c = read(&[
            ("WARDLINE_JWKS_FILE", "/x"),
            ("WARDLINE_JWT_ISSUER", "i"),
            (
                "INTAKE_JWT_AUDIENCE",
                "api://wardline-intake, wardline-intake",
            ),
            ("WARDLINE_JWT_ROLES_CLAIM", "realm_access.roles"),
            (
                "WARDLINE_JWT_ROLE_MAP",
                "Wardline.Analyst=analyst,Wardline.Admin=tenant_admin,ops=analyst",
            ),
        ])
        .unwrap();
        assert_eq!(c.audiences, ["api://wardline-intake", "wardline-intake"]);
        assert_eq!(c.mapping.roles, "realm_access.roles");
        assert_eq!(
            c.mapping.roles([
                "Wardline.Admin",
                "offline_access",
                "Wardline.Analyst",
                "ops"
            ]),
            [Role::TenantAdmin, Role::Analyst]
        );
        assert!(ClaimMapping::default().roles(["analyst", "Wardline.Admin"]) == [Role::Analyst]);
        let e = read(&[
            ("WARDLINE_JWKS_FILE", "/x"),
            ("WARDLINE_JWT_ISSUER", "i"),
            ("WARDLINE_JWT_ROLE_MAP", "A=superuser"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("WARDLINE_JWT_ROLE_MAP"), "{e}");
    }
}
