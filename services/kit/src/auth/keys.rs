//! Verification keys: a JWKS from the provider (URL or file), or the
//! development HS256 secret, and how they stay current.
//!
//! What must hold:
//! - The algorithm of a key comes from the key (its JWK `alg`, or for keys
//!   without one, like Entra ID's, its type and curve), never from the
//!   token's header: a token whose header names another algorithm than its
//!   key's is refused, which is what stops `alg` confusion (an HS256 token
//!   "signed" with an RSA public key's bytes).
//! - Only asymmetric keys are taken from a JWKS; encryption keys
//!   (`use: enc`) and unsupported types are skipped.
//! - An unknown `kid` re-reads the keys (so a rotation at the provider is
//!   picked up at the first token signed with the new key), but at most
//!   once per `min_refresh`, so invented kids cannot hammer the provider;
//!   a background task also re-reads them every `refresh` (dropping
//!   retired keys). A failed read keeps the keys there were.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::ExposeSecret;

use super::settings::{AuthConfig, KeySource};

/// The most a JWKS document may weigh.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Errors reading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The JWKS file cannot be read.
    #[error("WARDLINE_JWKS_FILE: cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The JWKS URL did not answer with a JWKS.
    #[error("WARDLINE_JWKS_URL: {0}")]
    Fetch(String),
    /// The document is not a JWKS with a usable key.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable naming the source.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The CA file for the JWKS URL.
    #[error("WARDLINE_JWKS_CA_FILE: {0}")]
    Ca(String),
}

/// One verification key and the only algorithm it verifies.
#[derive(Clone)]
pub struct VerifyKey {
    /// Fixed by the key, never by the token.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys known now, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
    /// A key without `kid` (a one-key JWKS, or the HS256 secret): used for
    /// tokens that name no kid.
    anonymous: Option<VerifyKey>,
}

impl KeySet {
    /// The key for a token's `kid`.
    pub fn find(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => self.anonymous.as_ref(),
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.anonymous.is_some() && self.by_kid.is_empty())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usable keys of a JWKS document (`var` names its source in errors).
    pub fn from_jwks(json: &[u8], var: &'static str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| KeyError::Invalid {
            var,
            reason: format!("not a JWKS document: {e}"),
        })?;
        let mut out = KeySet::default();
        let total = set.keys.len();
        for jwk in &set.keys {
            let Some(alg) = algorithm_of(jwk) else {
                tracing::debug!(kid = ?jwk.common.key_id, "JWKS key skipped (not a supported signing key)");
                continue;
            };
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, error = %e, "JWKS key skipped");
                    continue;
                }
            };
            let vk = VerifyKey { alg, key };
            match &jwk.common.key_id {
                Some(kid) => {
                    out.by_kid.insert(kid.clone(), vk);
                }
                None => out.anonymous = Some(vk),
            }
        }
        if total == 1 && out.anonymous.is_none() {
            // One key: tokens that name no kid mean it.
            out.anonymous = out.by_kid.values().next().cloned();
        }
        if out.is_empty() {
            return Err(KeyError::Invalid {
                var,
                reason: format!(
                    "none of its {total} keys is a supported signing key (RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
                ),
            });
        }
        Ok(out)
    }

    /// The HS256 development secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            by_kid: HashMap::new(),
            anonymous: Some(VerifyKey {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            }),
        }
    }
}

/// The algorithm a JWKS key verifies: its `alg` when it has one (and that
/// matches its type), else implied by the type and curve. `None` for keys
/// that are not asymmetric signing keys.
pub fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Symmetric (`oct`) keys never verify provider tokens.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(ka) => {
            use jsonwebtoken::jwk::KeyAlgorithm as K;
            let alg = match ka {
                K::RS256 => Algorithm::RS256,
                K::RS384 => Algorithm::RS384,
                K::RS512 => Algorithm::RS512,
                K::PS256 => Algorithm::PS256,
                K::PS384 => Algorithm::PS384,
                K::PS512 => Algorithm::PS512,
                K::ES256 => Algorithm::ES256,
                K::ES384 => Algorithm::ES384,
                K::EdDSA => Algorithm::EdDSA,
                // HMAC and encryption algorithms never verify provider tokens.
                _ => return None,
            };
            let fits = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => matches!(
                    alg,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                _ => alg == implied,
            };
            fits.then_some(alg)
        }
    }
}

/// The keys of one source, refreshed as the module docs say.
pub struct KeyStore {
    current: RwLock<Arc<KeySet>>,
    source: Source,
    /// When keys were last read because of an unknown kid (or at all);
    /// the lock also makes concurrent unknown-kid requests share one read.
    last_read: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
}

enum Source {
    Url {
        url: String,
        client: reqwest::Client,
    },
    File(PathBuf),
    Fixed,
}

impl KeyStore {
    /// The store of `config`'s source, with its first read done (a URL that
    /// does not answer yet leaves the store empty; it is read again at the
    /// first token and every `refresh`).
    pub async fn open(config: &AuthConfig) -> Result<Arc<Self>, KeyError> {
        let (source, initial) = match &config.keys {
            KeySource::Secret(s) => (Source::Fixed, KeySet::hs256(s.expose_secret().as_bytes())),
            KeySource::JwksFile(path) => {
                let source = Source::File(path.clone());
                let set = source.read().await?;
                (source, set)
            }
            KeySource::JwksUrl(url) => {
                let source = Source::Url {
                    url: url.clone(),
                    client: http_client(config)?,
                };
                let set = match source.read().await {
                    Ok(set) => set,
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS not readable yet; tokens are refused until it is");
                        KeySet::default()
                    }
                };
                (source, set)
            }
        };
        tracing::info!(keys = initial.len(), "token verification keys loaded");
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(initial)),
            source,
            // The first unknown kid reads at once; later ones wait out
            // `min_refresh` after the previous read.
            last_read: tokio::sync::Mutex::new(None),
            min_refresh: config.min_refresh,
        }))
    }

    /// The keys known now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key for `kid`, re-reading the source (rate-limited) when it is unknown.
    pub async fn key_for(&self, kid: Option<&str>) -> Option<VerifyKey> {
        if let Some(k) = self.current().find(kid) {
            return Some(k.clone());
        }
        if matches!(self.source, Source::Fixed) {
            return None;
        }
        let mut last = self.last_read.lock().await;
        // Another request may have read the keys while this one waited.
        if let Some(k) = self.current().find(kid) {
            return Some(k.clone());
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return None;
        }
        *last = Some(Instant::now());
        self.reload().await;
        self.current().find(kid).cloned()
    }

    /// Reads the source now, keeping the old keys when that fails.
    pub async fn reload(&self) {
        match self.source.read().await {
            Ok(set) => {
                tracing::info!(keys = set.len(), "token verification keys refreshed");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            }
            Err(e) => tracing::warn!(error = %e, "token verification keys not refreshed"),
        }
    }

    /// Re-reads the keys every `every` while the store is in use.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        if matches!(self.source, Source::Fixed) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                store.reload().await;
            }
        });
    }
}

impl Source {
    async fn read(&self) -> Result<KeySet, KeyError> {
        match self {
            Source::Fixed => Ok(KeySet::default()),
            Source::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|source| KeyError::File {
                        path: path.clone(),
                        source,
                    })?;
                KeySet::from_jwks(&bytes, "WARDLINE_JWKS_FILE")
            }
            Source::Url { url, client } => {
                let mut resp = client
                    .get(url)
                    .header("accept", "application/json")
                    .send()
                    .await
                    .map_err(|e| KeyError::Fetch(format!("GET {url}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(KeyError::Fetch(format!(
                        "GET {url}: HTTP {}",
                        resp.status()
                    )));
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| KeyError::Fetch(format!("GET {url}: {e}")))?
                {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_JWKS_BYTES {
                        return Err(KeyError::Fetch(format!(
                            "GET {url}: more than {MAX_JWKS_BYTES} bytes"
                        )));
                    }
                }
                KeySet::from_jwks(&body, "WARDLINE_JWKS_URL")
            }
        }
    }
}

fn http_client(config: &AuthConfig) -> Result<reqwest::Client, KeyError> {
    // reqwest uses rustls without a built-in provider (see the workspace
    // Cargo.toml): install ring's once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(ca) = &config.jwks_ca_file {
        let pem = std::fs::read(ca).map_err(|e| KeyError::Ca(format!("{}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| KeyError::Ca(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| KeyError::Fetch(e.to_string()))
}
