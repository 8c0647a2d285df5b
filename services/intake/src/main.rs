//! The intake binary: read configuration, build, run until SIGTERM.

use tokio_util::sync::CancellationToken;
use wardline_intake::{Application, Config, SERVICE};
use wardline_kit::config::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_env(&Env::process()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wardline-intake: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let telemetry = wardline_kit::telemetry::init(SERVICE, config.common.log_format);
    let shutdown = CancellationToken::new();
    wardline_kit::shutdown::cancel_on_signal(shutdown.clone());
    let result = async {
        let app = Application::build(config, shutdown).await?;
        tracing::info!(grpc = %app.grpc_addr(), admin = %app.admin_addr(), "intake started");
        app.run_until_stopped().await
    }
    .await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "intake failed");
    }
    telemetry.shutdown();
    result
}
