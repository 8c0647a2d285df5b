//! Every environment variable the compose file gives a service is one that
//! service reads, and the service starts its configuration from it.

use std::collections::BTreeMap;

use serde_norway::Value;
use wardline_kit::config::Env;

/// Variables read by libraries rather than by the service's `Config`.
const LIBRARY_VARIABLES: &[&str] = &[
    "RUST_LOG",
    // sqlx: the database password when the URL carries none.
    "PGPASSWORD",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_SERVICE_NAME",
];

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml at the repository root");
    serde_norway::from_str(&text).expect("docker-compose.yml is valid YAML")
}

/// Variables the images' entrypoint (`deploy/entrypoint.sh`) sets from the
/// file `<NAME>_FILE` names: compose passes these secrets as files.
const FILE_VARIABLES: &[&str] = &["PGPASSWORD", "WARDLINE_MIGRATE_PGPASSWORD"];

/// The environment of compose service `name`, with `${VAR...}` references
/// replaced by a value long enough for secrets, and each `<NAME>_FILE` of
/// the [`FILE_VARIABLES`] as the `<NAME>` the entrypoint sets from the
/// file (which must be a secret the service lists).
fn environment(compose: &Value, name: &str) -> BTreeMap<String, String> {
    let secrets: Vec<&str> = compose["services"][name]["secrets"]
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    raw_environment(compose, name)
        .into_iter()
        .map(|(key, value)| {
            let Some(var) = FILE_VARIABLES
                .iter()
                .find(|var| key.strip_suffix("_FILE") == Some(**var))
            else {
                return (key, value);
            };
            let secret = value.strip_prefix("/run/secrets/").unwrap_or_else(|| {
                panic!("{name}: {key} names a compose secret (/run/secrets/...), not {value}")
            });
            assert!(
                secrets.contains(&secret),
                "{name}: {key} reads secret {secret}, which the service does not list"
            );
            (
                (*var).to_owned(),
                "secret-from-a-file-0123456789-abcdefghijkl".to_owned(),
            )
        })
        .collect()
}

/// The environment of compose service `name` as written, with `${VAR...}`
/// references replaced by a value long enough for secrets.
fn raw_environment(compose: &Value, name: &str) -> BTreeMap<String, String> {
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
            // pki runs wardline-dev-pki (arguments, no environment).
            [
                "intake",
                "routing",
                "billing",
                "notification",
                "seed",
                "pki"
            ]
            .contains(&name.as_str()),
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

/// A `ports:` entry with each `${VAR:-default}` replaced by its default
/// (the host ports are variables, so a host can move them).
fn published_with_defaults(entry: &str) -> String {
    let mut out = String::new();
    let mut rest = entry;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${...}") + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("port variable {inner} has a default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn ports_health_checks_and_the_seeder_agree_with_the_addresses() {
    let compose = compose();
    // (service, variable prefix, whether the seeder calls it)
    for (service, prefix, seeded) in [
        ("intake", "INTAKE", true),
        ("routing", "ROUTING", true),
        ("billing", "BILLING", true),
        ("notification", "NOTIFICATION", true),
    ] {
        let env = environment(&compose, service);
        let grpc = port_of(&env[&format!("{prefix}_GRPC_ADDR")]).to_owned();
        let admin = port_of(&env[&format!("{prefix}_ADMIN_ADDR")]).to_owned();
        let published: Vec<String> = compose["services"][service]["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} publishes ports"))
            .iter()
            .map(|p| published_with_defaults(p.as_str().expect("ports as strings")))
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
            &format!("https://{service}:{grpc}"),
            "the seeder finds {service}, over TLS"
        );
    }
}

// ---------------------------------------------------------------------------
// deploy/: every YAML file parses, the Kubernetes manifests set only
// variables the services read, and Prometheus scrapes every admin port.

/// `deploy/` at the repository root.
fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every file under `dir` whose name ends in one of `extensions`, sorted.
fn files_under(dir: &std::path::Path, extensions: &[&str]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The documents of a (possibly multi-document) YAML file; empty documents
/// (a trailing `---`) are dropped.
fn yaml_documents(path: &std::path::Path) -> Vec<Value> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Every Kubernetes object under deploy/k8s, with the file it came from.
fn k8s_objects() -> Vec<(std::path::PathBuf, Value)> {
    files_under(&deploy_dir().join("k8s"), &["yaml", "yml"])
        .into_iter()
        .flat_map(|path| {
            yaml_documents(&path)
                .into_iter()
                .map(move |doc| (path.clone(), doc))
        })
        .collect()
}

/// A plausible value for a variable set from a Secret or ConfigMap.
fn substitute(var: &str) -> String {
    if var.ends_with("_DATABASE_URL") {
        let service = var.trim_end_matches("_DATABASE_URL").to_lowercase();
        format!(
            "postgres://{service}:secret-password@db.example.org:5432/{service}?sslmode=verify-full"
        )
    } else if var == "WARDLINE_JWKS_URL" {
        "https://login.example.org/tenant/discovery/v2.0/keys".to_owned()
    } else {
        "substituted-secret-0123456789-abcdefghijklmnopqr".to_owned()
    }
}

/// The environment of a Deployment's container `container`: literal
/// `value:` entries as they are, `valueFrom:` entries substituted.
fn k8s_environment(deployment: &Value, container: &str) -> BTreeMap<String, String> {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("a Deployment has containers");
    let c = containers
        .iter()
        .find(|c| c["name"].as_str() == Some(container))
        .unwrap_or_else(|| panic!("a container named {container}"));
    c["env"]
        .as_sequence()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let name = e["name"]
                        .as_str()
                        .expect("env entries have a name")
                        .to_owned();
                    let value = if e.get("valueFrom").is_some() {
                        substitute(&name)
                    } else {
                        match &e["value"] {
                            Value::String(s) => s.clone(),
                            other => {
                                panic!("{name}: env values must be quoted strings, not {other:?}")
                            }
                        }
                    };
                    (name, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

type FromEnv = fn(&Env) -> Result<(), String>;

/// The Wardline services: (name, variable prefix, `Config::from_env`).
fn services() -> [(&'static str, &'static str, FromEnv); 4] {
    [
        ("intake", "INTAKE", |env| {
            wardline_intake::Config::from_env(env)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("routing", "ROUTING", |env| {
            wardline_routing::Config::from_env(env)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("billing", "BILLING", |env| {
            wardline_billing::Config::from_env(env)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("notification", "NOTIFICATION", |env| {
            wardline_notification::Config::from_env(env)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    ]
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files = files_under(&deploy_dir(), &["yaml", "yml"]);
    assert!(
        files.len() >= 10,
        "expected the deploy/ YAML files, found {files:?}"
    );
    for path in &files {
        assert!(
            !yaml_documents(path).is_empty(),
            "{} has no YAML document",
            path.display()
        );
    }
    for path in files_under(&deploy_dir(), &["json"]) {
        let text = std::fs::read_to_string(&path).expect("readable");
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    }
}

#[test]
fn every_kubernetes_deployment_sets_only_variables_its_service_reads() {
    let known = services();
    let mut checked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, object) in k8s_objects() {
        if object["kind"].as_str() != Some("Deployment") {
            continue;
        }
        let deployment = object["metadata"]["name"]
            .as_str()
            .expect("named")
            .to_owned();
        let service = object["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            .as_str()
            .unwrap_or_else(|| panic!("{deployment}: pods carry app.kubernetes.io/name"))
            .to_owned();
        let Some((_, prefix, from_env)) = known.iter().find(|(n, _, _)| *n == service) else {
            panic!(
                "{}: Deployment {deployment} runs unknown service {service}",
                path.display()
            );
        };
        let vars = k8s_environment(&object, &service);
        let env = Env::from_pairs(vars.clone());
        if let Err(e) = from_env(&env) {
            panic!(
                "{deployment} ({}) rejects its environment: {e}",
                path.display()
            );
        }
        let unread: Vec<String> = env
            .unread()
            .into_iter()
            .filter(|v| !LIBRARY_VARIABLES.contains(&v.as_str()))
            .collect();
        assert!(
            unread.is_empty(),
            "{deployment} ({}) sets variables {service} never reads: {unread:?}",
            path.display()
        );

        // Probes, ports, scrape annotations and the shutdown budget agree
        // with the variables.
        let admin = port_of(&vars[&format!("{prefix}_ADMIN_ADDR")]).to_owned();
        let grpc = port_of(&vars[&format!("{prefix}_GRPC_ADDR")]).to_owned();
        let pod = &object["spec"]["template"];
        let container = pod["spec"]["containers"]
            .as_sequence()
            .expect("containers")
            .iter()
            .find(|c| c["name"].as_str() == Some(service.as_str()))
            .expect("the service's container");
        let port_named = |name: &str| -> String {
            container["ports"]
                .as_sequence()
                .expect("container ports")
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .map(|p| {
                    p["containerPort"]
                        .as_u64()
                        .expect("numeric port")
                        .to_string()
                })
                .unwrap_or_else(|| panic!("{deployment}: a container port named {name}"))
        };
        assert_eq!(port_named("admin"), admin, "{deployment}: admin port");
        assert_eq!(port_named("grpc"), grpc, "{deployment}: gRPC port");
        for (probe, path_expected) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]
        {
            let get = &container[probe]["httpGet"];
            assert_eq!(
                get["path"].as_str(),
                Some(path_expected),
                "{deployment}: {probe} path"
            );
            let port = match &get["port"] {
                Value::String(s) if s == "admin" => admin.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("{deployment}: {probe} port {other:?}"),
            };
            assert_eq!(port, admin, "{deployment}: {probe} on the admin port");
        }
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/scrape"].as_str(),
            Some("true"),
            "{deployment}"
        );
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some(admin.as_str()),
            "{deployment}"
        );
        let timeout_ms: u64 = vars
            .get("WARDLINE_SHUTDOWN_TIMEOUT_MS")
            .map_or(20_000, |v| v.parse().expect("numeric timeout"));
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{deployment}: terminationGracePeriodSeconds"));
        assert!(
            grace * 1000 > timeout_ms,
            "{deployment}: terminationGracePeriodSeconds {grace} must exceed WARDLINE_SHUTDOWN_TIMEOUT_MS {timeout_ms}"
        );
        assert!(
            !vars.contains_key("WARDLINE_JWT_SECRET"),
            "{deployment}: production verifies the identity provider's tokens, not a shared secret"
        );
        let v = format!("{prefix}_DATABASE_URL");
        let from_secret = container["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .any(|e| {
                e["name"].as_str() == Some(v.as_str())
                    && e["valueFrom"]["secretKeyRef"].is_mapping()
            });
        assert!(from_secret, "{deployment}: {v} comes from a Secret");
        checked.entry(service).or_default().push(deployment);
    }
    for (name, _, _) in &known {
        assert!(
            checked.contains_key(*name),
            "no Deployment of {name} under deploy/k8s"
        );
    }
    // The large-tenant overlay's dedicated pools.
    for name in ["routing-stmarys", "notification-stmarys"] {
        let found = k8s_objects().into_iter().find(|(_, o)| {
            o["kind"].as_str() == Some("Deployment") && o["metadata"]["name"].as_str() == Some(name)
        });
        let (_, object) = found.unwrap_or_else(|| panic!("a Deployment {name}"));
        let service = name.trim_end_matches("-stmarys");
        assert_eq!(
            k8s_environment(&object, service)
                .get("WARDLINE_TENANTS")
                .map(String::as_str),
            Some("stmarys"),
            "{name} consumes only stmarys's events"
        );
    }
    // ... and its patches make the shared pools leave stmarys to them, with
    // a variable the service reads.
    let overlay = deploy_dir().join("k8s/overlays/large-tenant/kustomization.yaml");
    let patches = yaml_documents(&overlay)[0]["patches"].clone();
    for service in ["routing", "notification"] {
        let patch = patches
            .as_sequence()
            .expect("the overlay has patches")
            .iter()
            .find(|p| p["target"]["name"].as_str() == Some(service))
            .unwrap_or_else(|| panic!("the overlay patches the shared {service}"));
        let ops: Value = serde_norway::from_str(patch["patch"].as_str().expect("an inline patch"))
            .expect("the patch is YAML");
        let op = &ops[0];
        assert_eq!(op["op"].as_str(), Some("add"));
        assert_eq!(
            op["path"].as_str(),
            Some("/spec/template/spec/containers/0/env/-")
        );
        assert_eq!(
            op["value"]["name"].as_str(),
            Some("WARDLINE_EXCLUDE_TENANTS")
        );
        assert_eq!(op["value"]["value"].as_str(), Some("stmarys"));
        let (_, base) = k8s_objects()
            .into_iter()
            .find(|(_, o)| {
                o["kind"].as_str() == Some("Deployment")
                    && o["metadata"]["name"].as_str() == Some(service)
            })
            .unwrap_or_else(|| panic!("the base Deployment {service}"));
        assert_eq!(
            base["spec"]["template"]["spec"]["containers"][0]["name"].as_str(),
            Some(service),
            "the patch's container 0 is {service}'s"
        );
        let mut vars = k8s_environment(&base, service);
        vars.insert("WARDLINE_EXCLUDE_TENANTS".into(), "stmarys".into());
        let (_, _, from_env) = known.iter().find(|(n, _, _)| *n == service).expect("known");
        let env = Env::from_pairs(vars);
        from_env(&env).unwrap_or_else(|e| panic!("patched {service} rejects its environment: {e}"));
        assert!(
            !env.unread()
                .contains(&"WARDLINE_EXCLUDE_TENANTS".to_owned()),
            "{service} reads WARDLINE_EXCLUDE_TENANTS"
        );
    }
}

#[test]
fn every_kustomization_lists_files_that_exist() {
    for path in files_under(&deploy_dir().join("k8s"), &["yaml"]) {
        if path.file_name().and_then(|n| n.to_str()) != Some("kustomization.yaml") {
            continue;
        }
        let dir = path.parent().expect("a directory");
        let doc = &yaml_documents(&path)[0];
        for resource in doc["resources"].as_sequence().expect("resources") {
            let r = resource.as_str().expect("resource paths");
            assert!(
                dir.join(r).exists(),
                "{}: resource {r} does not exist",
                path.display()
            );
        }
    }
}

#[test]
fn prometheus_scrapes_every_service_admin_port() {
    let config = &yaml_documents(&deploy_dir().join("prometheus/prometheus.yml"))[0];
    let targets: Vec<String> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .filter(|job| job["metrics_path"].as_str().unwrap_or("/metrics") == "/metrics")
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|sc| sc["targets"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let compose = compose();
    for (service, prefix, _) in services() {
        let env = environment(&compose, service);
        let admin = port_of(&env[&format!("{prefix}_ADMIN_ADDR")]);
        let target = format!("{service}:{admin}");
        assert!(
            targets.contains(&target),
            "Prometheus scrapes {target} (/metrics): {targets:?}"
        );
    }
}

/// Every `wardline_*` metric name the Grafana dashboard queries is one a
/// service records (histograms through their `_bucket` series).
#[test]
fn the_dashboard_uses_only_metrics_the_services_record() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let mut recorded = std::collections::BTreeSet::new();
    for path in files_under(&root, &["rs"]) {
        let text = std::fs::read_to_string(&path).expect("readable source");
        for (i, _) in text.match_indices("\"wardline_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            recorded.insert(name);
        }
    }
    let dashboard = std::fs::read_to_string(deploy_dir().join("grafana/dashboards/wardline.json"))
        .expect("the Wardline dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let mut used = 0;
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for (i, _) in expr.match_indices("wardline_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let base = name.strip_suffix("_bucket").unwrap_or(&name);
                assert!(
                    recorded.contains(base),
                    "panel {:?} queries {name}, which no service records",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used > 10, "the dashboard queries Wardline's metrics");
}

/// The NATS configuration Kubernetes runs carries exactly the permission
/// layout the code generates (and the tests run): the base the shared
/// pools', the large-tenant overlay the dedicated pools' too.
#[test]
fn the_kubernetes_nats_config_is_the_generated_permission_layout() {
    let data = |file: &str| -> String {
        let path = deploy_dir().join(file);
        yaml_documents(&path)
            .into_iter()
            .find(|d| d["kind"].as_str() == Some("ConfigMap") && d["metadata"]["name"].as_str() == Some("nats-config"))
            .unwrap_or_else(|| panic!("{file} has ConfigMap nats-config"))["data"]["permissions.conf"]
            .as_str()
            .expect("permissions.conf")
            .to_owned()
    };
    assert_eq!(
        data("k8s/base/nats.yaml"),
        wardline_kit::nats::permissions_conf(&[])
    );
    assert_eq!(
        data("k8s/overlays/large-tenant/nats-permissions.yaml"),
        wardline_kit::nats::permissions_conf(&[
            ("routing", &["stmarys"]),
            ("notification", &["stmarys"])
        ])
    );
}

/// Compose runs NATS as it ships: the provisioning step before the
/// services, every service signed in with its own identity over TLS.
#[test]
fn compose_provisions_streams_first_and_services_sign_in_over_tls() {
    let c = compose();
    for (name, _, _) in services() {
        let env = environment(&c, name);
        assert_eq!(
            env.get("NATS_URL").map(String::as_str),
            Some("tls://nats:4222"),
            "{name}"
        );
        assert_eq!(
            env.get("NATS_NKEY_SEED_FILE").map(String::as_str),
            Some(format!("/pki/{name}/nats.nk").as_str()),
            "{name}"
        );
        assert!(env.contains_key("NATS_CA_FILE"), "{name}");
        assert_eq!(
            depends_on(&c, name).get("provision").map(String::as_str),
            Some("service_completed_successfully"),
            "{name} starts after the streams exist"
        );
    }
    let provision = environment(&c, "provision");
    assert_eq!(
        provision.get("SERVICE").map(String::as_str),
        Some("wardline-provision")
    );
}
