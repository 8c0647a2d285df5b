//! Bearer-token authentication and role checks.
//!
//! Callers present a signed JWT (`authorization: Bearer <jwt>`) whose claims
//! say who they are (`sub`), which tenant they act for (`tenant`, or `*` for
//! the vendor's all-tenants scope) and their roles. The interceptor verifies
//! the token and puts a [`Caller`] into the request's extensions; handlers
//! ask the caller for the tenant to scope every query by, so a request field
//! alone can never widen access.
//!
//! Development tokens are HS256 with a shared secret (`WARDLINE_JWT_SECRET`);
//! `wardctl token` mints them.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

/// Metadata key a vendor-scoped caller uses to name the tenant it acts on.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// The `tenant` claim of a vendor token that covers every tenant.
pub const ALL_TENANTS: &str = "*";
/// Audience every Wardline token must carry.
pub const AUDIENCE: &str = "wardline";

/// Roles a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Claims of a Wardline token.
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
    /// Audience (always [`AUDIENCE`]).
    pub aud: String,
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
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// An HS256 verifier for `secret`.
    pub fn hs256(secret: &SecretString) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 30;
        Self {
            inner: Arc::new(AuthInner {
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                validation,
            }),
        }
    }

    /// Verifies `token` and builds the caller, taking the tenant from `tenant_header` for all-tenants tokens.
    pub fn verify(&self, token: &str, tenant_header: Option<&str>) -> Result<Caller, Status> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.inner.key, &self.inner.validation)
            .map_err(|e| Status::unauthenticated(format!("invalid bearer token: {e}")))?;
        let claims = data.claims;
        let all = claims.tenant == ALL_TENANTS;
        let tenant = if all {
            tenant_header.filter(|t| !t.is_empty()).map(str::to_owned)
        } else {
            if let Some(h) = tenant_header.filter(|t| !t.is_empty())
                && h != claims.tenant
            {
                return Err(Status::permission_denied(format!(
                    "{TENANT_HEADER}: the token is not valid for another tenant"
                )));
            }
            Some(claims.tenant)
        };
        if claims.roles.is_empty() {
            return Err(Status::permission_denied("the token carries no roles"));
        }
        Ok(Caller {
            subject: claims.sub,
            tenant,
            all_tenants: all,
            roles: claims.roles,
        })
    }

    /// A tonic interceptor that verifies the bearer token of every request.
    pub fn interceptor(&self) -> AuthInterceptor {
        AuthInterceptor(self.clone())
    }

    /// Verifies the request's bearer token and puts the [`Caller`] into
    /// its extensions.
    fn authenticate(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?
            .trim()
            .to_owned();
        let tenant = req
            .metadata()
            .get(TENANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let caller = self.verify(&token, tenant.as_deref())?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The interceptor every authenticated gRPC service sits behind.
#[derive(Clone)]
pub struct AuthInterceptor(Authenticator);

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        self.0.authenticate(req)
    }
}

/// Mints an HS256 token (development, tests, `wardctl token`).
pub fn mint(
    secret: &SecretString,
    subject: &str,
    tenant: &str,
    roles: &[Role],
    ttl: std::time::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        sub: subject.to_owned(),
        tenant: tenant.to_owned(),
        roles: roles.to_vec(),
        exp: now + ttl.as_secs(),
        iat: now,
        aud: AUDIENCE.to_owned(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secret() -> SecretString {
        SecretString::from("a-test-secret-that-is-long-enough-0123456789")
    }

    #[test]
    fn a_tenant_token_is_scoped_to_its_tenant() {
        let auth = Authenticator::hs256(&secret());
        let t = mint(
            &secret(),
            "rn.jones",
            "stmarys",
            &[Role::Requester],
            Duration::from_secs(60),
        )
        .unwrap();
        let c = auth.verify(&t, None).unwrap();
        assert_eq!(c.tenant().unwrap(), "stmarys");
        assert!(!c.all_tenants);
        assert_eq!(
            auth.verify(&t, Some("stmarys")).unwrap().tenant.as_deref(),
            Some("stmarys")
        );
        let e = auth.verify(&t, Some("other")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(c.require(&[Role::Analyst]).is_err());
        assert!(c.require(&[Role::Analyst, Role::Requester]).is_ok());
    }

    #[test]
    fn a_vendor_token_names_the_tenant_in_metadata() {
        let auth = Authenticator::hs256(&secret());
        let t = mint(
            &secret(),
            "ops",
            ALL_TENANTS,
            &[Role::VendorAdmin],
            Duration::from_secs(60),
        )
        .unwrap();
        let c = auth.verify(&t, Some("stmarys")).unwrap();
        assert_eq!(c.tenant().unwrap(), "stmarys");
        let c = auth.verify(&t, None).unwrap();
        let e = c.tenant().unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(TENANT_HEADER));
    }

    #[test]
    fn bad_tokens_are_unauthenticated() {
        let auth = Authenticator::hs256(&secret());
        let other = SecretString::from("another-secret-that-is-long-enough-0123456789");
        let t = mint(
            &other,
            "x",
            "stmarys",
            &[Role::Analyst],
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            auth.verify(&t, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            auth.verify("garbage", None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
