//! Logs, traces and metrics.
//!
//! Logs go to standard error through `tracing_subscriber`, as text or JSON.
//! Traces are the same `tracing` spans bridged to OpenTelemetry by
//! `tracing-opentelemetry`: one server span per RPC, joined to the caller's
//! trace when it sends a W3C `traceparent`, with one child span per stage of
//! a share. Metrics are OpenTelemetry instruments ([`Metrics`]) exported
//! over OTLP and rendered as Prometheus text on the admin listener
//! ([`admin`]).
//!
//! Without a `[telemetry]` table nothing is exported: the OpenTelemetry
//! layer stays empty, the global tracer and meter providers stay no-ops and
//! [`metrics()`] is `None`, so every recording site costs one atomic load.
//! Not exporting, the server span and the stage spans are `debug`: at the
//! default `info` none is made and no trace context is read from requests.

pub mod admin;
mod instruments;
mod otlp;
mod prometheus;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use opentelemetry::{
    propagation::Extractor,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithTonicConfig;
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator,
    trace::SdkTracerProvider,
};
use serde::Deserialize;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _,
    filter::{FilterExt as _, filter_fn},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

pub use instruments::{Metrics, metrics};

/// The `[telemetry]` table: where traces and metrics go and how logs look.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC collector to send traces and metrics to:
    /// `http://otel-collector:4317` in plaintext (a collector beside the
    /// gateway), `https://…` over TLS; the `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// environment variable overrides it. Absent, nothing is pushed.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// PEM CA certificates an `https://` collector's certificate must chain
    /// to; absent, the system's trust store.
    #[serde(default)]
    pub otlp_ca: Option<PathBuf>,
    /// PEM certificate chain presented to an `https://` collector that
    /// requires mutual TLS; with `otlp_client_key`.
    #[serde(default)]
    pub otlp_client_certificate: Option<PathBuf>,
    /// PEM private key of `otlp_client_certificate`.
    #[serde(default)]
    pub otlp_client_key: Option<PathBuf>,
    /// The `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Where to serve `GET /metrics` (Prometheus text), `/healthz` and
    /// `/readyz`; absent, no admin listener.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// `text` (default) or `json`; JSON lines carry the trace id of the
    /// request they belong to.
    #[serde(default)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object a line, with the current spans' fields.
    Json,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP exporter could not be built.
    #[error("cannot export to `{endpoint}`: {message}")]
    Exporter {
        /// The collector.
        endpoint: String,
        /// Why.
        message: String,
    },
}

/// The running exporters; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Clone)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: SdkMeterProvider,
    prometheus: Option<prometheus::Snapshot>,
}

/// Whether logs are written as JSON rather than text; set from
/// `LIAISON_LOG_FORMAT` at [`init`] and from the configuration at [`start`].
///
/// Both formats' layers are installed, each filtered on this flag, rather
/// than one layer swapped by `tracing_subscriber::reload`: a reloadable layer
/// defeats the subscriber's per-callsite interest cache (tokio-rs/tracing
/// #2325), so every disabled `trace` span in h2 and hyper would be created
/// and dropped on every request.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Set once [`init`] has installed the subscriber.
static INSTALLED: OnceLock<()> = OnceLock::new();

/// The tracer of the first gateway in this process configured to export.
/// The OpenTelemetry layer is installed from the start, filtered off until
/// this is set: a reloaded layer cannot be reached by
/// `OpenTelemetrySpanExt`, which the server span needs to join the caller's
/// trace.
static TRACER: OnceLock<opentelemetry_sdk::trace::Tracer> = OnceLock::new();

/// Hands spans to [`TRACER`].
#[derive(Debug, Clone, Copy)]
struct LateTracer;

impl opentelemetry::trace::Tracer for LateTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(
        &self,
        builder: opentelemetry::trace::SpanBuilder,
        parent_cx: &opentelemetry::Context,
    ) -> Self::Span {
        static OFF: OnceLock<opentelemetry_sdk::trace::Tracer> = OnceLock::new();
        let tracer = TRACER.get().unwrap_or_else(|| {
            OFF.get_or_init(|| {
                SdkTracerProvider::builder()
                    .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
                    .build()
                    .tracer("liaison")
            })
        });
        tracer.build_with_context(builder, parent_cx)
    }
}

fn default_service_name() -> String {
    "liaison".into()
}

/// The log level filter from `RUST_LOG` (default `info`), one per layer.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Whether the OpenTelemetry layer wants spans and events of `meta`'s
/// callsite: nothing until a tracer is set, then `info` and above, and the
/// gateway's own `debug` spans (the stages of a share).
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    TRACER.get().is_some()
        && (*meta.level() <= tracing::Level::INFO
            || (meta.is_span()
                && *meta.level() <= tracing::Level::DEBUG
                && meta.target().starts_with("liaison")))
}

/// Installs the global subscriber once; later calls do nothing. Logs are
/// text unless `LIAISON_LOG_FORMAT=json`, until [`start`] applies the
/// configured format; the level comes from `RUST_LOG` (default `info`).
pub fn init() {
    if INSTALLED.get().is_some() {
        return;
    }
    if std::env::var("LIAISON_LOG_FORMAT").is_ok_and(|v| v == "json") {
        JSON_LOGS.store(true, Ordering::Relaxed);
    }
    let text = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(log_filter().and(filter_fn(|_| !JSON_LOGS.load(Ordering::Relaxed))));
    // The span list carries the server span's `trace_id` and `span_id` on
    // every line written while serving a request.
    let json = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_filter(log_filter().and(filter_fn(|_| JSON_LOGS.load(Ordering::Relaxed))));
    // Each layer filters for itself, and every filter answers once per
    // callsite (the interest cache is rebuilt when the format or the tracer
    // changes), so a span is made only if some layer wants it: the stage
    // spans of a share are `debug`, below the logs' default level, and
    // wanted by the OpenTelemetry layer only while it exports. Telemetry
    // off, a disabled span costs a cached check.
    let otel =
        tracing_opentelemetry::OpenTelemetryLayer::new(LateTracer).with_filter(filter_fn(exported));
    let installed = tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(otel)
        .try_init();
    if installed.is_ok() {
        let _ = INSTALLED.set(());
    }
}

/// Starts exporting as `config` says: an OTLP pipeline for traces and
/// metrics when an endpoint is set, a Prometheus snapshot when an admin
/// listener is, and the log format.
pub fn start(config: &TelemetryConfig, base_dir: &Path) -> Result<Telemetry, TelemetryError> {
    init();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| config.otlp_endpoint.clone());
    let failed = |endpoint: &str, e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: endpoint.to_owned(),
        message: e.to_string(),
    };

    let mut meter = SdkMeterProvider::builder().with_resource(resource.clone());
    let tracer = match &endpoint {
        Some(endpoint) => {
            // One channel, so traces and metrics share a connection and a
            // TLS session.
            let channel = otlp::channel(endpoint, &config.otlp_tls(base_dir))
                .map_err(|e| failed(endpoint, &e))?;
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(channel.clone())
                .build()
                .map_err(|e| failed(endpoint, &e))?;
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .build()
                .map_err(|e| failed(endpoint, &e))?;
            meter = meter.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(metrics)
                    .with_interval(Duration::from_secs(15))
                    .build(),
            );
            Some(
                SdkTracerProvider::builder()
                    .with_resource(resource)
                    .with_batch_exporter(spans)
                    .build(),
            )
        }
        None => None,
    };
    let prometheus = config.admin_listen.map(|_| {
        let (reader, snapshot) = prometheus::reader();
        meter = std::mem::take(&mut meter).with_reader(reader);
        snapshot
    });
    let meter = meter.build();
    opentelemetry::global::set_meter_provider(meter.clone());
    instruments::install(&meter);

    JSON_LOGS.store(config.log_format == LogFormat::Json, Ordering::Relaxed);
    if let Some(provider) = &tracer {
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = TRACER.set(provider.tracer("liaison"));
    }
    // The filters' answers per callsite depend on both.
    tracing::callsite::rebuild_interest_cache();
    Ok(Telemetry {
        tracer,
        meter,
        prometheus,
    })
}

impl Telemetry {
    /// The Prometheus text of every instrument, collected now; `None` when
    /// no admin listener is configured.
    pub async fn prometheus_text(&self) -> Option<String> {
        let snapshot = self.prometheus.clone()?;
        let meter = self.meter.clone();
        // A flush collects synchronously on the reader's own thread.
        let _ = tokio::task::spawn_blocking(move || meter.force_flush()).await;
        Some(snapshot.text())
    }

    /// Flushes and stops the exporters: spans still batched are sent.
    pub async fn shutdown(self) {
        let Self { tracer, meter, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(tracer) = tracer {
                let _ = tracer.force_flush();
                let _ = tracer.shutdown();
            }
            let _ = meter.shutdown();
        })
        .await;
    }

    /// Sends every finished span now.
    pub async fn flush(&self) {
        let tracer = self.tracer.clone();
        let _ = tokio::task::spawn_blocking(move || tracer.map(|t| t.force_flush())).await;
    }
}

/// The OpenTelemetry trace id of the current span, when one is being
/// exported.
pub fn current_trace_id() -> Option<String> {
    TRACER.get()?;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The current span as a `traceparent` for a connector to send on.
pub fn current_trace_parent() -> Option<liaison_connectors::trace::TraceParent> {
    TRACER.get()?;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    liaison_connectors::trace::TraceParent::parse(&format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

/// Adds the per-RPC server span, continuing the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner }
    }
}

/// The server-span stage.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

impl<S, B> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().trim_start_matches('/');
        macro_rules! server_span {
            ($level:ident) => {
                tracing::span!(
                    tracing::Level::$level,
                    "grpc",
                    otel.name = %method,
                    otel.kind = "server",
                    rpc.system = "grpc",
                    rpc.method = %method,
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty,
                )
            };
        }
        // Not exporting, there is no trace to join or to name, and the span
        // is made only for logs at `debug`: at thousands of calls a second
        // a span per call (and the ledger's database driver capturing it
        // per statement) was a tenth of the gateway's CPU.
        let exporting = TRACER.get().is_some();
        let span = if exporting {
            server_span!(INFO)
        } else {
            server_span!(DEBUG)
        };
        if exporting {
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&Headers(req.headers()))
            });
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
            let sc = span.context().span().span_context().clone();
            if sc.is_valid() {
                span.record("trace_id", sc.trace_id().to_string());
                span.record("span_id", sc.span_id().to_string());
            }
        }
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(future.instrument(span))
    }
}

impl TelemetryConfig {
    /// The collector's TLS settings, resolved against `base_dir`.
    fn otlp_tls(&self, base_dir: &Path) -> otlp::OtlpTls {
        otlp::OtlpTls {
            ca: self.otlp_ca.as_ref().map(|p| base_dir.join(p)),
            identity: self
                .otlp_client_certificate
                .as_ref()
                .zip(self.otlp_client_key.as_ref())
                .map(|(c, k)| (base_dir.join(c), base_dir.join(k))),
        }
    }

    /// What is wrong, as `(key, message)`; files are read relative to
    /// `base_dir`.
    pub fn problems(&self, base_dir: &Path) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let tls_set = self.otlp_ca.is_some()
            || self.otlp_client_certificate.is_some()
            || self.otlp_client_key.is_some();
        match &self.otlp_endpoint {
            Some(endpoint) if endpoint.starts_with("https://") => {
                if self.otlp_client_certificate.is_some() != self.otlp_client_key.is_some() {
                    out.push((
                        "otlp_client_certificate",
                        "`otlp_client_certificate` and `otlp_client_key` go together".to_owned(),
                    ));
                } else if let Err(e) = otlp::channel_config_check(&self.otlp_tls(base_dir)) {
                    out.push(("otlp_endpoint", e));
                }
            }
            Some(endpoint) if endpoint.starts_with("http://") && tls_set => out.push((
                "otlp_ca",
                format!(
                    "`{endpoint}` is plaintext: `otlp_ca` and the client certificate apply only to an `https://` collector"
                ),
            )),
            Some(endpoint) if endpoint.starts_with("http://") => {}
            Some(endpoint) => out.push((
                "otlp_endpoint",
                format!("`{endpoint}` must be an `http://` or `https://` URL of a collector"),
            )),
            None if tls_set => out.push((
                "otlp_ca",
                "TLS settings without an `otlp_endpoint`".to_owned(),
            )),
            None => {}
        }
        if self.service_name.trim().is_empty() {
            out.push(("service_name", "must not be empty".to_owned()));
        }
        out
    }
}

#[cfg(test)]
mod tests;
