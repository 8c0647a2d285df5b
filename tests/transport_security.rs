//! Every hop with real handshakes (issue 11): a client without the CA
//! fails and with it succeeds; a server that requires TLS refuses
//! plaintext; NATS refuses anonymous clients and stream administration by
//! a service. Certificates come from `wardline-dev-pki`'s library, the
//! same code that makes the demo's and compose's.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use wardline_devpki::Pki;
use wardline_proto::intake::ListTenantsRequest;
use wardline_proto::intake::tenant_service_client::TenantServiceClient;
use wardline_testkit::{Auth, TestDb, TestNats, TestOtlp, TestPgCluster};

fn pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().expect("temporary PKI");
    let pki = Pki::at(dir.path());
    pki.ensure(
        &["intake", "postgres", "otel-collector", "wardctl"],
        &[],
        &[],
    )
    .expect("test PKI");
    (dir, pki)
}

/// NATS: TLS is required (a plaintext client is refused), the server's
/// certificate must chain to the CA the client trusts, and an identity is
/// required; a service's identity may not administer streams.
#[tokio::test]
async fn nats_requires_tls_an_identity_and_keeps_stream_administration_to_provisioning() {
    let nats = TestNats::start();
    let plain = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(format!("nats://127.0.0.1:{}", nats.port()))
        .await;
    assert!(plain.is_err(), "a plaintext client was accepted");

    // Routing's seed, but the system roots instead of the CA.
    let mut cfg = nats.config_for("routing");
    cfg.ca_file = None;
    let untrusted = cfg
        .options("routing")
        .unwrap()
        .connection_timeout(Duration::from_secs(3))
        .connect(nats.url())
        .await;
    assert!(untrusted.is_err(), "a client without the CA connected");

    // Denied requests get no answer: a short request timeout keeps this quick.
    let routing = nats
        .config_for("routing")
        .options("routing")
        .unwrap()
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(nats.url())
        .await
        .expect("with the CA it connects");
    let js = async_nats::jetstream::new(routing);
    assert!(
        js.delete_stream(wardline_kit::nats::EVENTS_STREAM)
            .await
            .is_err(),
        "a service deleted the event stream"
    );
    assert!(
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "ROGUE".into(),
            subjects: vec!["rogue.>".into()],
            ..Default::default()
        })
        .await
        .is_err(),
        "a service created a stream"
    );
    // Another service's durable is out of reach too.
    let stream = js
        .get_stream(wardline_kit::nats::EVENTS_STREAM)
        .await
        .expect("a service reads the stream's info");
    assert!(
        stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("billing")
            .await
            .is_err()
    );
    let admin = nats.jetstream().await;
    admin
        .get_stream(wardline_kit::nats::EVENTS_STREAM)
        .await
        .expect("the event stream is still there");
}

/// gRPC: with `INTAKE_TLS_*` set, intake refuses plaintext HTTP/2 and
/// clients that do not trust its CA; with `INTAKE_TLS_CLIENT_CA_FILE` it
/// also refuses clients without a certificate (mutual TLS). The clients are
/// wardctl's (`endpoint_with`).
#[tokio::test]
async fn grpc_serves_tls_and_mutual_tls_and_refuses_plaintext() {
    let (_dir, pki) = pki();
    let nats = TestNats::start();
    let db = TestDb::create("intake_tls").await;
    let path = |p: std::path::PathBuf| p.display().to_string();
    let tls_env = [
        ("INTAKE_TLS_CERT_FILE", path(pki.cert_file("intake"))),
        ("INTAKE_TLS_KEY_FILE", path(pki.key_file("intake"))),
        ("INTAKE_TLS_CLIENT_CA_FILE", path(pki.ca_file())),
    ];
    let extra: Vec<(&str, &str)> = tls_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = service_env("INTAKE", &db, &nats, &extra);
    let intake = start_in_process_intake(env).await;
    let port = intake.grpc.port();
    let call = |endpoint: tonic::transport::Endpoint| async move {
        let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
        TenantServiceClient::with_interceptor(channel, Auth::new(&vendor_token(), None))
            .list_tenants(ListTenantsRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    };
    let t = Duration::from_secs(5);
    let endpoint = |url: &str, ca: bool, cert: bool| {
        wardctl::grpc::endpoint_with(
            url,
            t,
            ca.then(|| pki.ca_file()),
            cert.then(|| (pki.cert_file("wardctl"), pki.key_file("wardctl"))),
        )
        .expect("endpoint")
    };
    let https = format!("https://localhost:{port}");
    call(endpoint(&format!("http://127.0.0.1:{port}"), false, false))
        .await
        .expect_err("plaintext HTTP/2 is refused");
    call(endpoint(&https, false, true))
        .await
        .expect_err("a client that does not trust the CA fails");
    call(endpoint(&https, true, false))
        .await
        .expect_err("mutual TLS: a client without a certificate is refused");
    call(endpoint(&https, true, true))
        .await
        .expect("with the CA and a client certificate the call succeeds");
    intake.stop().await;
}

/// PostgreSQL: `sslmode=verify-full` works against a server with a
/// certificate from the CA named by `sslrootcert` (a service starts, runs
/// its migrations and its connections are TLS); without that CA the
/// handshake fails, and the server refuses plaintext.
#[tokio::test]
async fn postgres_verify_full_works_with_the_ca_and_fails_without_it() {
    use sqlx::Connection as _;
    let (_dir, pki) = pki();
    let cluster = TestPgCluster::start_tls(&pki.cert_file("postgres"), &pki.key_file("postgres"));
    let db = cluster.create_db("intake_pg_tls").await;
    let name = db.name().to_owned();
    let base = format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port());
    let ca = pki.ca_file().display().to_string();
    let verified = format!("{base}?sslmode=verify-full&sslrootcert={ca}");

    let mut conn = sqlx::PgConnection::connect(&verified)
        .await
        .expect("verify-full with the CA connects");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl, "the connection is TLS");
    let _ = conn.close().await;
    sqlx::PgConnection::connect(&format!("{base}?sslmode=verify-full"))
        .await
        .expect_err("verify-full without the CA fails (the system roots do not know it)");
    sqlx::PgConnection::connect(&format!("{base}?sslmode=disable"))
        .await
        .expect_err("the server refuses plaintext");

    // A whole service on it, in the production profile, migrating as the
    // owner and serving as the runtime role, both over verified TLS.
    let nats = TestNats::start();
    let mut env = service_env("INTAKE", &db, &nats, &[]);
    let tls = format!("?sslmode=verify-full&sslrootcert={ca}");
    for (k, v) in env.iter_mut() {
        if k == "INTAKE_DATABASE_URL" {
            *v = format!("{}{tls}", db.url());
        }
        if k == "INTAKE_MIGRATE_DATABASE_URL" {
            *v = format!("{}{tls}", db.owner_url());
        }
    }
    let intake = start_in_process_intake(env).await;
    TenantServiceClient::with_interceptor(
        wardline_testkit::channel(intake.grpc),
        Auth::new(&vendor_token(), None),
    )
    .list_tenants(ListTenantsRequest::default())
    .await
    .expect("intake serves from a database reached with verify-full");
    intake.stop().await;
}

/// OTLP: spans reach a TLS collector when `OTEL_EXPORTER_OTLP_CERTIFICATE`
/// names its CA, and do not without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exports_over_tls_only_to_a_collector_it_trusts() {
    let (_dir, pki) = pki();
    let collector = TestOtlp::start_tls(
        &pki.cert_file("otel-collector"),
        &pki.key_file("otel-collector"),
    )
    .await;
    let export = |name: &'static str| {
        let (provider, error) = wardline_kit::telemetry::tracer_provider("tls-test");
        assert!(error.is_none(), "{error:?}");
        provider.tracer("tls-test").in_span(name, |_| {});
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    };
    // SAFETY: nextest runs each test in a process of its own; the exporter
    // reads the standard variables from the environment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint());
        std::env::remove_var("OTEL_EXPORTER_OTLP_CERTIFICATE");
    }
    tokio::task::spawn_blocking(move || export("untrusted"))
        .await
        .unwrap();
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca_file());
    }
    let pki_ca = pki.ca_file();
    assert!(pki_ca.exists());
    tokio::task::spawn_blocking(move || export("trusted"))
        .await
        .unwrap();
    let names: Vec<String> = collector.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        vec!["trusted".to_owned()],
        "only the export that trusted the CA arrived"
    );
}

async fn start_in_process_intake(env: Vec<(String, String)>) -> Running {
    start_intake_with(env).await
}
