//! `wardline-provision`: the one-shot step that creates or updates the
//! JetStream streams, run before the services (compose's `provision`
//! service, the Kubernetes Job, `scripts/demo.sh`, the test kit). It signs
//! in as the provisioning identity, the only NATS user allowed to
//! administer streams; services only wait until the streams exist.
//!
//! Variables: `NATS_URL`, `NATS_NKEY_SEED_FILE` (the provisioning
//! identity's seed), `NATS_CA_FILE`, `NATS_CLIENT_CERT_FILE`,
//! `NATS_CLIENT_KEY_FILE`, `WARDLINE_STREAM_REPLICAS`, `WARDLINE_ENV`.
//!
//! `wardline-provision permissions [--dedicated SERVICE:TENANT[,TENANT]]...`
//! prints the NATS permission layout instead (`deploy/nats/permissions.conf`
//! is its output without `--dedicated`).

use std::process::ExitCode;

use wardline_kit::config::{ConfigError, Env};
use wardline_kit::nats::{self, NatsConfig};
use wardline_kit::tls::Profile;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("permissions") {
        return print_permissions(&args[1..]);
    }
    if let Some(a) = args.first() {
        eprintln!("wardline-provision: unknown argument {a:?} (no argument, or `permissions`)");
        return ExitCode::from(2);
    }
    let _telemetry =
        wardline_kit::telemetry::init("provision", wardline_kit::telemetry::LogFormat::Json);
    let env = Env::process();
    let config = (|| -> Result<(NatsConfig, usize), ConfigError> {
        let profile = Profile::from_env(&env)?;
        let replicas: usize = env.parse("WARDLINE_STREAM_REPLICAS", 1)?;
        Ok((NatsConfig::from_env(&env, profile)?, replicas))
    })();
    let (cfg, replicas) = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wardline-provision: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = async {
        let client = nats::connect(&cfg, nats::PROVISION_IDENTITY).await?;
        let js = async_nats::jetstream::new(client.clone());
        nats::provision_streams(&js, replicas).await?;
        let _ = client.drain().await;
        Ok::<_, nats::NatsError>(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(180), result).await {
        Ok(Ok(())) => {
            tracing::info!(replicas, "streams provisioned");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "provisioning failed");
            ExitCode::FAILURE
        }
        Err(_) => {
            tracing::error!("provisioning timed out: NATS not reachable");
            ExitCode::FAILURE
        }
    }
}

fn print_permissions(args: &[String]) -> ExitCode {
    let mut dedicated: Vec<(String, Vec<String>)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let spec = match (a.as_str(), it.next()) {
            ("--dedicated", Some(v)) => v,
            _ => {
                eprintln!(
                    "usage: wardline-provision permissions [--dedicated SERVICE:TENANT[,TENANT]]..."
                );
                return ExitCode::from(2);
            }
        };
        let Some((service, tenants)) = spec.split_once(':') else {
            eprintln!("--dedicated {spec}: expected SERVICE:TENANT[,TENANT]");
            return ExitCode::from(2);
        };
        if nats::service_permissions(service, &[]).is_none() {
            eprintln!("--dedicated {spec}: unknown service {service}");
            return ExitCode::from(2);
        }
        dedicated.push((
            service.to_owned(),
            tenants.split(',').map(str::to_owned).collect(),
        ));
    }
    let tenants: Vec<Vec<&str>> = dedicated
        .iter()
        .map(|(_, t)| t.iter().map(String::as_str).collect())
        .collect();
    let pools: Vec<(&str, &[&str])> = dedicated
        .iter()
        .zip(&tenants)
        .map(|((s, _), t)| (s.as_str(), t.as_slice()))
        .collect();
    print!("{}", nats::permissions_conf(&pools));
    ExitCode::SUCCESS
}
