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

#[test]
fn intake_reads_every_variable_compose_sets() {
    let compose = compose();
    let vars = environment(&compose, "intake");
    let env = Env::from_pairs(vars.clone());
    wardline_intake::Config::from_env(&env).expect("intake accepts the compose environment");
    let unread: Vec<String> = env
        .unread()
        .into_iter()
        .filter(|v| !LIBRARY_VARIABLES.contains(&v.as_str()))
        .collect();
    assert!(
        unread.is_empty(),
        "compose sets variables intake never reads: {unread:?}"
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
    // Extend intake_reads_every_variable_compose_sets to a new service
    // before adding it here.
    for name in &built {
        assert!(
            ["intake", "seed"].contains(&name.as_str()),
            "no configuration check for compose service {name}"
        );
    }
}

#[test]
fn services_wait_for_healthy_dependencies() {
    let compose = compose();
    let deps = compose["services"]["intake"]["depends_on"]
        .as_mapping()
        .expect("intake depends_on");
    for dep in ["nats", "postgres"] {
        let cond = &deps
            .get(dep)
            .unwrap_or_else(|| panic!("intake depends on {dep}"))["condition"];
        assert_eq!(cond.as_str(), Some("service_healthy"), "{dep}");
    }
}
