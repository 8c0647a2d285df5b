//! Tracing for a command-line tool.
//!
//! Why not `wardline_kit::telemetry::init`: a CLI's stdout belongs to its
//! output (a token, a table, JSON), so logs go to stderr, and quietly
//! (`warn` unless `WARDCTL_LOG` says otherwise). What is shared with the
//! services is the propagation: every call carries the `traceparent` of the
//! wardctl span it runs in ([`crate::grpc::AuthInterceptor`] uses the kit's
//! `inject_grpc_metadata`), so a ticket's trace starts at the command that
//! filed it. The tracer provider is the kit's: spans are exported over OTLP
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set.

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use wardline_kit::telemetry::Telemetry;

/// Installs the stderr log layer and the span layer. Call once.
pub fn init() -> Telemetry {
    let (provider, export_error) = wardline_kit::telemetry::tracer_provider("wardctl");

    // Only wardctl's own spans become trace spans; library internals do not.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("wardctl"))
        .with_filter(filter_fn(|meta| meta.target().starts_with("wardctl")));
    let filter = EnvFilter::try_from_env("WARDCTL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(spans)
        .with(logs)
        .try_init();
    if let Some(e) = export_error {
        tracing::warn!(error = %e, "OTLP exporter could not be built; spans are not exported");
    }
    Telemetry::new(provider)
}
