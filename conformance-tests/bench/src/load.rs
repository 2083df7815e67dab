//! Load: `h2load` for the closed-loop peak (16 connections × 16 streams),
//! and an open-loop generator in Rust for latency at a fixed rate, measured
//! from each request's intended send time so a slow answer delays no
//! measurement (no coordinated omission), and one request at a time.

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

/// What `h2load` reported for one run.
#[derive(Debug, Clone, Default)]
pub struct H2load {
    /// Completed requests per second.
    pub rps: f64,
    /// Requests answered with HTTP 2xx.
    pub succeeded: u64,
    /// Requests that failed or errored.
    pub failed: u64,
    /// Requests answered (any status).
    pub done: u64,
    /// Response body bytes (DATA frames) per succeeded request.
    pub bytes_per_response: f64,
    /// Mean time per request, in µs.
    pub mean_us: f64,
}

/// Latency percentiles of one run, in µs.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// The rate asked for (requests per second); 0 for one at a time.
    pub rate: f64,
    /// Calls completed.
    pub done: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// Runs `h2load` against `path` on `addr` for `seconds`, posting `body` (a
/// framed gRPC message) with the given extra headers.
pub async fn h2load(
    addr: SocketAddr,
    path: &str,
    body: &Path,
    headers: &[String],
    seconds: u64,
) -> Result<H2load, String> {
    h2load_with(
        addr,
        path,
        body,
        headers,
        seconds,
        &["-c", "16", "-m", "16"],
    )
    .await
}

/// [`h2load`] paced: `clients` connections each sending `rps` requests a
/// second (h2load's `--rps`), up to 64 at once on each.
pub async fn h2load_paced(
    addr: SocketAddr,
    path: &str,
    body: &Path,
    headers: &[String],
    seconds: u64,
    clients: u32,
    rps: u32,
) -> Result<H2load, String> {
    let clients = clients.to_string();
    let rps = format!("--rps={rps}");
    h2load_with(
        addr,
        path,
        body,
        headers,
        seconds,
        &["-c", &clients, "-m", "64", &rps],
    )
    .await
}

async fn h2load_with(
    addr: SocketAddr,
    path: &str,
    body: &Path,
    headers: &[String],
    seconds: u64,
    shape: &[&str],
) -> Result<H2load, String> {
    let mut cmd = tokio::process::Command::new("h2load");
    cmd.args(shape)
        .args(["-t", "1", "-D"])
        .arg(seconds.to_string())
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(format!("http://{addr}{path}"));
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run h2load (apt-get install nghttp2-client): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_h2load(&text).ok_or_else(|| format!("cannot read h2load's output:\n{text}"))
}

/// Reads req/s, the request counts, the data bytes and the mean request
/// time from `h2load`'s summary.
pub fn parse_h2load(text: &str) -> Option<H2load> {
    let mut r = H2load::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("finished in ") {
            // finished in 2.00s, 12345.60 req/s, 1.23MB/s
            r.rps = rest
                .split(", ")
                .nth(1)?
                .strip_suffix(" req/s")?
                .parse()
                .ok()?;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            for part in rest.split(", ") {
                let (n, what) = part.split_once(' ')?;
                let n: u64 = n.parse().ok()?;
                match what {
                    "done" => r.done = n,
                    "succeeded" => r.succeeded = n,
                    "failed" | "errored" | "timeout" => r.failed += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("traffic: ") {
            // traffic: 1MB (1234) total, 1KB (12) headers (space savings 95%), 1MB (1200) data
            let data = rest.rsplit(", ").next()?;
            let open = data.find('(')?;
            let close = data.find(')')?;
            let bytes: f64 = data.get(open + 1..close)?.parse().ok()?;
            r.bytes_per_response = bytes;
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // min max mean sd +/-sd
            r.mean_us = duration_us(rest.split_whitespace().nth(2)?)?;
        }
    }
    if r.succeeded > 0 {
        r.bytes_per_response /= r.succeeded as f64;
    }
    (r.rps > 0.0).then_some(r)
}

/// `123us`, `1.23ms`, `2.5s` → µs.
fn duration_us(text: &str) -> Option<f64> {
    let (n, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    n.parse::<f64>().ok().map(|v| v * scale)
}

/// Sends `call()` at `rate` per second for `run`, each from its intended
/// time, and reports latency from that intended time to the answer.
///
/// The pacing runs on its own thread with `std::thread::sleep` (sub-millisecond
/// on Linux) rather than on tokio's millisecond timer; calls run on the
/// runtime. A call still outstanding 10 s after the run is counted as an error.
pub async fn open_loop<F, Fut>(rate: f64, run: Duration, call: F) -> Latency
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let rate = rate.max(1.0);
    let total = (rate * run.as_secs_f64()).ceil() as u64;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, bool)>();
    let handle = tokio::runtime::Handle::current();
    let call = Arc::new(call);
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate);
        for i in 0..total {
            let intended = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let tx = tx.clone();
            let call = call.clone();
            handle.spawn(async move {
                let ok = call(i).await;
                let _ = tx.send((intended.elapsed(), ok));
            });
        }
    });
    let mut samples = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut errors = 0;
    let deadline = tokio::time::Instant::now() + run + Duration::from_secs(10);
    while (samples.len() as u64) + errors < total {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((latency, true))) => samples.push(latency),
            Ok(Some((_, false))) => errors += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    let missing = total - (samples.len() as u64) - errors;
    summarise(rate, samples, errors + missing)
}

/// What a closed-loop run saw, second by second in `bucket`-long slices.
#[derive(Debug, Clone)]
pub struct Timeline<T, E> {
    /// The slice length.
    pub bucket: Duration,
    /// Calls answered in each slice, by when they were answered.
    pub ok: Vec<u64>,
    /// Calls failed in each slice.
    pub failed: Vec<u64>,
    /// What each answered call returned, in no particular order.
    pub answers: Vec<T>,
    /// Each failure, with when it came (from the start of the run).
    pub errors: Vec<(Duration, E)>,
}

impl<T, E> Timeline<T, E> {
    /// Answered calls per second between `from` and `to` (from the start).
    pub fn rate(&self, from: Duration, to: Duration) -> f64 {
        let bucket = self.bucket.as_secs_f64();
        let first = (from.as_secs_f64() / bucket).ceil() as usize;
        let last = ((to.as_secs_f64() / bucket).floor() as usize).min(self.ok.len());
        if last <= first {
            return f64::NAN;
        }
        let n: u64 = self.ok.get(first..last).unwrap_or_default().iter().sum();
        n as f64 / ((last - first) as f64 * bucket)
    }
}

/// Runs `workers` loops for `run`, each calling `call(worker)` again as soon
/// as the last call ended: a closed loop like h2load's, but one that sees
/// every gRPC status and every answer, and that keeps going through a lost
/// connection (the channel behind `call` reconnects). After a failure a
/// worker waits 10 ms, so a dead connection is not spun on.
pub async fn closed_loop<F, Fut, T, E>(
    workers: usize,
    run: Duration,
    bucket: Duration,
    call: F,
) -> Timeline<T, E>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let end = start + run;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, Result<T, E>)>();
    for w in 0..workers {
        let call = call.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            while Instant::now() < end {
                let result = call(w).await;
                let failed = result.is_err();
                if tx.send((start.elapsed(), result)).is_err() {
                    return;
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }
    drop(tx);
    let slices = (run.as_secs_f64() / bucket.as_secs_f64()).ceil() as usize + 1;
    let mut t = Timeline {
        bucket,
        ok: vec![0; slices],
        failed: vec![0; slices],
        answers: Vec::new(),
        errors: Vec::new(),
    };
    // Calls still outstanding well after the run are not waited for.
    let deadline = tokio::time::Instant::from_std(end) + Duration::from_secs(10);
    while let Ok(Some((at, result))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let slice = ((at.as_secs_f64() / bucket.as_secs_f64()) as usize).min(slices - 1);
        match result {
            Ok(v) => {
                if let Some(n) = t.ok.get_mut(slice) {
                    *n += 1;
                }
                t.answers.push(v);
            }
            Err(e) => {
                if let Some(n) = t.failed.get_mut(slice) {
                    *n += 1;
                }
                t.errors.push((at, e));
            }
        }
    }
    t
}

/// Calls `call()` one at a time for `run` and reports each call's latency.
pub async fn one_at_a_time<F, Fut>(run: Duration, call: F) -> Latency
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + run;
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut i = 0;
    while Instant::now() < end {
        let sent = Instant::now();
        if call(i).await {
            samples.push(sent.elapsed());
        } else {
            errors += 1;
        }
        i += 1;
    }
    summarise(0.0, samples, errors)
}

fn summarise(rate: f64, mut samples: Vec<Duration>, errors: u64) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples
            .get(rank - 1)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    Latency {
        rate,
        done: samples.len() as u64,
        errors,
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// The median of `values`, ignoring NaN; NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match (v.get(mid), v.len() % 2) {
        (Some(m), 1) => *m,
        (Some(m), _) => (m + v.get(mid - 1).copied().unwrap_or(*m)) / 2.0,
        (None, _) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_h2load_summary() {
        let text = "\
finished in 2.00s, 12345.60 req/s, 1.23MB/s
requests: 24691 total, 24707 started, 24691 done, 24690 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 24690 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 50.10MB (52533211) total, 300.10KB (307300) headers (space savings 95.42%), 49.50MB (51843900) data
                     min         max         mean         sd        +/- sd
time for request:      456us     31.22ms     20.55ms      2.70ms    80.00%
";
        let r = parse_h2load(text).unwrap();
        assert!((r.rps - 12345.6).abs() < 1e-6);
        assert_eq!(r.succeeded, 24690);
        assert_eq!(r.failed, 2);
        assert_eq!(r.done, 24691);
        assert!((r.bytes_per_response - 51843900.0 / 24690.0).abs() < 1e-6);
        assert!((r.mean_us - 20550.0).abs() < 1e-6);
    }

    #[tokio::test]
    async fn a_closed_loop_counts_answers_and_failures_over_time() {
        let t = closed_loop(
            4,
            Duration::from_millis(300),
            Duration::from_millis(100),
            |w| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if w == 0 { Err("refused") } else { Ok(w) }
            },
        )
        .await;
        let ok: u64 = t.ok.iter().sum();
        let failed: u64 = t.failed.iter().sum();
        assert_eq!(ok as usize, t.answers.len());
        assert_eq!(failed as usize, t.errors.len());
        // Three workers answer about every 5 ms; the failing one waits 10 ms
        // more after each failure.
        assert!((100..=200).contains(&ok), "{ok} answered");
        assert!((10..=25).contains(&failed), "{failed} failed");
        assert!(t.answers.iter().all(|&w| w != 0));
        let rate = t.rate(Duration::ZERO, Duration::from_millis(300));
        assert!((300.0..=700.0).contains(&rate), "{rate}/s");
    }

    #[test]
    fn percentiles_and_medians() {
        let samples = (1..=1000).map(Duration::from_micros).collect();
        let l = summarise(0.0, samples, 0);
        let rounded = (l.p50.round(), l.p99.round(), l.p999.round());
        assert_eq!(rounded, (500.0, 990.0, 999.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
