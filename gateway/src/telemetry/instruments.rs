//! The gateway's instruments, created once from the first configured meter
//! provider. Without `[telemetry]` there are none and recording is a no-op.

use std::{sync::OnceLock, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, MeterProvider as _},
};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// Every instrument the gateway records into.
#[derive(Debug, Clone)]
pub struct Metrics {
    meter: Meter,
    shares: Counter<u64>,
    denials: Counter<u64>,
    refusals: Counter<u64>,
    connector_duration: Histogram<f64>,
    connector_errors: Counter<u64>,
    ledger_append: Histogram<f64>,
    jwks_refreshes: Counter<u64>,
    break_glass: Counter<u64>,
    alerts_dropped: Counter<u64>,
    tls_reloads: Counter<u64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The instruments, when telemetry is configured.
pub fn metrics() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Bounds in seconds, from a cached lookup to a slow legacy source.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(super) fn install(provider: &SdkMeterProvider) {
    let meter = provider.meter("liaison");
    let _ = METRICS.set(Metrics {
        shares: meter
            .u64_counter("liaison.shares")
            .with_description("Shares answered, by gRPC method and audited outcome")
            .build(),
        denials: meter
            .u64_counter("liaison.denials")
            .with_description("Shares refused by policy, by reason")
            .build(),
        refusals: meter
            .u64_counter("liaison.admission.refusals")
            .with_description(
                "Requests refused at admission (RESOURCE_EXHAUSTED) before any policy or ledger work, by agency and limit (rate, concurrency, in_flight)",
            )
            .build(),
        connector_duration: meter
            .f64_histogram("liaison.connector.duration")
            .with_unit("s")
            .with_description("Time one connector took to answer its part of a share, by dataset")
            .with_boundaries(LATENCY_BOUNDS.to_vec())
            .build(),
        connector_errors: meter
            .u64_counter("liaison.connector.errors")
            .with_description("Connector calls that failed or missed the deadline, by dataset")
            .build(),
        ledger_append: meter
            .f64_histogram("liaison.ledger.append.duration")
            .with_unit("s")
            .with_description("Time to append one audit entry durably (group commit included)")
            .with_boundaries(LATENCY_BOUNDS.to_vec())
            .build(),
        jwks_refreshes: meter
            .u64_counter("liaison.jwks.refreshes")
            .with_description("Issuer key set fetches, by issuer and result")
            .build(),
        break_glass: meter
            .u64_counter("liaison.break_glass")
            .with_description(
                "Shares allowed under break-glass, each awaiting DPO review, by agency",
            )
            .build(),
        tls_reloads: meter
            .u64_counter("liaison.tls.reloads")
            .with_description(
                "Changed TLS files (certificate, key, client CAs, CRLs) put in service (ok=true) or refused (ok=false)",
            )
            .build(),
        alerts_dropped: meter
            .u64_counter("liaison.alerts.dropped")
            .with_description(
                "Alert webhook deliveries given up (queue_full, undeliverable, closed), by reason",
            )
            .build(),
        meter,
    });
}

impl Metrics {
    /// One share answered with `outcome` (the audit outcome).
    pub fn share(&self, method: &str, outcome: &str) {
        let method = method.rsplit('/').next().unwrap_or(method).to_owned();
        self.shares.add(
            1,
            &[
                KeyValue::new("method", method),
                KeyValue::new("outcome", outcome.to_owned()),
            ],
        );
    }

    /// One share refused by policy.
    pub fn denial(&self, reason: &str) {
        self.denials
            .add(1, &[KeyValue::new("reason", reason.to_owned())]);
    }

    /// One request refused at admission.
    pub fn refusal(&self, agency: &str, limit: &'static str) {
        self.refusals.add(
            1,
            &[
                KeyValue::new("agency", agency.to_owned()),
                KeyValue::new("limit", limit),
            ],
        );
    }

    /// One connector call; `error` names how it failed, if it did.
    pub fn connector(&self, dataset: &str, took: Duration, error: Option<&'static str>) {
        let dataset = KeyValue::new("dataset", dataset.to_owned());
        self.connector_duration
            .record(took.as_secs_f64(), std::slice::from_ref(&dataset));
        if let Some(kind) = error {
            self.connector_errors
                .add(1, &[dataset, KeyValue::new("kind", kind)]);
        }
    }

    /// One durable append to the ledger.
    pub fn ledger_append(&self, took: Duration, ok: bool) {
        self.ledger_append
            .record(took.as_secs_f64(), &[KeyValue::new("ok", ok)]);
    }

    /// One share allowed under break-glass.
    pub fn break_glass(&self, agency: &str) {
        self.break_glass
            .add(1, &[KeyValue::new("agency", agency.to_owned())]);
    }

    /// One alert webhook delivery given up.
    pub fn alert_dropped(&self, reason: &'static str) {
        self.alerts_dropped
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// One reload of the listener's TLS files.
    pub fn tls_reload(&self, ok: bool) {
        self.tls_reloads.add(1, &[KeyValue::new("ok", ok)]);
    }

    /// Reports when the certificate in service expires, so an alert can
    /// fire before it does, and whether the latest reload was refused.
    pub fn observe_tls(&self, acceptor: crate::tls::Acceptor) {
        let a = acceptor.clone();
        let _ = self
            .meter
            .i64_observable_gauge("liaison.tls.certificate.not_after")
            .with_unit("s")
            .with_description("When the listener's certificate in service expires, in Unix seconds")
            .with_callback(move |o| {
                o.observe(a.status().certificate_not_after.unix_timestamp(), &[])
            })
            .build();
        let _ = self
            .meter
            .u64_observable_gauge("liaison.tls.reload.failing")
            .with_description(
                "1 while the latest change to the TLS files was refused and the previous material is still served",
            )
            .with_callback(move |o| o.observe(u64::from(acceptor.status().last_error.is_some()), &[]))
            .build();
    }

    /// One fetch of an issuer's keys.
    pub fn jwks_refresh(&self, issuer: &str, ok: bool) {
        self.jwks_refreshes.add(
            1,
            &[
                KeyValue::new("issuer", issuer.to_owned()),
                KeyValue::new("ok", ok),
            ],
        );
    }

    /// Reports each connector's circuit breaker (1 for the state it is in,
    /// 0 for the others) and its resilience counters, by dataset.
    pub fn observe_connectors(&self, registry: std::sync::Arc<liaison_connectors::Registry>) {
        use liaison_connectors::CircuitState;
        let r = registry.clone();
        let _ = self
            .meter
            .u64_observable_gauge("liaison.connector.circuit")
            .with_description("Circuit breaker state by dataset: 1 for the current state")
            .with_callback(move |o| {
                for (dataset, stats) in r.all_stats() {
                    for state in [
                        CircuitState::Closed,
                        CircuitState::Open,
                        CircuitState::HalfOpen,
                    ] {
                        o.observe(
                            u64::from(stats.circuit == state),
                            &[
                                KeyValue::new("dataset", dataset.to_owned()),
                                KeyValue::new("state", state.as_str()),
                            ],
                        );
                    }
                }
            })
            .build();
        let _ = self
            .meter
            .u64_observable_counter("liaison.connector.rejected")
            .with_description("Connector calls refused at once because the circuit was open")
            .with_callback(move |o| {
                for (dataset, stats) in registry.all_stats() {
                    o.observe(
                        stats.rejected,
                        &[KeyValue::new("dataset", dataset.to_owned())],
                    );
                }
            })
            .build();
    }

    /// Reports the ledger writer's group-commit counters: transactions and
    /// entries (their ratio is the mean batch size) and the largest batch.
    pub fn observe_ledger(&self, ledger: std::sync::Arc<liaison_ledger::Ledger>) {
        let l = ledger.clone();
        let _ = self
            .meter
            .u64_observable_counter("liaison.ledger.transactions")
            .with_description("Group-commit transactions committed")
            .with_callback(move |o| o.observe(l.stats().transactions, &[]))
            .build();
        let l = ledger.clone();
        let _ = self
            .meter
            .u64_observable_counter("liaison.ledger.entries")
            .with_description("Audit entries committed; divided by transactions, the mean batch")
            .with_callback(move |o| o.observe(l.stats().entries, &[]))
            .build();
        let _ = self
            .meter
            .u64_observable_gauge("liaison.ledger.largest_batch")
            .with_description("The most appends one group-commit transaction answered")
            .with_callback(move |o| o.observe(ledger.stats().largest_batch, &[]))
            .build();
    }
}
