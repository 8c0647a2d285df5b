//! Bearer-token authentication and role checks.
//!
//! Callers present a signed JWT (`authorization: Bearer <jwt>`) whose claims
//! say who they are (`sub`), which tenant they act for (`tenant`, or `*` for
//! the vendor's all-tenants scope) and their roles. The interceptor verifies
//! the token and puts a [`Caller`] into the request's extensions; handlers
//! ask the caller for the tenant to scope every query by, so a request field
//! alone can never widen access.
//!
//! Tokens come from the hospital's identity provider and are verified
//! against its published keys ([`keys`]: a JWKS URL or file), with the
//! issuer, this service's audience and a maximum lifetime required
//! ([`settings`]); the provider's claims become a [`Caller`] through a
//! configured mapping (roles claim, role map, tenant claim). Development
//! tokens are signed by the development issuer (ES256, same verification
//! path) or, for tests, HS256 with a shared secret ([`signing`]).
//!
//! Scope and role are tied together: a token names one tenant (a slug) or
//! every tenant (`*`), and only the vendor's roles ([`VENDOR_ROLES`]) may
//! name every tenant; such a token picks its tenant per request through
//! `x-tenant-id`, which must be a tenant slug. `docs/access-model.md` has
//! the whole model.
//!
//! What must hold: a token's contents are never logged; a refusal is
//! UNAUTHENTICATED with a coarse reason (expired, wrong audience ...) that
//! helps an operator fix a misconfigured provider without echoing claims.

pub mod keys;
pub mod settings;
pub mod signing;

use std::sync::Arc;
use std::task::{Context, Poll};

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::{Request, Status};

pub use settings::{AuthConfig, ClaimMapping, KeySource};
pub use signing::{Claims, Signer, mint};

/// Metadata key a vendor-scoped caller uses to name the tenant it acts on.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// The `tenant` claim of a vendor token that covers every tenant.
pub const ALL_TENANTS: &str = "*";
/// The roles an all-tenants (`"*"`) token may carry: the vendor's own
/// staff. Operators (`vendor_admin`) and the vendor's finance staff
/// (`billing`, who read contracts and usage and issue invoices for every
/// hospital) work across tenants; everyone who works tickets or
/// administers a hospital holds a token pinned to that hospital, so a
/// desk role never reaches another tenant by naming it in `x-tenant-id`.
pub const VENDOR_ROLES: &[Role] = &[Role::VendorAdmin, Role::Billing];

/// Roles a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Role {
    /// Operates the platform for every tenant.
    VendorAdmin,
    /// Administers one tenant.
    TenantAdmin,
    /// Works tickets.
    Analyst,
    /// Reports problems (clinicians, portals, integrations).
    Requester,
    /// Reads contracts, usage and invoices.
    Billing,
}

/// The verified identity of a caller, available to every handler.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token subject.
    pub subject: String,
    /// The tenant the request acts on: the token's tenant, or for an
    /// all-tenants token the `x-tenant-id` metadata entry (if any).
    pub tenant: Option<String>,
    /// True for all-tenants tokens.
    pub all_tenants: bool,
    /// Roles granted.
    pub roles: Vec<Role>,
    /// The person's email as the identity provider states it
    /// (`WARDLINE_JWT_EMAIL_CLAIM`, `email`), if the token carries one.
    pub email: Option<String>,
    /// The person's phone as the identity provider states it
    /// (`WARDLINE_JWT_PHONE_CLAIM`, `phone_number`), E.164, if the token
    /// carries one.
    pub phone: Option<String>,
}

impl Caller {
    /// True when the caller holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }

    /// PERMISSION_DENIED unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Status> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "this call needs one of the roles {roles:?}"
            )))
        }
    }

    /// True for an all-tenants token with `role`: the vendor acting on
    /// every tenant (creating tenants, listing them all). A `vendor_admin`
    /// pinned to one tenant is that tenant's administrator, no more.
    pub fn is_vendor(&self, role: Role) -> bool {
        self.all_tenants && self.roles.contains(&role)
    }

    /// PERMISSION_DENIED unless [`Caller::is_vendor`] holds for `role`.
    pub fn require_vendor(&self, role: Role) -> Result<(), Status> {
        if self.is_vendor(role) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "this call acts on every tenant: it needs an all-tenants ({ALL_TENANTS}) token with the role {role:?}"
            )))
        }
    }

    /// The tenant every query of this request is scoped by.
    pub fn tenant(&self) -> Result<&str, Status> {
        self.tenant.as_deref().ok_or_else(|| {
            Status::invalid_argument(format!(
                "{TENANT_HEADER}: an all-tenants token must name the tenant in the {TENANT_HEADER} metadata entry"
            ))
        })
    }

    /// The caller from a request's extensions (put there by the interceptor).
    pub fn from_request<T>(req: &Request<T>) -> Result<Caller, Status> {
        req.extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))
    }
}

/// Verifies tokens; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    config: AuthConfig,
    keys: Arc<keys::KeyStore>,
    /// Mutating RPCs per tenant ([`AuthConfig::write_rate`]).
    writes: crate::quota::TenantQuota,
}

/// True for an RPC that changes something: every method but the reads
/// (`Get*`, `List*`, `Watch*`, `Search*`, `Preview*`, `Check*`). `path` is
/// the gRPC path, `/<package>.<Service>/<Method>`.
pub fn is_mutating(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    !["Get", "List", "Watch", "Search", "Preview", "Check"]
        .iter()
        .any(|read| method.starts_with(read))
}

fn refused(reason: &str) -> Status {
    Status::unauthenticated(format!("invalid bearer token: {reason}"))
}

/// A coarse reason for a jsonwebtoken error (never the token's contents).
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience (not for this service)".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "its algorithm is not its key's".into()
        }
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
        _ => "malformed".into(),
    }
}

/// The Wardline roles the token's roles claim maps to (an array, or a
/// space-separated string as OAuth scopes are).
fn claimed_roles(claims: &Value, map: &ClaimMapping) -> Vec<Role> {
    match claim(claims, &map.roles) {
        Some(Value::Array(values)) => map.roles(values.iter().filter_map(Value::as_str)),
        Some(Value::String(s)) => map.roles(s.split_whitespace()),
        _ => Vec::new(),
    }
}

/// The `x-tenant-id` header, when given. It becomes a query scope, a quota
/// key and a metric label: only a tenant slug is ever taken from it.
fn tenant_header_slug(header: Option<&str>) -> Result<Option<&str>, Status> {
    let header = header.filter(|t| !t.is_empty());
    if let Some(h) = header
        && !crate::validate::is_slug(h, 2, 32)
    {
        return Err(Status::invalid_argument(format!(
            "{TENANT_HEADER}: not a tenant slug (2-32 of [a-z0-9-], starting with a letter)"
        )));
    }
    Ok(header)
}

/// The roles of a token pinned to one tenant. A vendor_admin there is that
/// tenant's admin, no more: vendor powers (creating tenants, contracts,
/// invoices; SLA targets; every tenant's lists) need an all-tenants token.
/// Mapped here once, so no handler can forget it (docs/authorization.md).
fn pinned_to_tenant(roles: Vec<Role>) -> Vec<Role> {
    let mut pinned: Vec<Role> = roles
        .into_iter()
        .map(|r| match r {
            Role::VendorAdmin => Role::TenantAdmin,
            other => other,
        })
        .collect();
    pinned.sort_by_key(|r| *r as u8);
    pinned.dedup();
    pinned
}

/// The value at a dotted `path` of `claims` (a top-level claim whose name
/// contains dots, such as a URL-named claim, is found first).
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

impl Authenticator {
    /// A verifier for `config`, with its keys read once (a JWKS URL that
    /// does not answer yet is read again at the first token) and refreshed
    /// in the background while the authenticator lives.
    pub async fn new(config: AuthConfig) -> Result<Self, keys::KeyError> {
        let keys = keys::KeyStore::open(&config).await?;
        keys.spawn_refresh(config.refresh);
        let writes =
            crate::quota::TenantQuota::new(config.write_rate.0, config.write_rate.1, "changes");
        Ok(Self {
            inner: Arc::new(AuthInner {
                config,
                keys,
                writes,
            }),
        })
    }

    /// An HS256 verifier for `secret` and `audience` (unit tests).
    pub async fn hs256(secret: &secrecy::SecretString, audience: &str) -> Self {
        Self::new(AuthConfig::hs256(secret, audience))
            .await
            .expect("a secret needs no reading")
    }

    /// Verifies `token` and builds the caller, taking the tenant from
    /// `tenant_header` for all-tenants tokens.
    pub async fn verify(&self, token: &str, tenant_header: Option<&str>) -> Result<Caller, Status> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("malformed"))?;
        let key = self
            .inner
            .keys
            .key_for(header.kid.as_deref())
            .await
            .ok_or_else(|| refused("unknown signing key (kid)"))?;
        self.verify_with(&key, token, tenant_header)
    }

    fn verify_with(
        &self,
        key: &keys::VerifyKey,
        token: &str,
        tenant_header: Option<&str>,
    ) -> Result<Caller, Status> {
        let cfg = &self.inner.config;
        let claims = self.decode_claims(key, token)?;
        let map = &cfg.mapping;
        let subject = claim(&claims, &map.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused(&format!("missing claim {}", map.subject)))?
            .to_owned();
        let token_tenant = claim(&claims, &map.tenant)
            .and_then(Value::as_str)
            .ok_or_else(|| refused(&format!("missing claim {}", map.tenant)))?;
        if token_tenant != ALL_TENANTS && !crate::validate::is_slug(token_tenant, 2, 32) {
            return Err(refused(&format!(
                "claim {} is not a tenant slug",
                map.tenant
            )));
        }
        let roles = claimed_roles(&claims, map);
        let all = token_tenant == ALL_TENANTS;
        // A token naming every tenant is the vendor's: a desk or hospital
        // role on it is a provider misconfiguration, refused as a whole
        // rather than quietly narrowed to its vendor roles.
        if all && roles.iter().any(|r| !VENDOR_ROLES.contains(r)) {
            return Err(refused(&format!(
                "an all-tenants ({ALL_TENANTS}) token carries only the vendor roles (vendor_admin, billing)"
            )));
        }
        let header = tenant_header_slug(tenant_header)?;
        let roles = if all { roles } else { pinned_to_tenant(roles) };
        let tenant = if all {
            header.map(str::to_owned)
        } else {
            if let Some(h) = header
                && h != token_tenant
            {
                return Err(Status::permission_denied(format!(
                    "{TENANT_HEADER}: the token is not valid for another tenant"
                )));
            }
            Some(token_tenant.to_owned())
        };
        if roles.is_empty() {
            return Err(Status::permission_denied(
                "the token carries no Wardline role (see WARDLINE_JWT_ROLES_CLAIM and WARDLINE_JWT_ROLE_MAP)",
            ));
        }
        let email = claim(&claims, &map.email)
            .and_then(Value::as_str)
            .filter(|e| crate::validate::is_email(e))
            .map(str::to_owned);
        let phone = claim(&claims, &map.phone)
            .and_then(Value::as_str)
            .filter(|p| crate::validate::is_e164(p))
            .map(str::to_owned);
        Ok(Caller {
            subject,
            tenant,
            all_tenants: all,
            roles,
            email,
            phone,
        })
    }

    /// The token's claims, once its signature, issuer, audience and times
    /// hold: signed with `key`'s algorithm, not expired nor before `nbf`,
    /// issued in the past, and living at most `WARDLINE_JWT_MAX_LIFETIME_SECS`.
    fn decode_claims(&self, key: &keys::VerifyKey, token: &str) -> Result<Value, Status> {
        let cfg = &self.inner.config;
        // The algorithm is the key's: a header naming another is refused.
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&cfg.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| refused(&reason(e.kind())))?
            .claims;
        let int = |name: &str| claims.get(name).and_then(Value::as_u64);
        let exp = int("exp").ok_or_else(|| refused("missing claim exp"))?;
        let iat = int("iat").ok_or_else(|| refused("missing claim iat"))?;
        if exp.saturating_sub(iat) > cfg.max_lifetime.as_secs() {
            return Err(refused(
                "its lifetime (exp - iat) is above WARDLINE_JWT_MAX_LIFETIME_SECS",
            ));
        }
        if iat > signing::now() + cfg.leeway.as_secs() {
            return Err(refused("issued in the future (iat)"));
        }
        Ok(claims)
    }

    /// Verifies the bearer token of a request's headers.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let header = headers
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?
            .trim();
        let tenant = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok());
        self.verify(token, tenant).await
    }

    /// `service` behind this authenticator.
    pub fn layer<S>(&self, service: S) -> AuthService<S> {
        AuthService {
            inner: service,
            auth: self.clone(),
        }
    }
}

/// A gRPC service behind token verification: the [`Caller`] is put into
/// the request's extensions, or the call is answered UNAUTHENTICATED (or
/// PERMISSION_DENIED) without reaching the service. Asynchronous (unlike a
/// tonic interceptor) so an unknown `kid` can re-read the provider's keys.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone is not ready; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.authenticate(req.headers()).await {
                Ok(caller) => {
                    // One noisy tenant must not take every service's write
                    // capacity: the per-tenant quota of mutating RPCs.
                    if is_mutating(req.uri().path()) {
                        let key = caller.tenant.as_deref().unwrap_or(ALL_TENANTS);
                        if let Err(status) = auth.inner.writes.check(key) {
                            return Ok(status.into_http());
                        }
                    }
                    let origin = crate::audit::Origin::of(&req);
                    req.extensions_mut().insert(caller);
                    crate::audit::scope(origin, inner.call(req)).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for AuthService<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    #[test]
    fn reads_are_told_from_changes_by_method() {
        for read in [
            "/wardline.intake.v1.TicketService/GetTicket",
            "/wardline.intake.v1.TicketService/ListNotes",
            "/wardline.routing.v1.QueueService/GetQueue",
        ] {
            assert!(!is_mutating(read), "{read}");
        }
        for write in [
            "/wardline.intake.v1.TicketService/CreateTicket",
            "/wardline.intake.v1.TicketService/AddNote",
            "/wardline.common.v1.EventDeadLetterService/RetryDeadLetter",
        ] {
            assert!(is_mutating(write), "{write}");
        }
    }
    use secrecy::SecretString;
    use std::time::Duration;

    fn secret() -> SecretString {
        SecretString::from("a-test-secret-that-is-long-enough-0123456789")
    }

    async fn hs() -> Authenticator {
        Authenticator::hs256(&secret(), "wardline-intake").await
    }

    fn token(tenant: &str, roles: &[Role]) -> String {
        mint(
            &secret(),
            "rn.jones",
            tenant,
            roles,
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_tenant_token_is_scoped_to_its_tenant() {
        let auth = hs().await;
        let t = token("stmarys", &[Role::Requester]);
        let c = auth.verify(&t, None).await.unwrap();
        assert_eq!(c.tenant().unwrap(), "stmarys");
        assert!(!c.all_tenants);
        assert_eq!(
            auth.verify(&t, Some("stmarys"))
                .await
                .unwrap()
                .tenant
                .as_deref(),
            Some("stmarys")
        );
        let e = auth.verify(&t, Some("other")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(c.require(&[Role::Analyst]).is_err());
        assert!(c.require(&[Role::Analyst, Role::Requester]).is_ok());
    }

    #[tokio::test]
    async fn a_pinned_vendor_admin_is_that_tenants_admin() {
        let auth = hs().await;
        let pinned = token("stmarys", &[Role::VendorAdmin, Role::TenantAdmin]);
        let c = auth.verify(&pinned, None).await.unwrap();
        assert_eq!(c.roles, [Role::TenantAdmin]);
        assert!(c.require(&[Role::VendorAdmin]).is_err());
        let all = token(ALL_TENANTS, &[Role::VendorAdmin]);
        let c = auth.verify(&all, Some("stmarys")).await.unwrap();
        assert_eq!(c.roles, [Role::VendorAdmin]);
    }

    #[tokio::test]
    async fn a_vendor_token_names_the_tenant_in_metadata() {
        let auth = hs().await;
        let t = token(ALL_TENANTS, &[Role::VendorAdmin]);
        let c = auth.verify(&t, Some("stmarys")).await.unwrap();
        assert_eq!(c.tenant().unwrap(), "stmarys");
        let c = auth.verify(&t, None).await.unwrap();
        let e = c.tenant().unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(TENANT_HEADER));
    }

    #[tokio::test]
    async fn only_vendor_roles_may_name_every_tenant() {
        let auth = hs().await;
        for role in [Role::Analyst, Role::Requester, Role::TenantAdmin] {
            let t = token(ALL_TENANTS, &[Role::VendorAdmin, role]);
            let e = auth.verify(&t, Some("stmarys")).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{role:?}");
            assert!(e.message().contains("vendor roles"), "{e:?}");
        }
        let finance = token(ALL_TENANTS, &[Role::Billing]);
        let c = auth.verify(&finance, Some("stmarys")).await.unwrap();
        assert!(c.is_vendor(Role::Billing) && !c.is_vendor(Role::VendorAdmin));
    }

    #[tokio::test]
    async fn the_tenant_claim_must_be_a_slug_and_so_must_the_header() {
        let auth = hs().await;
        for claim in ["", "St.Marys", "stmarys.>", "_vendor"] {
            let e = auth
                .verify(&token(claim, &[Role::Requester]), None)
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{claim:?}");
        }
        let vendor = token(ALL_TENANTS, &[Role::VendorAdmin]);
        for header in ["st.marys.>", "_all", "_vendor", "*", "STMARYS"] {
            let e = auth.verify(&vendor, Some(header)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{header:?}");
            assert!(e.message().starts_with(TENANT_HEADER), "{e:?}");
        }
        // A pinned token naming its own tenant in a malformed way is refused the same.
        let pinned = token("stmarys", &[Role::TenantAdmin]);
        let e = auth.verify(&pinned, Some("x y")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_pinned_vendor_admin_is_not_the_vendor() {
        let caller = |all| Caller {
            subject: "ops".into(),
            tenant: Some("stmarys".into()),
            all_tenants: all,
            roles: vec![Role::VendorAdmin],
            email: None,
            phone: None,
        };
        assert!(caller(true).require_vendor(Role::VendorAdmin).is_ok());
        let e = caller(false).require_vendor(Role::VendorAdmin).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }

    #[tokio::test]
    async fn bad_tokens_are_unauthenticated() {
        let auth = hs().await;
        let other = SecretString::from("another-secret-that-is-long-enough-0123456789");
        let t = mint(
            &other,
            "x",
            "stmarys",
            &[Role::Analyst],
            Duration::from_secs(60),
        )
        .unwrap();
        for bad in [t.as_str(), "garbage"] {
            assert_eq!(
                auth.verify(bad, None).await.unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
        }
        // Another service's audience.
        let billing = Authenticator::hs256(&secret(), "wardline-elsewhere").await;
        let e = billing
            .verify(&token("stmarys", &[Role::Analyst]), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("audience"), "{e:?}");
    }

    fn es256() -> (Signer, Authenticator) {
        let signer = Signer::es256_pem(Signer::generate_es256_pem().unwrap().as_bytes()).unwrap();
        let dir = std::env::temp_dir().join(format!("wardline-jwks-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        std::fs::write(&file, serde_json::to_vec(&signer.jwks()).unwrap()).unwrap();
        let mut cfg = AuthConfig::hs256(&secret(), "wardline-intake");
        cfg.keys = KeySource::JwksFile(file);
        cfg.max_lifetime = Duration::from_secs(3600);
        let rt = tokio::runtime::Handle::current();
        let auth = tokio::task::block_in_place(|| rt.block_on(Authenticator::new(cfg))).unwrap();
        (signer, auth)
    }

    fn claims(ttl: u64) -> Claims {
        Claims::new(
            "rn.jones",
            "stmarys",
            &[Role::Analyst],
            Duration::from_secs(ttl),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn es256_tokens_verify_against_a_jwks_with_issuer_audience_and_lifetime() {
        let (signer, auth) = es256();
        let ok = signer.sign(&claims(600)).unwrap();
        assert_eq!(auth.verify(&ok, None).await.unwrap().subject, "rn.jones");

        let too_long = signer.sign(&claims(7200)).unwrap();
        let e = auth.verify(&too_long, None).await.unwrap_err();
        assert!(e.message().contains("lifetime"), "{e:?}");

        let mut c = claims(600);
        c.iss = "https://evil.example.org".into();
        let e = auth
            .verify(&signer.sign(&c).unwrap(), None)
            .await
            .unwrap_err();
        assert!(e.message().contains("issuer"), "{e:?}");

        let mut c = claims(600);
        c.exp = c.iat - 120;
        c.iat -= 180;
        let e = auth
            .verify(&signer.sign(&c).unwrap(), None)
            .await
            .unwrap_err();
        assert!(e.message().contains("expired"), "{e:?}");

        // alg confusion: an HS256 token keyed with the public key's bytes,
        // naming the ES256 key's kid.
        let Signer::Es256 { kid, jwk, .. } = &signer else {
            unreachable!()
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let public = serde_json::to_vec(&**jwk).unwrap();
        let forged =
            jsonwebtoken::encode(&header, &claims(600), &EncodingKey::from_secret(&public))
                .unwrap();
        let e = auth.verify(&forged, None).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("algorithm"), "{e:?}");

        // A key the JWKS does not have.
        let stranger = Signer::es256_pem(Signer::generate_es256_pem().unwrap().as_bytes()).unwrap();
        let e = auth
            .verify(&stranger.sign(&claims(600)).unwrap(), None)
            .await
            .unwrap_err();
        assert!(e.message().contains("kid"), "{e:?}");
    }

    #[test]
    fn claims_are_found_by_dotted_path() {
        let v = serde_json::json!({
            "realm_access": {"roles": ["analyst"]},
            "https://wardline/tenant": "stmarys",
        });
        assert_eq!(
            claim(&v, "realm_access.roles"),
            Some(&serde_json::json!(["analyst"]))
        );
        assert_eq!(
            claim(&v, "https://wardline/tenant"),
            Some(&serde_json::json!("stmarys"))
        );
        assert_eq!(claim(&v, "realm_access.groups"), None);
    }

    #[test]
    fn jwks_keys_take_their_algorithm_from_the_key() {
        let jwks = serde_json::json!({"keys": [
            // Entra ID publishes RSA keys without "alg".
            {"kty": "RSA", "use": "sig", "kid": "entra", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // An encryption key and an HMAC key are never verification keys.
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            // An EC key claiming RS256 is inconsistent: skipped.
            {"kty": "EC", "crv": "P-256", "kid": "odd", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let set = keys::KeySet::from_jwks(&serde_json::to_vec(&jwks).unwrap(), "T").unwrap();
        assert_eq!(set.find(Some("entra")).unwrap().alg, Algorithm::RS256);
        assert_eq!(set.find(Some("ec")).unwrap().alg, Algorithm::ES256);
        for skipped in ["enc", "hmac", "odd"] {
            assert!(set.find(Some(skipped)).is_none(), "{skipped}");
        }
        let e = keys::KeySet::from_jwks(br#"{"keys":[{"kty":"oct","k":"eA"}]}"#, "T");
        assert!(e.is_err());
    }
}
