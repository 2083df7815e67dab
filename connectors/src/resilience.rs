//! The middleware every connector built by the [`Registry`](crate::Registry)
//! runs behind: a deadline per call, a bounded concurrency limit, a circuit
//! breaker, retries with jittered backoff for reads, a span per call and
//! counters for metrics.
//!
//! It is one wrapper, [`Resilient`], rather than a stack of tower layers,
//! because the parts share one budget: the deadline covers waiting for a
//! slot, every attempt and every backoff, and a retry is only worth starting
//! if it can finish inside what is left. tower's `Timeout` covers a single
//! `call` (not `poll_ready`, where `ConcurrencyLimit` waits), its `Retry`
//! knows nothing of deadlines, and 0.5 has no circuit breaker; connector
//! futures also borrow their arguments, which tower's owned requests would
//! force the gateway to clone. The breaker is a small state machine tested
//! on its own (`resilience/tests.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use liaison_proto::v1::RecordKind;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    BoxFuture, ChangeCursor, Changes, Connector, ConnectorError, DatasetDescriptor, Fault, Fetched,
    Found, PersonQuery,
};

/// Resilience settings for one connector, under `[resilience]` in its
/// configuration. Every key is optional; the defaults suit a source on the
/// same network answering in well under a second.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceConfig {
    /// The most one call may take, from first asking for a slot to the last
    /// attempt's answer, in milliseconds. Default 5000. The gateway's own
    /// deadline still applies; the shorter wins.
    pub deadline_ms: u64,
    /// The most calls in progress at once. Default 8.
    pub max_concurrency: usize,
    /// The most calls waiting for a slot; more are refused at once as
    /// overloaded rather than queued. Default 64.
    pub max_waiting: usize,
    /// Consecutive failed or timed-out attempts that open the circuit.
    /// Default 5.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before letting one trial call
    /// through, in milliseconds. Default 30000.
    pub cool_down_ms: u64,
    /// Attempts per read (`search`, `fetch`), the first included; 1 turns
    /// retries off. Default 3.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling in milliseconds; it doubles per
    /// retry up to `backoff_max_ms`, and each wait is drawn uniformly below
    /// the ceiling ("full jitter"). Default 50.
    pub backoff_base_ms: u64,
    /// The largest backoff ceiling, in milliseconds. Default 1000.
    pub backoff_max_ms: u64,
}

/// A snapshot of one connector's counters, for metrics and health pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorStats {
    /// Calls made (`search`, `fetch`, `check`), whatever their outcome.
    pub calls: u64,
    /// Calls that ended in an error that was not the caller's: timeouts,
    /// refusals by the breaker or the limit, source and configuration
    /// faults.
    pub failures: u64,
    /// Calls that ran out of time.
    pub timeouts: u64,
    /// Extra attempts made after a transient failure.
    pub retries: u64,
    /// Calls refused at once because the circuit was open.
    pub rejected: u64,
    /// The breaker's state now.
    pub circuit: CircuitState,
}

/// The state of a connector's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; failures are being counted.
    Closed,
    /// Calls fail at once until the cool-down ends.
    Open,
    /// The cool-down has ended and one trial call decides what happens.
    HalfOpen,
}

/// A connector behind the resilience middleware.
#[derive(Debug)]
pub struct Resilient {
    inner: Arc<dyn Connector>,
    settings: Settings,
    slots: Semaphore,
    waiting: AtomicUsize,
    breaker: Mutex<Breaker>,
    // Mirrors the breaker's state so a snapshot never waits on its lock.
    circuit: AtomicU8,
    counters: Counters,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    deadline: Duration,
    max_concurrency: usize,
    max_waiting: usize,
    failure_threshold: u32,
    cool_down: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
}

/// The circuit breaker's state machine, without clocks of its own: every
/// transition is given the time, so tests can drive it directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: BreakerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down is over; `trial` is whether the one trial call is out.
    HalfOpen {
        trial: bool,
    },
}

/// What the breaker allows a call to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A normal call, which may retry.
    Normal,
    /// The one trial call of a half-open circuit: no retries.
    Trial,
}

/// How an attempt ended, as far as the source's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The source answered.
    Success,
    /// The source failed or did not answer in time.
    Failure,
    /// The attempt says nothing about the source (the caller's mistake,
    /// the call was dropped).
    Neutral,
}

#[derive(Debug, Clone, Copy)]
enum Operation {
    Search,
    Fetch,
    Changes,
    Check,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 5_000,
            max_concurrency: 8,
            max_waiting: 64,
            failure_threshold: 5,
            cool_down_ms: 30_000,
            max_attempts: 3,
            backoff_base_ms: 50,
            backoff_max_ms: 1_000,
        }
    }
}

impl ResilienceConfig {
    /// Problems with the settings, each `resilience.key: what is wrong`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut at_least_one = |key: &str, value: u64| {
            if value == 0 {
                problems.push(format!("resilience.{key}: must be at least 1"));
            }
        };
        at_least_one("deadline_ms", self.deadline_ms);
        at_least_one("max_concurrency", self.max_concurrency as u64);
        at_least_one("failure_threshold", u64::from(self.failure_threshold));
        at_least_one("max_attempts", u64::from(self.max_attempts));
        if self.max_attempts > 10 {
            problems.push("resilience.max_attempts: must be at most 10".to_owned());
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            problems.push(
                "resilience.backoff_base_ms: must not be more than `backoff_max_ms`".to_owned(),
            );
        }
        problems
    }

    fn settings(&self) -> Settings {
        Settings {
            deadline: Duration::from_millis(self.deadline_ms.max(1)),
            max_concurrency: self.max_concurrency.max(1),
            max_waiting: self.max_waiting,
            failure_threshold: self.failure_threshold.max(1),
            cool_down: Duration::from_millis(self.cool_down_ms),
            max_attempts: self.max_attempts.clamp(1, 10),
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms.max(self.backoff_base_ms)),
        }
    }
}

impl CircuitState {
    /// The state's name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Fetch => "fetch",
            Self::Changes => "changes",
            Self::Check => "check",
        }
    }
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        match self.state {
            BreakerState::Closed { .. } => CircuitState::Closed,
            BreakerState::Open { .. } => CircuitState::Open,
            BreakerState::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Lets a call through, or says how long until one will be.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<Admission, Duration> {
        match self.state {
            BreakerState::Closed { .. } => Ok(Admission::Normal),
            BreakerState::Open { until } if now < until => Err(until - now),
            BreakerState::Open { .. } | BreakerState::HalfOpen { trial: false } => {
                self.state = BreakerState::HalfOpen { trial: true };
                Ok(Admission::Trial)
            }
            // Another call is the trial; this one waits for its verdict
            // without adding load to a source that may still be down.
            BreakerState::HalfOpen { trial: true } => Err(Duration::ZERO),
        }
    }

    /// Whether a further attempt of a normal call may go ahead: not once
    /// the circuit has opened under it.
    pub(crate) fn allows_retry(&self) -> bool {
        matches!(self.state, BreakerState::Closed { .. })
    }

    /// Records how one attempt ended.
    pub(crate) fn record(&mut self, admission: Admission, outcome: Outcome, now: Instant) {
        let open = BreakerState::Open {
            until: now + self.cool_down,
        };
        self.state = match (self.state, admission, outcome) {
            (BreakerState::HalfOpen { .. }, Admission::Trial, Outcome::Success) => {
                BreakerState::Closed { failures: 0 }
            }
            (BreakerState::HalfOpen { .. }, Admission::Trial, Outcome::Failure) => open,
            // A trial that proved nothing frees the slot for the next call.
            (BreakerState::HalfOpen { .. }, Admission::Trial, Outcome::Neutral) => {
                BreakerState::HalfOpen { trial: false }
            }
            (BreakerState::Closed { .. }, _, Outcome::Success) => {
                BreakerState::Closed { failures: 0 }
            }
            (BreakerState::Closed { failures }, _, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    open
                } else {
                    BreakerState::Closed { failures }
                }
            }
            // Late answers from calls admitted before the circuit changed
            // state do not move it.
            (state, _, _) => state,
        };
    }
}

/// Records a trial's verdict even when the call is dropped mid-flight, so a
/// cancelled trial cannot leave the circuit half-open for ever.
struct AttemptGuard<'a> {
    resilient: &'a Resilient,
    admission: Admission,
    done: bool,
}

impl AttemptGuard<'_> {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.resilient.record(self.admission, outcome);
    }
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.resilient.record(self.admission, Outcome::Neutral);
        }
    }
}

/// One caller waiting for a slot, counted for as long as it lives.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// How many were waiting before this one.
    before: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::AcqRel);
        Self { count, before }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Resilient {
    /// Puts `inner` behind the middleware with the given settings (checked
    /// with [`ResilienceConfig::problems`] beforehand; out-of-range values
    /// are clamped here).
    pub fn new(inner: Arc<dyn Connector>, config: &ResilienceConfig) -> Self {
        let settings = config.settings();
        Self {
            inner,
            slots: Semaphore::new(settings.max_concurrency),
            waiting: AtomicUsize::new(0),
            breaker: Mutex::new(Breaker::new(settings.failure_threshold, settings.cool_down)),
            circuit: AtomicU8::new(CircuitState::Closed.to_u8()),
            counters: Counters::default(),
            settings,
        }
    }

    /// The connector inside.
    pub fn inner(&self) -> &Arc<dyn Connector> {
        &self.inner
    }

    /// The counters and the breaker's state now.
    pub fn stats(&self) -> ConnectorStats {
        let c = &self.counters;
        ConnectorStats {
            calls: c.calls.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            circuit: CircuitState::from_u8(self.circuit.load(Ordering::Relaxed)),
        }
    }

    fn dataset(&self) -> String {
        self.inner.descriptor().id.clone()
    }

    fn record(&self, admission: Admission, outcome: Outcome) {
        let mut breaker = self.breaker.lock();
        let before = breaker.state();
        breaker.record(admission, outcome, Instant::now());
        let after = breaker.state();
        drop(breaker);
        self.circuit.store(after.to_u8(), Ordering::Relaxed);
        if before != after {
            tracing::warn!(
                dataset = %self.inner.descriptor().id,
                from = before.as_str(),
                to = after.as_str(),
                "connector circuit changed state"
            );
        }
    }

    fn admit(&self) -> Result<Admission, Duration> {
        let mut breaker = self.breaker.lock();
        let admitted = breaker.admit(Instant::now());
        self.circuit
            .store(breaker.state().to_u8(), Ordering::Relaxed);
        admitted
    }

    /// The ceiling of the backoff before retry number `retry` (1-based).
    fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }

    /// Runs one call through the middleware. `attempt` makes a fresh
    /// future per attempt; `idempotent` allows retries.
    async fn call<'a, T>(
        &'a self,
        operation: Operation,
        idempotent: bool,
        attempt: impl Fn() -> BoxFuture<'a, Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        let span = tracing::debug_span!(
            "connector.call",
            dataset = %self.inner.descriptor().id,
            operation = operation.as_str(),
            outcome = tracing::field::Empty,
            attempt = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .run(operation, idempotent, attempt)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ConnectorError::DeadlineExceeded { .. }) => "timeout",
            Err(ConnectorError::CircuitOpen { .. }) => "circuit_open",
            Err(ConnectorError::Overloaded { .. }) => "overloaded",
            Err(e) => match e.fault() {
                Fault::Caller => "caller_error",
                Fault::Source => "source_error",
                Fault::Configuration => "configuration_error",
            },
        };
        span.record("outcome", outcome);
        if let Err(e) = &result
            && e.fault() != Fault::Caller
        {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(
            parent: &span,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connector call finished"
        );
        result
    }

    async fn run<'a, T>(
        &'a self,
        operation: Operation,
        idempotent: bool,
        attempt: impl Fn() -> BoxFuture<'a, Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let s = self.settings;
        let deadline = Instant::now() + s.deadline;
        let timed_out = || {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            ConnectorError::DeadlineExceeded {
                dataset: self.dataset(),
                operation: operation.as_str(),
                after: s.deadline,
            }
        };

        let admission = match self.admit() {
            Ok(admission) => admission,
            Err(retry_in) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(ConnectorError::CircuitOpen {
                    dataset: self.dataset(),
                    retry_in,
                });
            }
        };
        // Whatever happens from here, the breaker hears about it.
        let mut guard = Some(AttemptGuard {
            resilient: self,
            admission,
            done: false,
        });

        let overloaded = || ConnectorError::Overloaded {
            dataset: self.dataset(),
            limit: s.max_concurrency,
        };
        let _permit = match self.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                // Counted out again on every path, a dropped call included.
                let waiting = Waiting::enter(&self.waiting);
                if waiting.before >= s.max_waiting {
                    return Err(overloaded());
                }
                let acquired = tokio::time::timeout_at(deadline, self.slots.acquire()).await;
                match acquired {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; treat it as busy.
                    Ok(Err(_)) | Err(_) => return Err(overloaded()),
                }
            }
        };

        let max_attempts = match (admission, idempotent) {
            (Admission::Normal, true) => s.max_attempts,
            _ => 1,
        };
        let mut number = 1;
        loop {
            tracing::Span::current().record("attempt", number);
            let answer = tokio::time::timeout_at(deadline, attempt()).await;
            let current = guard.take();
            let error = match answer {
                Err(_) => {
                    if let Some(g) = current {
                        g.finish(Outcome::Failure);
                    }
                    return Err(timed_out());
                }
                Ok(Ok(value)) => {
                    if let Some(g) = current {
                        g.finish(Outcome::Success);
                    }
                    return Ok(value);
                }
                Ok(Err(error)) => error,
            };
            let outcome = match error.fault() {
                Fault::Source => Outcome::Failure,
                // The source answered; the request or mapping was wrong.
                Fault::Caller | Fault::Configuration => Outcome::Neutral,
            };
            if let Some(g) = current {
                g.finish(outcome);
            }
            if number >= max_attempts || !error.is_transient() {
                return Err(error);
            }
            let wait = self.backoff_ceiling(number).mul_f64(fastrand::f64());
            if Instant::now() + wait >= deadline || !self.breaker.lock().allows_retry() {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            number += 1;
            guard = Some(AttemptGuard {
                resilient: self,
                admission,
                done: false,
            });
        }
    }
}

impl Connector for Resilient {
    fn descriptor(&self) -> &DatasetDescriptor {
        self.inner.descriptor()
    }

    fn search<'a>(
        &'a self,
        query: &'a PersonQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(self.call(Operation::Search, true, move || {
            self.inner.search(query, limit)
        }))
    }

    fn fetch<'a>(
        &'a self,
        source_id: &'a str,
        kinds: &'a [RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(self.call(Operation::Fetch, true, move || {
            self.inner.fetch(source_id, kinds)
        }))
    }

    fn changes<'a>(
        &'a self,
        after: Option<&'a ChangeCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Changes, ConnectorError>> {
        // Reading a feed from a cursor is a read like any other.
        Box::pin(self.call(Operation::Changes, true, move || {
            self.inner.changes(after, limit)
        }))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        // A check is an operator's question about the source; it is not
        // retried, so the answer reflects one honest try.
        Box::pin(self.call(Operation::Check, false, move || self.inner.check()))
    }
}

#[cfg(test)]
mod tests;
