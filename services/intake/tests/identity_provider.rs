//! Intake trusts the hospital's identity provider: tokens signed with the
//! keys the provider publishes (ES256 and RS256, fetched from its JWKS URL)
//! are accepted with the provider's claims mapped to Wardline roles
//! (Keycloak style: `realm_access.roles` through a role map); a rotated
//! key is picked up at its first token; and every token that is not for
//! intake from that issuer, for at most the allowed lifetime, with the
//! key's own algorithm, is refused UNAUTHENTICATED through a real gRPC call.

mod common;

use base64::Engine as _;
use tonic::Code;
use wardline_proto::intake::ListTicketsRequest;
use wardline_testkit::{IDP_ISSUER, TestDb, TestIdp, TestNats};

/// Claims as Keycloak issues them: roles under `realm_access.roles`.
fn keycloak(aud: &str, roles: &[&str], iat: u64, exp: u64) -> serde_json::Value {
    serde_json::json!({
        "iss": IDP_ISSUER,
        "aud": [aud, "account"],
        "sub": "f3c1-rn-jones",
        "tenant": "stmarys",
        "realm_access": {"roles": roles},
        "iat": iat,
        "exp": exp,
    })
}

fn now() -> u64 {
    wardline_kit::auth::signing::now()
}

fn valid() -> serde_json::Value {
    keycloak(
        "wardline-intake",
        &["wardline-admin", "offline_access"],
        now(),
        now() + 300,
    )
}

/// A token naming `kid` with a made-up signature (verification must not
/// get past the key lookup for an unknown kid).
fn unknown_kid_token(kid: &str) -> String {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.AAAA",
        b64(&serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid})),
        b64(&valid())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_identity_provider_are_verified_against_its_published_keys() {
    let idp = TestIdp::start().await;
    let es = idp.add_es256();
    let rs = idp.add_rs256();
    let idp_env = idp.env();
    let mut extra: Vec<(&str, &str)> = idp_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    extra.extend([
        // The test kit's JWKS file is replaced by the provider's URL.
        ("WARDLINE_JWKS_FILE", ""),
        ("WARDLINE_JWT_ROLES_CLAIM", "realm_access.roles"),
        (
            "WARDLINE_JWT_ROLE_MAP",
            "wardline-admin=tenant_admin,wardline-agent=analyst",
        ),
        ("WARDLINE_JWT_MAX_LIFETIME_SECS", "3600"),
    ]);
    let app = common::start_with(
        TestNats::start(),
        TestDb::create("intake_idp").await,
        &extra,
    )
    .await;
    let call = |token: String| {
        let mut client = app.tickets(&token);
        async move {
            client
                .list_tickets(ListTicketsRequest::default())
                .await
                .map(|_| ())
        }
    };

    // Both key types are accepted; the role came through the role map.
    for kid in [&es, &rs] {
        call(idp.sign(kid, &valid()))
            .await
            .unwrap_or_else(|e| panic!("a token of key {kid} is accepted: {e:?}"));
    }
    // A token whose only roles are unmapped carries no Wardline role.
    let unmapped = keycloak("wardline-intake", &["offline_access"], now(), now() + 300);
    assert_eq!(
        call(idp.sign(&es, &unmapped)).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Refused, each UNAUTHENTICATED, with a reason an operator can act on.
    let t = now();
    let mut wrong_issuer = valid();
    wrong_issuer["iss"] = "https://evil.example.org/realms/wardline".into();
    let refusals = [
        ("wrong issuer", idp.sign(&es, &wrong_issuer), "issuer"),
        (
            "another service's audience",
            idp.sign(
                &rs,
                &keycloak("wardline-billing", &["wardline-admin"], t, t + 300),
            ),
            "audience",
        ),
        (
            "a lifetime above the maximum",
            idp.sign(
                &es,
                &keycloak("wardline-intake", &["wardline-admin"], t, t + 7200),
            ),
            "lifetime",
        ),
        (
            "expired",
            idp.sign(
                &rs,
                &keycloak("wardline-intake", &["wardline-admin"], t - 600, t - 300),
            ),
            "expired",
        ),
        (
            "alg confusion (HS256 keyed with the RSA public key)",
            idp.forge_hs256_with_public_key(&rs, &valid()),
            "algorithm",
        ),
        (
            "no iat",
            {
                let mut c = valid();
                c.as_object_mut().unwrap().remove("iat");
                idp.sign(&es, &c)
            },
            "iat",
        ),
    ];
    for (what, token, reason) in refusals {
        let e = call(token).await.expect_err(what);
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
        assert!(e.message().contains(reason), "{what}: {}", e.message());
    }

    // Rotation: a key published after start-up is fetched at its first token.
    let before = idp.fetches();
    let rotated = idp.add_es256();
    call(idp.sign(&rotated, &valid()))
        .await
        .expect("the rotated key is accepted after one refresh");
    assert_eq!(idp.fetches(), before + 1, "one JWKS fetch for the new kid");

    // A flood of invented kids costs the provider no further fetch within
    // WARDLINE_JWKS_MIN_REFRESH_SECS (30 s).
    for i in 0..50 {
        let e = call(unknown_kid_token(&format!("invented-{i}")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    assert_eq!(idp.fetches(), before + 1, "unknown kids are rate-limited");
    // The keys already known keep working.
    call(idp.sign(&es, &valid())).await.expect("still accepted");

    app.stop().await;
}

/// The published development secret no longer starts a service outside
/// development mode; the error names the variable.
#[test]
fn the_committed_development_secret_does_not_start_intake() {
    let env = wardline_kit::config::Env::from_pairs([
        (
            "WARDLINE_JWT_SECRET",
            "change-me-dev-only-jwt-signing-secret-0123456789",
        ),
        ("INTAKE_GRPC_ADDR", "127.0.0.1:0"),
        ("NATS_NKEY_SEED_FILE", "/seed"),
    ]);
    let e = wardline_intake::Config::from_env(&env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("WARDLINE_JWT_SECRET") && e.contains("published"),
        "{e}"
    );
}
