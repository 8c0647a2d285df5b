//! Every environment variable the compose file gives a service is one that
//! service reads, and the service starts its configuration from it.

use std::collections::BTreeMap;

use serde_norway::Value;
use wardline_kit::config::Env;

/// Variables read by libraries rather than by the service's `Config`.
const LIBRARY_VARIABLES: &[&str] = &[
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
];

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml at the repository root");
    serde_norway::from_str(&text).expect("docker-compose.yml is valid YAML")
}

/// The environment of compose service `name`, with `${VAR...}` references
/// replaced by a value long enough for secrets.
fn environment(compose: &Value, name: &str) -> BTreeMap<String, String> {
    let env = &compose["services"][name]["environment"];
    let map = env
        .as_mapping()
        .unwrap_or_else(|| panic!("service {name} has an environment map"));
    map.iter()
        .map(|(k, v)| {
            let key = k.as_str().expect("string keys").to_owned();
            let raw = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => String::new(),
            };
            let mut value = String::new();
            let mut rest = raw.as_str();
            while let Some(start) = rest.find("${") {
                value.push_str(&rest[..start]);
                let end = rest[start..].find('}').expect("closed ${...}") + start;
                value.push_str("substituted-value-0123456789-abcdefghijkl");
                rest = &rest[end + 1..];
            }
            value.push_str(rest);
            (key, value)
        })
        .collect()
}

/// Checks that service `name` accepts compose's environment through its
/// `Config::from_env` and reads every variable compose sets (library
/// variables aside).
fn check_reads_every_variable(name: &str, from_env: impl Fn(&Env) -> Result<(), String>) {
    let env = Env::from_pairs(environment(&compose(), name));
    if let Err(e) = from_env(&env) {
        panic!("{name} rejects the compose environment: {e}");
    }
    let unread: Vec<String> = env
        .unread()
        .into_iter()
        .filter(|v| !LIBRARY_VARIABLES.contains(&v.as_str()))
        .collect();
    assert!(
        unread.is_empty(),
        "compose sets variables {name} never reads: {unread:?}"
    );
}

#[test]
fn intake_reads_every_variable_compose_sets() {
    check_reads_every_variable("intake", |env| {
        wardline_intake::Config::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn routing_reads_every_variable_compose_sets() {
    check_reads_every_variable("routing", |env| {
        wardline_routing::Config::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn billing_reads_every_variable_compose_sets() {
    check_reads_every_variable("billing", |env| {
        wardline_billing::Config::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn notification_reads_every_variable_compose_sets() {
    check_reads_every_variable("notification", |env| {
        wardline_notification::Config::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn notification_sends_email_to_the_mail_sink() {
    let compose = compose();
    let env = environment(&compose, "notification");
    let host = &env["NOTIFICATION_SMTP_HOST"];
    assert!(
        compose["services"][host.as_str()].is_mapping(),
        "NOTIFICATION_SMTP_HOST names the compose service {host}"
    );
    assert!(
        depends_on(&compose, "notification").contains_key(host),
        "notification starts after {host}"
    );
}

#[test]
fn every_service_with_a_build_is_checked_here() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let built: Vec<String> = services
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    // Add a `<service>_reads_every_variable_compose_sets` test for a new
    // service before adding it here.
    for name in &built {
        assert!(
            ["intake", "routing", "billing", "notification", "seed"].contains(&name.as_str()),
            "no configuration check for compose service {name}"
        );
    }
}

/// The `condition` of each of `service`'s dependencies.
fn depends_on(compose: &Value, service: &str) -> BTreeMap<String, String> {
    compose["services"][service]["depends_on"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{service} has a depends_on map"))
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("service names").to_owned(),
                v["condition"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn services_wait_for_healthy_dependencies() {
    let compose = compose();
    for (service, deps) in [
        ("intake", &["nats", "postgres"][..]),
        ("routing", &["nats", "postgres"][..]),
        ("billing", &["nats", "postgres"][..]),
        ("notification", &["nats", "postgres"][..]),
        ("seed", &["intake", "routing", "billing"][..]),
    ] {
        let conditions = depends_on(&compose, service);
        for dep in deps {
            assert_eq!(
                conditions.get(*dep).map(String::as_str),
                Some("service_healthy"),
                "{service} must wait for {dep} to be healthy"
            );
        }
    }
}

/// The port of `host:port` or `scheme://host:port/path`.
fn port_of(addr: &str) -> &str {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    host_port.rsplit(':').next().unwrap_or_default()
}

#[test]
fn ports_health_checks_and_the_seeder_agree_with_the_addresses() {
    let compose = compose();
    // (service, variable prefix, whether the seeder calls it)
    for (service, prefix, seeded) in [
        ("intake", "INTAKE", true),
        ("routing", "ROUTING", true),
        ("billing", "BILLING", true),
        ("notification", "NOTIFICATION", false),
    ] {
        let env = environment(&compose, service);
        let grpc = port_of(&env[&format!("{prefix}_GRPC_ADDR")]).to_owned();
        let admin = port_of(&env[&format!("{prefix}_ADMIN_ADDR")]).to_owned();
        let published: Vec<String> = compose["services"][service]["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} publishes ports"))
            .iter()
            .map(|p| p.as_str().expect("ports as strings").to_owned())
            .collect();
        for port in [&grpc, &admin] {
            assert!(
                published.contains(&format!("127.0.0.1:{port}:{port}")),
                "{service} publishes {port} on 127.0.0.1: {published:?}"
            );
        }
        let check: Vec<&str> = compose["services"][service]["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} has a health check"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let url = format!("http://127.0.0.1:{admin}/readyz");
        assert!(
            check.contains(&url.as_str()),
            "{service}'s health check probes {url}: {check:?}"
        );
        if !seeded {
            continue;
        }
        let seed = environment(&compose, "seed");
        let wardctl_url = &seed[&format!("WARDCTL_{prefix}_URL")];
        assert_eq!(
            wardctl_url,
            &format!("http://{service}:{grpc}"),
            "the seeder finds {service}"
        );
    }
}
