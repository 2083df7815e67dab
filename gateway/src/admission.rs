//! Admit: a tower layer after authentication that decides whether the
//! gateway takes a request on at all, before any policy, connector or
//! ledger work is spent on it.
//!
//! Three limits, each refusing at once with `RESOURCE_EXHAUSTED` and a
//! `RetryInfo` rather than queueing, so an overloaded gateway answers fast
//! and its memory stays bounded:
//!
//! - a **rate** per agency (a GCRA token bucket from `governor`), so one
//!   agency's misbehaving system cannot starve the others;
//! - a **concurrency** limit per agency, which bounds what one agency's slow
//!   sources or slow clients can hold;
//! - a **total in-flight** limit across agencies: load shedding.
//!
//! Refusals are counted (`liaison.admission.refusals`) and logged, not
//! written to the ledger: a request refused here has disclosed nothing and
//! reached no policy, and recording each would let a flood fill the audit
//! store. For the same reason the log says at most once a second per agency
//! how many were refused: a line per refusal would make a flood's cost a
//! formatted write to standard error per call, paid by every agency.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};
use http::{Request, Response};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{body::Body, server::NamedService};
use tower::{Layer, Service};

use crate::{error::GatewayError, identity::Principal};

/// `[server.limits]`: what one replica admits. Every agency gets the same
/// limits; a deployment of N replicas admits N times as much in total.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second from one agency.
    #[serde(default = "default_rate")]
    pub agency_requests_per_second: u32,
    /// Requests one agency may send at once above the sustained rate.
    #[serde(default = "default_burst")]
    pub agency_burst: u32,
    /// Requests one agency may have in progress at once.
    #[serde(default = "default_agency_concurrency")]
    pub agency_max_concurrent: u32,
    /// Requests in progress across all agencies; beyond it new requests
    /// are shed.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
}

fn default_rate() -> u32 {
    500
}
fn default_burst() -> u32 {
    1000
}
fn default_agency_concurrency() -> u32 {
    256
}
fn default_in_flight() -> u32 {
    1024
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            agency_requests_per_second: default_rate(),
            agency_burst: default_burst(),
            agency_max_concurrent: default_agency_concurrency(),
            max_in_flight: default_in_flight(),
        }
    }
}

impl LimitsConfig {
    /// Problems with the values, as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, value) in [
            (
                "agency_requests_per_second",
                self.agency_requests_per_second,
            ),
            ("agency_burst", self.agency_burst),
            ("agency_max_concurrent", self.agency_max_concurrent),
            ("max_in_flight", self.max_in_flight),
        ] {
            if value == 0 {
                out.push((key, "must be at least 1".to_owned()));
            }
        }
        if self.agency_max_concurrent > self.max_in_flight {
            out.push((
                "agency_max_concurrent",
                "must not exceed max_in_flight".to_owned(),
            ));
        }
        out
    }
}

/// One agency's admission state.
#[derive(Debug)]
struct AgencyGate {
    rate: DefaultDirectRateLimiter,
    concurrency: Arc<Semaphore>,
    refusals: RefusalLog,
}

/// How often, at most, one agency's refusals are logged.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// When one agency's refusals were last logged, and how many have not been
/// since.
#[derive(Debug, Default)]
struct RefusalLog {
    /// Milliseconds from [`Gates::epoch`] to the last line, plus one; 0 is
    /// never.
    logged_at: AtomicU64,
    unlogged: AtomicU64,
}

impl RefusalLog {
    /// Whether a refusal at `now_ms` is logged, and if so how many before
    /// it were not.
    fn take(&self, now_ms: u64) -> Option<u64> {
        let last = self.logged_at.load(Ordering::Relaxed);
        let every = LOG_EVERY.as_millis() as u64;
        let due = last == 0 || now_ms + 1 >= last + every;
        if due
            && self
                .logged_at
                .compare_exchange(last, now_ms + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.unlogged.swap(0, Ordering::Relaxed));
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The shared admission state.
#[derive(Debug)]
struct Gates {
    agencies: HashMap<String, AgencyGate>,
    in_flight: Arc<Semaphore>,
    clock: DefaultClock,
    epoch: Instant,
}

/// What admission holds while a request runs; dropping it frees the slots.
#[derive(Debug)]
struct Admitted {
    _agency: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Gates {
    fn admit(&self, principal: &Principal) -> Result<Admitted, GatewayError> {
        // Agencies come from the trust registry, so an authenticated
        // principal always has a gate; refuse rather than admit unlimited.
        let gate = self
            .agencies
            .get(&principal.agency)
            .ok_or(GatewayError::Overloaded)?;
        let total = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::Overloaded)?;
        let agency = gate.concurrency.clone().try_acquire_owned().map_err(|_| {
            GatewayError::RateLimited {
                agency: principal.agency.clone(),
                limit: "concurrency",
                retry_after: Duration::from_millis(50),
            }
        })?;
        gate.rate
            .check()
            .map_err(|not_until| GatewayError::RateLimited {
                agency: principal.agency.clone(),
                limit: "rate",
                retry_after: whole_millis(not_until.wait_time_from(self.clock.now())),
            })?;
        Ok(Admitted {
            _agency: agency,
            _total: total,
        })
    }

    /// Counts a refusal and logs it if the agency's refusals were not
    /// logged in the last [`LOG_EVERY`].
    fn refused(&self, principal: &Principal, refusal: &GatewayError) {
        let limit = match refusal {
            GatewayError::RateLimited { limit, .. } => limit,
            _ => "in_flight",
        };
        if let Some(metrics) = crate::telemetry::metrics() {
            metrics.refusal(&principal.agency, limit);
        }
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let unlogged = match self.agencies.get(&principal.agency) {
            Some(gate) => gate.refusals.take(now_ms),
            None => Some(0),
        };
        if let Some(unlogged) = unlogged {
            tracing::warn!(
                agency = %principal.agency,
                limit,
                reason = refusal.reason(),
                refused_unlogged = unlogged,
                error = %refusal,
                "request refused at admission (one line a second per agency; refused_unlogged counts the rest)",
            );
        }
    }
}

/// `wait` rounded up to a whole millisecond, at least one: a client needs no
/// finer advice, and a refusal's status then repeats word for word, which
/// HTTP/2 header compression sends as a table reference.
fn whole_millis(wait: Duration) -> Duration {
    let millis = wait.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Adds admission control.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    gates: Arc<Gates>,
}

impl AdmissionLayer {
    /// Limits each of `agencies` as `limits` say.
    pub fn new<'a>(limits: &LimitsConfig, agencies: impl IntoIterator<Item = &'a str>) -> Self {
        let one = NonZeroU32::MIN;
        let rate = NonZeroU32::new(limits.agency_requests_per_second).unwrap_or(one);
        let burst = NonZeroU32::new(limits.agency_burst).unwrap_or(one);
        let quota = Quota::per_second(rate).allow_burst(burst);
        let per_agency = limits.agency_max_concurrent as usize;
        let agencies = agencies
            .into_iter()
            .map(|id| {
                (
                    id.to_owned(),
                    AgencyGate {
                        rate: RateLimiter::direct(quota),
                        concurrency: Arc::new(Semaphore::new(per_agency)),
                        refusals: RefusalLog::default(),
                    },
                )
            })
            .collect();
        Self {
            gates: Arc::new(Gates {
                agencies,
                in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
                clock: DefaultClock::default(),
                epoch: Instant::now(),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            gates: self.gates.clone(),
        }
    }
}

/// The admission stage.
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    gates: Arc<Gates>,
}

impl<S: NamedService> NamedService for Admission<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Admission<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Requests without a principal (health, reflection) pass: they
        // reach no data and cost next to nothing.
        let admitted = req.extensions().get::<Arc<Principal>>().map(|principal| {
            let _span = tracing::debug_span!("admit", agency = %principal.agency).entered();
            self.gates.admit(principal).inspect_err(|refusal| {
                self.gates.refused(principal, refusal);
            })
        });
        Box::pin(async move {
            match admitted {
                None => inner.call(req).await,
                Some(Ok(slots)) => {
                    let response = inner.call(req).await;
                    drop(slots);
                    response
                }
                Some(Err(refusal)) => Ok(tonic::Status::from(refusal).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(agency: &str) -> Principal {
        Principal {
            agency: agency.to_owned(),
            subject: "system-1".into(),
            display_name: None,
            roles: Vec::new(),
            team: None,
            vetting: None,
            client_id: None,
            issuer: "https://idp.example".into(),
            is_system: true,
        }
    }

    fn layer(limits: LimitsConfig) -> AdmissionLayer {
        AdmissionLayer::new(&limits, ["met-police", "hackney-childrens"])
    }

    #[test]
    fn an_agency_over_its_burst_is_refused_while_others_pass() {
        let gates = layer(LimitsConfig {
            agency_requests_per_second: 1,
            agency_burst: 3,
            ..LimitsConfig::default()
        })
        .gates;
        let met = principal("met-police");
        for _ in 0..3 {
            drop(gates.admit(&met).unwrap());
        }
        let refused = gates.admit(&met).unwrap_err();
        assert!(
            matches!(&refused, GatewayError::RateLimited { limit: "rate", retry_after, .. }
                if *retry_after > Duration::ZERO && *retry_after <= Duration::from_secs(1)),
            "{refused:?}"
        );
        assert_eq!(
            tonic::Status::from(refused).code(),
            tonic::Code::ResourceExhausted
        );
        gates.admit(&principal("hackney-childrens")).unwrap();
    }

    #[test]
    fn retry_advice_is_whole_milliseconds() {
        assert_eq!(whole_millis(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(
            whole_millis(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
        assert_eq!(
            whole_millis(Duration::from_micros(2_001)),
            Duration::from_millis(3)
        );
        assert_eq!(
            whole_millis(Duration::from_millis(987)),
            Duration::from_millis(987)
        );
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_the_count_not_logged() {
        let log = RefusalLog::default();
        assert_eq!(log.take(0), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(log.take(ms), None, "at {ms} ms");
        }
        assert_eq!(log.take(1000), Some(4));
        assert_eq!(log.take(1500), None);
        assert_eq!(log.take(1999), None);
        assert_eq!(log.take(2000), Some(2));
        assert_eq!(log.take(10_000), Some(0));
    }

    #[test]
    fn concurrency_is_bounded_per_agency_and_in_total() {
        let gates = layer(LimitsConfig {
            agency_max_concurrent: 2,
            max_in_flight: 3,
            ..LimitsConfig::default()
        })
        .gates;
        let met = principal("met-police");
        let hackney = principal("hackney-childrens");
        let a = gates.admit(&met).unwrap();
        let _b = gates.admit(&met).unwrap();
        assert!(matches!(
            gates.admit(&met),
            Err(GatewayError::RateLimited {
                limit: "concurrency",
                ..
            })
        ));
        let _c = gates.admit(&hackney).unwrap();
        assert_eq!(gates.admit(&hackney).unwrap_err(), GatewayError::Overloaded);
        drop(a);
        gates.admit(&hackney).unwrap();
    }

    #[test]
    fn an_agency_unknown_to_admission_is_refused() {
        let gates = layer(LimitsConfig::default()).gates;
        assert_eq!(
            gates.admit(&principal("elsewhere")).unwrap_err(),
            GatewayError::Overloaded
        );
    }

    #[test]
    fn zero_limits_are_problems() {
        let limits = LimitsConfig {
            agency_burst: 0,
            agency_max_concurrent: 2000,
            ..LimitsConfig::default()
        };
        let keys: Vec<_> = limits.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["agency_burst", "agency_max_concurrent"]);
    }
}
