//! The notification binary: configuration from the environment, run until SIGTERM.

use wardline_notification::{Application, Config, SERVICE};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wardline_kit::service::run_main(
        SERVICE,
        Config::from_env,
        |c| c.service.common.log_format,
        |config, shutdown| async move {
            let app = Application::build(config, shutdown).await?;
            tracing::info!(grpc = %app.grpc_addr(), admin = %app.admin_addr(), "notification started");
            app.run_until_stopped().await
        },
    )
    .await
}
