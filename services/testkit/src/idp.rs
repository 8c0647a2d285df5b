//! A stand-in for a hospital's identity provider: real ES256 and RS256 keys
//! generated in the test, their JWKS served over HTTP on a loopback port
//! (as Entra ID or Keycloak publish theirs), and tokens signed with them.
//! Keys can be added while a service runs (rotation), and the server
//! counts how often its JWKS was fetched (rate-limit checks).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use wardline_kit::auth::signing::Signer;

/// The issuer URL the test provider signs as.
pub const IDP_ISSUER: &str = "https://idp.test/realms/wardline";

struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    /// The public key as PEM (RSA only), for `alg` confusion tests.
    public_pem: Option<String>,
}

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Key>>,
    published: Mutex<Vec<Jwk>>,
    fetches: AtomicUsize,
}

/// The test identity provider (stops with the test's runtime).
pub struct TestIdp {
    addr: SocketAddr,
    state: Arc<State>,
}

impl TestIdp {
    /// Serves an (empty) JWKS on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let app = axum::Router::new()
            .route(
                "/certs",
                axum::routing::get(
                    |axum::extract::State(s): axum::extract::State<Arc<State>>| async move {
                        s.fetches.fetch_add(1, Ordering::SeqCst);
                        let set = JwkSet {
                            keys: s.published.lock().expect("jwks lock").clone(),
                        };
                        (
                            [("content-type", "application/json")],
                            serde_json::to_string(&set).expect("a JWKS serialises"),
                        )
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:<port>/certs`.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/certs", self.addr)
    }

    /// The variables that make a service trust this provider (audiences
    /// stay the service's default, `wardline-<service>`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("WARDLINE_JWKS_URL".into(), self.jwks_url()),
            ("WARDLINE_JWT_ISSUER".into(), IDP_ISSUER.into()),
        ]
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn add(&self, alg: Algorithm, pem: &[u8], public_pem: Option<String>) -> String {
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            _ => EncodingKey::from_ec_pem(pem),
        }
        .expect("a generated key loads");
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("a public JWK");
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .expect("a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        if alg == Algorithm::RS256 {
            // As Entra ID publishes them: no `alg` on the key.
            jwk.common.key_algorithm = None;
        }
        self.state
            .published
            .lock()
            .expect("jwks lock")
            .push(jwk.clone());
        self.state.keys.lock().expect("keys lock").push(Key {
            kid: kid.clone(),
            alg,
            encoding,
            jwk,
            public_pem,
        });
        kid
    }

    /// Generates and publishes an ES256 key; returns its kid.
    pub fn add_es256(&self) -> String {
        let pem = Signer::generate_es256_pem().expect("an ES256 key");
        self.add(Algorithm::ES256, pem.as_bytes(), None)
    }

    /// Generates and publishes an RS256 (2048-bit) key; returns its kid.
    pub fn add_rs256(&self) -> String {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM");
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public PEM");
        self.add(Algorithm::RS256, pem.as_bytes(), Some(public))
    }

    /// The public JWK of `kid`.
    pub fn jwk(&self, kid: &str) -> Jwk {
        self.with_key(kid, |k| k.jwk.clone())
    }

    fn with_key<T>(&self, kid: &str, f: impl FnOnce(&Key) -> T) -> T {
        let keys = self.state.keys.lock().expect("keys lock");
        f(keys
            .iter()
            .find(|k| k.kid == kid)
            .expect("a key of this provider"))
    }

    /// Signs `claims` (any JSON) with key `kid`, as the provider would.
    pub fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        self.with_key(kid, |k| {
            let mut header = Header::new(k.alg);
            header.kid = Some(k.kid.clone());
            jsonwebtoken::encode(&header, claims, &k.encoding).expect("a token")
        })
    }

    /// The `alg` confusion forgery: an HS256 token whose HMAC key is the
    /// RSA key `kid`'s public PEM (which anyone can fetch), naming that kid.
    pub fn forge_hs256_with_public_key(&self, kid: &str, claims: &serde_json::Value) -> String {
        self.with_key(kid, |k| {
            let public = k.public_pem.as_ref().expect("an RSA key");
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(k.kid.clone());
            jsonwebtoken::encode(
                &header,
                claims,
                &EncodingKey::from_secret(public.as_bytes()),
            )
            .expect("a token")
        })
    }
}

/// Claims as a provider issues them for `service`, valid `ttl_secs`, with
/// Wardline's default claim names (`tenant`, `roles`).
pub fn provider_claims(
    service: &str,
    subject: &str,
    tenant: &str,
    roles: &[&str],
    ttl_secs: u64,
) -> serde_json::Value {
    let now = wardline_kit::auth::signing::now();
    serde_json::json!({
        "iss": IDP_ISSUER,
        "aud": format!("wardline-{service}"),
        "sub": subject,
        "tenant": tenant,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_secs,
    })
}
