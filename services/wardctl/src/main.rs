//! The `wardctl` binary: parse, run, report. Errors go to stderr as
//! `error: CODE: message` with exit code 1; clap's own usage errors exit 2.

use std::process::ExitCode;

use clap::Parser;
use wardctl::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (service, url) = cli.service();
    let url = url.to_owned();
    let telemetry = wardctl::telemetry::init();
    let result = wardctl::commands::run(cli).await;
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", wardctl::error_text(&e));
            if let Some(hint) = wardctl::error_hint(&e, service, &url) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
