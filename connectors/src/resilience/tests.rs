use std::collections::VecDeque;
use std::sync::atomic::AtomicU32;

use super::*;

/// What the scripted connector does on one call.
#[derive(Debug, Clone, Copy)]
enum Step {
    Answer,
    Stall,
    Unreachable,
    CallerError,
    Slow(Duration),
}

/// A connector that follows a script, then answers every call.
#[derive(Debug)]
struct Scripted {
    descriptor: DatasetDescriptor,
    script: Mutex<VecDeque<Step>>,
    calls: AtomicU32,
}

impl Scripted {
    fn new(steps: &[Step]) -> Arc<Self> {
        Arc::new(Self {
            descriptor: DatasetDescriptor {
                id: "scripted".into(),
                agency: "a".into(),
                title: "t".into(),
                system: "s".into(),
                record_kinds: Vec::new(),
            },
            script: Mutex::new(steps.iter().copied().collect()),
            calls: AtomicU32::new(0),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    async fn step(&self) -> Result<(), ConnectorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = self.script.lock().pop_front().unwrap_or(Step::Answer);
        match step {
            Step::Answer => Ok(()),
            Step::Stall => std::future::pending().await,
            Step::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Step::Unreachable => Err(ConnectorError::Unreachable {
                dataset: "scripted".into(),
                reason: "connection refused".into(),
            }),
            Step::CallerError => Err(ConnectorError::InvalidQuery {
                dataset: "scripted".into(),
                reason: "the query has no criteria".into(),
            }),
        }
    }
}

impl Connector for Scripted {
    fn descriptor(&self) -> &DatasetDescriptor {
        &self.descriptor
    }

    fn search<'a>(
        &'a self,
        _query: &'a PersonQuery,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(async move { self.step().await.map(|()| Found::default()) })
    }

    fn fetch<'a>(
        &'a self,
        _source_id: &'a str,
        _kinds: &'a [RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(async move { self.step().await.map(|()| Fetched::default()) })
    }
}

fn config() -> ResilienceConfig {
    ResilienceConfig {
        deadline_ms: 200,
        max_concurrency: 2,
        max_waiting: 1,
        failure_threshold: 3,
        cool_down_ms: 100,
        max_attempts: 1,
        backoff_base_ms: 5,
        backoff_max_ms: 20,
    }
}

fn query() -> PersonQuery {
    PersonQuery {
        family_name: Some("Marsh".into()),
        ..PersonQuery::default()
    }
}

#[tokio::test]
async fn a_stalled_source_fails_within_the_deadline() {
    let inner = Scripted::new(&[Step::Stall]);
    let r = Resilient::new(inner.clone(), &config());
    let started = std::time::Instant::now();
    let err = r.search(&query(), 10).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(400),
        "{took:?}"
    );
    assert_eq!(
        err.to_string(),
        "dataset `scripted` did not answer `search` within 200 ms"
    );
    assert_eq!(err.fault(), Fault::Source);
    let stats = r.stats();
    assert_eq!((stats.calls, stats.failures, stats.timeouts), (1, 1, 1));
    // The connector is usable afterwards.
    r.search(&query(), 10).await.unwrap();
}

#[tokio::test]
async fn repeated_failures_open_the_circuit_which_fails_fast() {
    let inner = Scripted::new(&[Step::Unreachable, Step::Stall, Step::Unreachable]);
    let mut cfg = config();
    cfg.deadline_ms = 50;
    let r = Resilient::new(inner.clone(), &cfg);
    for _ in 0..3 {
        assert_eq!(r.fetch("1", &[]).await.unwrap_err().fault(), Fault::Source);
    }
    assert_eq!(r.stats().circuit, CircuitState::Open);

    let started = std::time::Instant::now();
    let err = r.fetch("1", &[]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(10));
    assert!(matches!(err, ConnectorError::CircuitOpen { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "dataset `scripted` is failing and is not being asked; the next trial call is in "
        ),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::Source);
    assert_eq!(
        inner.calls(),
        3,
        "an open circuit does not reach the source"
    );
    let stats = r.stats();
    assert_eq!((stats.rejected, stats.timeouts, stats.failures), (1, 1, 4));
}

#[tokio::test]
async fn the_circuit_recovers_after_the_cool_down() {
    let inner = Scripted::new(&[Step::Unreachable; 3]);
    let r = Resilient::new(inner.clone(), &config());
    for _ in 0..3 {
        r.search(&query(), 1).await.unwrap_err();
    }
    assert_eq!(r.stats().circuit, CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(120)).await;
    // The trial call succeeds and closes the circuit.
    r.search(&query(), 1).await.unwrap();
    assert_eq!(r.stats().circuit, CircuitState::Closed);
    r.search(&query(), 1).await.unwrap();
    assert_eq!(inner.calls(), 5);
}

#[tokio::test]
async fn a_failed_trial_reopens_the_circuit() {
    let inner = Scripted::new(&[Step::Unreachable; 4]);
    let mut cfg = config();
    cfg.max_attempts = 3;
    let r = Resilient::new(inner.clone(), &cfg);
    // Each call retries within its deadline, so one call can open it.
    r.search(&query(), 1).await.unwrap_err();
    assert_eq!(r.stats().circuit, CircuitState::Open);
    assert_eq!(inner.calls(), 3);
    tokio::time::sleep(Duration::from_millis(120)).await;
    // The trial is not retried, and its failure opens the circuit again.
    r.search(&query(), 1).await.unwrap_err();
    assert_eq!(inner.calls(), 4);
    assert_eq!(r.stats().circuit, CircuitState::Open);
    assert!(matches!(
        r.search(&query(), 1).await.unwrap_err(),
        ConnectorError::CircuitOpen { .. }
    ));
}

#[tokio::test]
async fn a_dropped_trial_does_not_wedge_the_circuit() {
    let inner = Scripted::new(&[
        Step::Unreachable,
        Step::Unreachable,
        Step::Unreachable,
        Step::Stall,
    ]);
    let r = Resilient::new(inner.clone(), &config());
    for _ in 0..3 {
        r.search(&query(), 1).await.unwrap_err();
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let q = query();
    let trial = tokio::time::timeout(Duration::from_millis(20), r.search(&q, 1)).await;
    assert!(trial.is_err(), "the trial stalls and is dropped");
    assert_eq!(r.stats().circuit, CircuitState::HalfOpen);
    // The next call becomes the trial.
    r.search(&query(), 1).await.unwrap();
    assert_eq!(r.stats().circuit, CircuitState::Closed);
}

#[tokio::test]
async fn transient_source_faults_are_retried_within_the_deadline() {
    let inner = Scripted::new(&[Step::Unreachable, Step::Unreachable]);
    let mut cfg = config();
    cfg.max_attempts = 3;
    cfg.failure_threshold = 10;
    let r = Resilient::new(inner.clone(), &cfg);
    r.fetch("1", &[]).await.unwrap();
    assert_eq!(inner.calls(), 3);
    assert_eq!(r.stats().retries, 2);

    // Caller errors are never retried.
    let inner = Scripted::new(&[Step::CallerError]);
    let r = Resilient::new(inner.clone(), &cfg);
    let err = r.fetch("1", &[]).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Caller);
    assert_eq!(inner.calls(), 1);
    assert_eq!(r.stats().failures, 0, "caller errors are not failures");

    // A backoff that would end past the deadline is not waited for.
    let inner = Scripted::new(&[Step::Unreachable; 10]);
    cfg.deadline_ms = 40;
    cfg.max_attempts = 10;
    cfg.backoff_base_ms = 30;
    cfg.backoff_max_ms = 30;
    let r = Resilient::new(inner.clone(), &cfg);
    let started = std::time::Instant::now();
    let err = r.fetch("1", &[]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(60));
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(inner.calls() < 10, "{}", inner.calls());
}

#[tokio::test]
async fn checks_are_not_retried() {
    let inner = Scripted::new(&[]);
    let mut cfg = config();
    cfg.max_attempts = 3;
    let r = Resilient::new(inner, &cfg);
    r.check().await.unwrap();
    assert_eq!(r.stats().calls, 1);
}

#[tokio::test]
async fn excess_calls_wait_for_a_slot_and_too_many_waiting_are_refused() {
    let inner = Scripted::new(&[
        Step::Slow(Duration::from_millis(300)),
        Step::Slow(Duration::from_millis(300)),
    ]);
    let r = Arc::new(Resilient::new(inner.clone(), &config()));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.fetch("1", &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // One caller may wait; it gets the first slot to free, when the slow
    // calls reach their deadline.
    let waiter = {
        let r = r.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (r.fetch("1", &[]).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A second waiter is one too many and is refused at once.
    let started = std::time::Instant::now();
    let err = r.fetch("1", &[]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(10));
    assert_eq!(
        err.to_string(),
        "dataset `scripted` is busy: 2 calls are in progress and no slot freed in time"
    );
    let (answer, waited) = waiter.await.unwrap();
    answer.unwrap();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    for call in busy {
        assert!(matches!(
            call.await.unwrap().unwrap_err(),
            ConnectorError::DeadlineExceeded { .. }
        ));
    }
}

#[tokio::test]
async fn a_caller_waiting_for_a_slot_gives_up_at_its_deadline() {
    let inner = Scripted::new(&[Step::Stall]);
    let mut cfg = config();
    cfg.max_concurrency = 1;
    let r = Arc::new(Resilient::new(inner.clone(), &cfg));
    let stalled = {
        let r = r.clone();
        tokio::spawn(async move { r.fetch("1", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The stalled call holds the only slot for the whole deadline; a caller
    // whose own (shorter) budget runs out while waiting is dropped cleanly.
    let q = query();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), r.search(&q, 1))
            .await
            .is_err()
    );
    assert!(matches!(
        stalled.await.unwrap().unwrap_err(),
        ConnectorError::DeadlineExceeded { .. }
    ));
    // The slot and the waiting count were given back.
    r.search(&q, 1).await.unwrap();
    assert_eq!(r.waiting.load(Ordering::SeqCst), 0);
}

#[test]
fn the_breaker_opens_half_opens_and_closes() {
    let start = Instant::now();
    let mut b = Breaker::new(2, Duration::from_secs(10));
    assert_eq!(b.admit(start), Ok(Admission::Normal));
    b.record(Admission::Normal, Outcome::Failure, start);
    b.record(Admission::Normal, Outcome::Success, start);
    b.record(Admission::Normal, Outcome::Failure, start);
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "failures must be consecutive"
    );
    b.record(Admission::Normal, Outcome::Failure, start);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(
        b.admit(start + Duration::from_secs(4)),
        Err(Duration::from_secs(6))
    );
    let later = start + Duration::from_secs(10);
    assert_eq!(b.admit(later), Ok(Admission::Trial));
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_eq!(b.admit(later), Err(Duration::ZERO), "one trial at a time");
    // A late failure from before the circuit opened changes nothing.
    b.record(Admission::Normal, Outcome::Failure, later);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    b.record(Admission::Trial, Outcome::Neutral, later);
    assert_eq!(b.admit(later), Ok(Admission::Trial));
    b.record(Admission::Trial, Outcome::Failure, later);
    assert_eq!(b.state(), CircuitState::Open);
    let after = later + Duration::from_secs(10);
    assert_eq!(b.admit(after), Ok(Admission::Trial));
    b.record(Admission::Trial, Outcome::Success, after);
    assert_eq!(b.state(), CircuitState::Closed);
    assert!(b.allows_retry());
}

#[test]
fn backoff_doubles_up_to_its_ceiling() {
    let r = Resilient::new(Scripted::new(&[]), &config());
    let ms = |n| r.backoff_ceiling(n).as_millis();
    assert_eq!((ms(1), ms(2), ms(3), ms(4), ms(40)), (5, 10, 20, 20, 20));
}

#[test]
fn settings_are_checked() {
    let bad = ResilienceConfig {
        deadline_ms: 0,
        max_attempts: 11,
        backoff_base_ms: 10,
        backoff_max_ms: 5,
        ..ResilienceConfig::default()
    };
    assert_eq!(
        bad.problems(),
        vec![
            "resilience.deadline_ms: must be at least 1",
            "resilience.max_attempts: must be at most 10",
            "resilience.backoff_base_ms: must not be more than `backoff_max_ms`",
        ]
    );
    assert!(ResilienceConfig::default().problems().is_empty());
    let parsed: ResilienceConfig = toml::from_str("deadline_ms = 250").unwrap();
    assert_eq!(parsed.deadline_ms, 250);
    assert_eq!(parsed.max_attempts, 3);
    assert!(toml::from_str::<ResilienceConfig>("deadline = 1").is_err());
}
