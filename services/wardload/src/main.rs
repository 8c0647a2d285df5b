//! The `wardline-load` binary: parse, run, report. Errors go to stderr as
//! `error: ...` with exit code 1.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    let args = wardline_load::Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDLINE_LOAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    match wardline_load::run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", wardctl::error_text(&e));
            ExitCode::FAILURE
        }
    }
}
