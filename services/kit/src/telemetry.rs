//! Logs and traces.
//!
//! Logs are JSON lines on stdout (or a pretty format for a terminal), each
//! carrying the trace id of the span it was written in. Traces are always
//! recorded so that trace context propagates through gRPC and NATS even when
//! nothing collects them; they are exported over OTLP only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads the standard
//! `OTEL_*` variables itself).
//!
//! What must hold: span fields come from an allow-list ([`ALLOWED_FIELDS`]);
//! a ticket's free text is never a field, a log argument or a label.

use std::collections::HashMap;
use std::str::FromStr;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Span fields a Wardline span may carry. Anything else is a review finding
/// (and the end-to-end trace test fails on it).
pub const ALLOWED_FIELDS: &[&str] = &[
    "otel.name",
    "otel.kind",
    "otel.status_code",
    "trace_id",
    "rpc.method",
    "rpc.grpc.status_code",
    "tenant",
    "ticket_id",
    "ticket_number",
    "ticket_version",
    "priority",
    "category",
    "analyst_id",
    "assignment_id",
    "invoice_id",
    "delivery_id",
    "event_id",
    "event_kind",
    "subject",
    "stream_seq",
    "delivered",
    "batch",
    "outcome",
    "db.operation",
];

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for collectors).
    Json,
    /// Human-readable, coloured (for a terminal).
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("unknown log format {other:?} (json or pretty)")),
        }
    }
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes spans.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Wraps a provider built with [`tracer_provider`] (tools that install
    /// their own log layer, such as wardctl).
    pub fn new(provider: SdkTracerProvider) -> Self {
        Self { provider }
    }

    /// Flushes and stops the span exporter (part of graceful shutdown).
    pub fn shutdown(&self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// True when an OTLP endpoint is configured through the standard variables.
pub fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()))
}

/// A tracer provider for `service` (or `OTEL_SERVICE_NAME`). It always
/// records, so trace context propagates even when nothing collects spans;
/// it exports over OTLP only when [`otlp_configured`]. The second value is
/// why the exporter could not be built, if it could not (log it once the
/// subscriber is installed).
pub fn tracer_provider(service: &str) -> (SdkTracerProvider, Option<String>) {
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(
                std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned()),
            )
            .build(),
    );
    let mut export_error = None;
    if otlp_configured() {
        let exporter = match otlp_tls() {
            Ok(Some(tls)) => {
                use opentelemetry_otlp::WithTonicConfig as _;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_tls_config(tls)
                    .build()
                    .map_err(|e| e.to_string())
            }
            Ok(None) => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match exporter {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => export_error = Some(e),
        }
    }
    (builder.build(), export_error)
}

/// The exporter's TLS from the standard variables: trust
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` (a CA file; the system roots when
/// unset) and present `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
/// `OTEL_EXPORTER_OTLP_CLIENT_KEY` for mutual TLS. `None` when none is set
/// (an `https://` endpoint then uses the system roots).
pub fn otlp_tls() -> Result<Option<tonic::transport::ClientTlsConfig>, crate::tls::TlsError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let ca = var("OTEL_EXPORTER_OTLP_CERTIFICATE");
    let identity =
        var("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE").zip(var("OTEL_EXPORTER_OTLP_CLIENT_KEY"));
    if ca.is_none() && identity.is_none() {
        return Ok(None);
    }
    crate::tls::client_tls(
        ca.as_deref().map(std::path::Path::new),
        identity.as_ref().map(|(c, k)| {
            (
                std::path::Path::new(c.as_str()),
                std::path::Path::new(k.as_str()),
            )
        }),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
    )
    .map(Some)
}

/// Installs logging and tracing for `service`. Call once per process; a
/// second call (tests that start several services in one process) keeps the
/// first subscriber and returns a provider that only propagates.
pub fn init(service: &'static str, format: LogFormat) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let (provider, export_error) = tracer_provider(service);
    let endpoint_set = otlp_configured();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn,h2=warn,tower=warn"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(true),
            )
            .try_init()
            .is_ok(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
            .is_ok(),
    };
    if installed {
        tracing::info!(service, otlp = endpoint_set, "telemetry initialised");
    }
    if let Some(e) = export_error {
        tracing::warn!(error = %e, "OTLP exporter could not be built; spans are not exported");
    }
    Telemetry { provider }
}

/// Records the span's trace id in its `trace_id` field (declared `Empty`) so
/// that every log line written inside it carries the id.
pub fn record_trace_id(span: &tracing::Span) {
    let cx = span.context();
    let id = cx.span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Makes `span` a child of the remote context found in `carrier` (W3C
/// `traceparent`/`tracestate`), then records its trace id.
pub fn set_remote_parent(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// The W3C headers (`traceparent`, maybe `tracestate`) of `span`'s context.
pub fn trace_headers(span: &tracing::Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut MapInjector(&mut map));
    map
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Extracts trace context from a plain map (outbox rows).
pub struct MapExtractor<'a>(pub &'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Extracts trace context from NATS message headers.
pub struct NatsHeaderExtractor<'a>(pub &'a async_nats::HeaderMap);

impl Extractor for NatsHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Extracts trace context from HTTP/gRPC headers.
pub struct HttpHeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HttpHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Injects the current span's context into outgoing gRPC metadata (clients:
/// `wardctl`, tests, service-to-service calls).
pub fn inject_grpc_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    for (k, v) in trace_headers(&tracing::Span::current()) {
        if let (Ok(key), Ok(val)) = (
            tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
            tonic::metadata::MetadataValue::try_from(v.as_str()),
        ) {
            metadata.insert(key, val);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("pretty".parse::<LogFormat>().unwrap(), LogFormat::Pretty);
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn a_remote_parent_is_adopted() {
        let _t = init("kit-test", LogFormat::Pretty);
        let mut carrier = HashMap::new();
        carrier.insert(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        );
        // ERROR level, so a restrictive RUST_LOG in the environment cannot filter it out.
        let span = tracing::error_span!("child", trace_id = tracing::field::Empty);
        set_remote_parent(&span, &MapExtractor(&carrier));
        let headers = trace_headers(&span);
        let tp = headers.get("traceparent").expect("traceparent injected");
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "a new span id: {tp}");
    }
}
