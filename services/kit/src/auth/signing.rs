//! Signing tokens: for development and tests only. In production the
//! hospital's identity provider signs; Wardline only verifies.
//!
//! The development issuer is an ES256 key with its JWKS beside it
//! ([`DevIssuer::ensure`], run by `wardctl dev-issuer init` and
//! `wardline-dev-pki`), so the demo and compose verify tokens exactly as
//! production does (a JWKS, an issuer, per-service audiences), and only
//! the signing side is a stand-in. HS256 with a shared secret remains for
//! the tests that exercise that path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::Role;
use super::settings::{DEV_ISSUER, SERVICES, default_audience};

/// Claims of a token Wardline signs (development).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: user or system id.
    pub sub: String,
    /// Tenant slug, or `*` for all tenants.
    pub tenant: String,
    /// Roles granted.
    pub roles: Vec<Role>,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Issuer.
    pub iss: String,
    /// Audiences: the services the token is good for.
    pub aud: Vec<String>,
    /// The person's email, as a provider states it (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The person's phone (E.164), as a provider states it (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

impl Claims {
    /// Claims for `subject` on `tenant` with `roles`, valid `ttl` from now,
    /// from the development issuer for every service.
    pub fn new(subject: &str, tenant: &str, roles: &[Role], ttl: Duration) -> Self {
        let now = now();
        Self {
            sub: subject.to_owned(),
            tenant: tenant.to_owned(),
            roles: roles.to_vec(),
            exp: now + ttl.as_secs(),
            iat: now,
            iss: DEV_ISSUER.to_owned(),
            aud: SERVICES.iter().map(|s| default_audience(s)).collect(),
            email: None,
            phone_number: None,
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Errors of the development issuer.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A key file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Neither a development issuer key nor a secret was given.
    #[error(
        "no development signing key: set WARDLINE_DEV_ISSUER_KEY (the es256.key of `wardctl dev-issuer init`) or WARDLINE_JWT_SECRET"
    )]
    NoKey,
    /// Signing itself.
    #[error("cannot sign: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A key that signs development tokens.
pub enum Signer {
    /// HS256 with a shared secret (tests of that path).
    Hs256(SecretString),
    /// ES256 with the development issuer's key.
    Es256 {
        /// Key id: the RFC 7638 thumbprint of the public key.
        kid: String,
        /// The private key.
        key: EncodingKey,
        /// The public key as a JWK (with `kid`, `alg` and `use`).
        jwk: Box<Jwk>,
    },
}

impl Signer {
    /// An ES256 signer of a PKCS#8 PEM P-256 private key.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = EncodingKey::from_ec_pem(pem)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(Self::Es256 {
            kid,
            key,
            jwk: Box::new(jwk),
        })
    }

    /// The development signer: the issuer key file when given, else the
    /// HS256 secret.
    pub fn for_development(
        issuer_key: Option<&Path>,
        secret: Option<&SecretString>,
    ) -> Result<Self, SigningError> {
        match (issuer_key, secret) {
            (Some(path), _) => signer_from_file(path),
            (None, Some(s)) => Ok(Signer::Hs256(SecretString::from(
                s.expose_secret().to_owned(),
            ))),
            (None, None) => Err(SigningError::NoKey),
        }
    }

    /// A fresh ES256 key (PKCS#8 PEM).
    pub fn generate_es256_pem() -> Result<String, SigningError> {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|k| k.serialize_pem())
            .map_err(|e| SigningError::File {
                path: PathBuf::new(),
                reason: format!("cannot generate a key: {e}"),
            })
    }

    /// The public JWKS of this signer (empty for HS256).
    pub fn jwks(&self) -> JwkSet {
        match self {
            Signer::Hs256(_) => JwkSet { keys: Vec::new() },
            Signer::Es256 { jwk, .. } => JwkSet {
                keys: vec![(**jwk).clone()],
            },
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        match self {
            Signer::Hs256(secret) => jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                claims,
                &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            ),
            Signer::Es256 { kid, key, .. } => {
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some(kid.clone());
                jsonwebtoken::encode(&header, claims, key)
            }
        }
    }
}

/// The development issuer's files in a directory: `es256.key` (private,
/// 0600) and `jwks.json` (what the services verify with:
/// `WARDLINE_JWKS_FILE`).
pub struct DevIssuer {
    dir: PathBuf,
}

impl DevIssuer {
    /// The issuer in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The private key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("es256.key")
    }

    /// The public JWKS.
    pub fn jwks_file(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// Makes the key when missing and (re)writes the JWKS from it.
    /// Idempotent: an existing key is kept, so tokens stay valid. Returns
    /// the files written.
    pub fn ensure(&self) -> Result<Vec<PathBuf>, SigningError> {
        let err = |path: &Path, e: &dyn std::fmt::Display| SigningError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| err(&self.dir, &e))?;
        let mut written = Vec::new();
        let key_file = self.key_file();
        if !key_file.exists() {
            let pem = Signer::generate_es256_pem()?;
            write_private(&key_file, pem.as_bytes()).map_err(|e| err(&key_file, &e))?;
            written.push(key_file.clone());
        }
        let signer = self.signer()?;
        let jwks = serde_json::to_string_pretty(&signer.jwks()).map_err(|e| err(&key_file, &e))?;
        let jwks_file = self.jwks_file();
        if std::fs::read_to_string(&jwks_file).ok().as_deref() != Some(jwks.as_str()) {
            std::fs::write(&jwks_file, jwks).map_err(|e| err(&jwks_file, &e))?;
            written.push(jwks_file);
        }
        Ok(written)
    }

    /// The signer of the key file.
    pub fn signer(&self) -> Result<Signer, SigningError> {
        signer_from_file(&self.key_file())
    }
}

/// The ES256 signer of a PEM key file.
pub fn signer_from_file(path: &Path) -> Result<Signer, SigningError> {
    let pem = std::fs::read(path).map_err(|e| SigningError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Signer::es256_pem(&pem).map_err(|e| SigningError::File {
        path: path.to_owned(),
        reason: format!("not a PKCS#8 P-256 key: {e}"),
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}

/// Mints an HS256 token for every service (development, tests).
pub fn mint(
    secret: &SecretString,
    subject: &str,
    tenant: &str,
    roles: &[Role],
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    Signer::Hs256(SecretString::from(secret.expose_secret().to_owned()))
        .sign(&Claims::new(subject, tenant, roles, ttl))
}
