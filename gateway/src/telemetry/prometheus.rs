//! Prometheus text from the OpenTelemetry SDK.
//!
//! Why not `opentelemetry-prometheus`: it is no longer maintained upstream
//! and brings the `prometheus` crate (and its `protobuf`) for a text format
//! that takes a page to write. Why not `prometheus-client`: every
//! instrument would be kept twice. Instead a [`PushMetricExporter`] behind
//! the SDK's own periodic reader renders each collection as text into a
//! shared snapshot; a scrape forces a collection first, so it is current.
//! This needs no experimental SDK feature and no dependency.

use std::{
    fmt::Write as _,
    sync::{Arc, RwLock},
    time::Duration,
};

use opentelemetry::KeyValue;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    metrics::{
        PeriodicReader, Temporality,
        data::{AggregatedMetrics, MetricData, ResourceMetrics},
        exporter::PushMetricExporter,
    },
};

/// The last rendering, shared between the exporter and the admin listener.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot(Arc<RwLock<String>>);

impl Snapshot {
    pub(super) fn text(&self) -> String {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
struct TextExporter(Snapshot);

/// A reader whose collections are rendered into the returned snapshot. Its
/// own interval is long: scrapes flush it.
pub(super) fn reader() -> (PeriodicReader<impl PushMetricExporter>, Snapshot) {
    let snapshot = Snapshot::default();
    let reader = PeriodicReader::builder(TextExporter(snapshot.clone()))
        .with_interval(Duration::from_secs(3600))
        .build();
    (reader, snapshot)
}

impl PushMetricExporter for TextExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let text = render(metrics);
        if let Ok(mut s) = self.0.0.write() {
            *s = text;
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// `liaison.shares` with unit `{share}` → `liaison_shares_total`.
fn name(metric: &str) -> String {
    metric
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attrs
        .map(|kv| {
            let value = kv.value.to_string();
            format!(
                "{}=\"{}\"",
                name(kv.key.as_str()),
                value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn render(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let base = name(metric.name());
            let help = metric.description().replace('\n', " ");
            match metric.data() {
                AggregatedMetrics::U64(data) => render_data(&mut out, &base, &help, data),
                AggregatedMetrics::I64(data) => render_data(&mut out, &base, &help, data),
                AggregatedMetrics::F64(data) => render_data(&mut out, &base, &help, data),
            }
        }
    }
    out
}

fn render_data<T: Copy + std::fmt::Display>(
    out: &mut String,
    base: &str,
    help: &str,
    data: &MetricData<T>,
) {
    match data {
        MetricData::Gauge(g) => {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} gauge");
            for p in g.data_points() {
                let _ = writeln!(out, "{base}{} {}", labels(p.attributes(), None), p.value());
            }
        }
        MetricData::Sum(s) => {
            let (kind, full) = if s.is_monotonic() {
                ("counter", format!("{base}_total"))
            } else {
                ("gauge", base.to_owned())
            };
            let _ = writeln!(out, "# HELP {full} {help}\n# TYPE {full} {kind}");
            for p in s.data_points() {
                let _ = writeln!(out, "{full}{} {}", labels(p.attributes(), None), p.value());
            }
        }
        MetricData::Histogram(h) => {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} histogram");
            for p in h.data_points() {
                let attrs: Vec<KeyValue> = p.attributes().cloned().collect();
                let mut cumulative = 0;
                for (bound, count) in p.bounds().zip(p.bucket_counts()) {
                    cumulative += count;
                    let _ = writeln!(
                        out,
                        "{base}_bucket{} {cumulative}",
                        labels(attrs.iter(), Some(("le", bound.to_string())))
                    );
                }
                let _ = writeln!(
                    out,
                    "{base}_bucket{} {}",
                    labels(attrs.iter(), Some(("le", "+Inf".into()))),
                    p.count()
                );
                let _ = writeln!(out, "{base}_sum{} {}", labels(attrs.iter(), None), p.sum());
                let _ = writeln!(
                    out,
                    "{base}_count{} {}",
                    labels(attrs.iter(), None),
                    p.count()
                );
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}
