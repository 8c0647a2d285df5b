//! Shutdown signalling.
//!
//! One [`CancellationToken`] per service instance is the shutdown signal.
//! SIGTERM (what `docker stop` and Kubernetes send) or Ctrl-C cancel it; every
//! long-running task selects on it and finishes its current unit of work.
//! The service then shuts down in order under a timeout (see
//! [`crate::service`]): health NOT_SERVING, stop accepting RPCs, let
//! in-flight work finish, drain NATS, close the pool, flush telemetry.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}
