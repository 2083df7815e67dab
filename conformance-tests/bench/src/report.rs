//! The markdown block a run appends to BENCHMARKS.md: medians over the
//! rounds, each beside the echo figure of the same rounds and their ratio
//! (the median of the per-round ratios), and the issue's targets.

use std::{fmt::Write as _, path::Path, time::Duration};

pub mod fairness;
pub mod scale;
pub mod telemetry;

use crate::{
    load::{Latency, median},
    run::{Durations, LedgerKind, Peak, Results, ServerRun, SourceKind},
};

/// The section the blocks go under.
pub const SECTION: &str = "## Gateway throughput and latency";

/// Which closed-loop figures of a run a table row reads.
type PickPeak = fn(&ServerRun) -> &Peak;
/// Which one-at-a-time figures of a run a table row reads.
type PickLatency = fn(&ServerRun) -> &Latency;

/// About the run itself.
#[derive(Debug)]
pub struct RunInfo {
    /// `--quick`.
    pub quick: bool,
    /// Rounds run.
    pub rounds: usize,
    /// How long each part ran.
    pub durations: Durations,
    /// The command line.
    pub command: String,
    /// Load average before and after.
    pub load: (String, String),
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn us(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "—".into()
    }
}

/// The median over rounds of `f(gateway)` and of `f(gateway) / f(echo)`.
fn paired(
    gw: &[ServerRun],
    echo: &[ServerRun],
    f: impl Fn(&ServerRun) -> f64,
    g: impl Fn(&ServerRun) -> f64,
) -> (f64, f64, f64) {
    let a: Vec<f64> = gw.iter().map(&f).collect();
    let b: Vec<f64> = echo.iter().map(&g).collect();
    let r: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
    (median(&a), median(&b), median(&r))
}

fn rounds_list(values: impl Iterator<Item = f64>) -> String {
    values.map(thousands).collect::<Vec<_>>().join("; ")
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        );
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let h2load = std::process::Command::new("h2load")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("`nproc` = {nproc}, {model}, {mem}; {rustc}; {h2load}")
}

/// Renders one run's block.
pub fn render(results: &Results, info: &RunInfo) -> String {
    let mut out = String::new();
    let now = time::OffsetDateTime::now_utc();
    let when = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mode = if info.quick { "`--quick`" } else { "full" };
    let d = info.durations;
    let _ = writeln!(out, "### Run of {when} ({mode})\n");
    let _ = writeln!(out, "* Command: `{}`", info.command);
    let _ = writeln!(out, "* Machine: {}", machine());
    let _ = writeln!(
        out,
        "* {} rounds; each: h2load {} s per workload, open loop {:.1} s per rate, one at a time {:.1} s; load average {} before, {} after; {:.0} s in all.",
        info.rounds,
        d.h2load,
        d.open.as_secs_f64(),
        d.serial.as_secs_f64(),
        info.load.0,
        info.load.1,
        info.elapsed.as_secs_f64()
    );
    let echo = &results.echo;
    if let Some(e) = echo.first() {
        let _ = writeln!(
            out,
            "* Echo messages: request {} bytes, answer {} bytes (the `GetRecords` request and answer of the first configuration).",
            e.request_bytes, e.records_bytes
        );
    }

    // Throughput and CPU.
    let _ = writeln!(
        out,
        "\n**Peak** (h2load, 16 connections × 16 streams; medians of the rounds, ratio = median of per-round ratios to echo)\n"
    );
    let _ = writeln!(
        out,
        "| workload | req/s (rounds) | × echo | CPU per request | × echo | h2load mean | answer bytes |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| echo | {} ({}) | 1 | {:.0} µs | 1 | {} | {:.0} |",
        thousands(median(
            &echo
                .iter()
                .map(|r| r.records.h2load.rps)
                .collect::<Vec<_>>()
        )),
        rounds_list(echo.iter().map(|r| r.records.h2load.rps)),
        median(&echo.iter().map(|r| r.records.cpu_us).collect::<Vec<_>>()),
        us(median(
            &echo
                .iter()
                .map(|r| r.records.h2load.mean_us)
                .collect::<Vec<_>>()
        )),
        median(
            &echo
                .iter()
                .map(|r| r.records.h2load.bytes_per_response)
                .collect::<Vec<_>>()
        ),
    );
    for (s, gw) in results.scenarios.iter().zip(&results.gateway) {
        let picks: [(&str, PickPeak); 2] = [
            ("SearchPersons", |r| &r.search),
            ("GetRecords", |r| &r.records),
        ];
        for (name, pick) in picks {
            let (rps, _, rps_ratio) =
                paired(gw, echo, |r| pick(r).h2load.rps, |r| r.records.h2load.rps);
            let (cpu, _, cpu_ratio) = paired(gw, echo, |r| pick(r).cpu_us, |r| r.records.cpu_us);
            let _ = writeln!(
                out,
                "| {name}, {} | {} ({}) | **{}** | **{:.0} µs** | {} | {} | {:.0} |",
                s.label(),
                thousands(rps),
                rounds_list(gw.iter().map(|r| pick(r).h2load.rps)),
                ratio(rps_ratio),
                cpu,
                ratio(cpu_ratio),
                us(median(
                    &gw.iter()
                        .map(|r| pick(r).h2load.mean_us)
                        .collect::<Vec<_>>()
                )),
                median(
                    &gw.iter()
                        .map(|r| pick(r).h2load.bytes_per_response)
                        .collect::<Vec<_>>()
                ),
            );
        }
    }

    // Open loop.
    let _ = writeln!(
        out,
        "\n**Latency at a fixed rate** (open loop at half the configuration's `GetRecords` peak that round, 4 connections, measured from each request's intended send time; echo at the same rate in the same round)\n"
    );
    let _ = writeln!(
        out,
        "| `GetRecords`, configuration | rate | p50 | p99 | p99.9 | echo p50 / p99 / p99.9 | × echo p50 / p99 / p99.9 | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (s, gw)) in results.scenarios.iter().zip(&results.gateway).enumerate() {
        let open_gw = |f: fn(&Latency) -> f64| -> Vec<f64> {
            gw.iter()
                .map(|r| r.open.first().map_or(f64::NAN, f))
                .collect()
        };
        let open_echo = |f: fn(&Latency) -> f64| -> Vec<f64> {
            echo.iter()
                .map(|r| r.open.get(i).map_or(f64::NAN, f))
                .collect()
        };
        let ratios = |f: fn(&Latency) -> f64| -> f64 {
            let r: Vec<f64> = open_gw(f)
                .iter()
                .zip(open_echo(f))
                .map(|(a, b)| a / b)
                .collect();
            median(&r)
        };
        let errors: f64 = open_gw(|l| l.errors as f64).iter().sum();
        let _ = writeln!(
            out,
            "| {} | {}/s | **{}** | **{}** | {} | {} / {} / {} | {} / {} / {} | {} |",
            s.label(),
            thousands(median(&open_gw(|l| l.rate))),
            us(median(&open_gw(|l| l.p50))),
            us(median(&open_gw(|l| l.p99))),
            us(median(&open_gw(|l| l.p999))),
            us(median(&open_echo(|l| l.p50))),
            us(median(&open_echo(|l| l.p99))),
            us(median(&open_echo(|l| l.p999))),
            ratio(ratios(|l| l.p50)),
            ratio(ratios(|l| l.p99)),
            ratio(ratios(|l| l.p999)),
            thousands(errors),
        );
    }

    // One at a time.
    let _ = writeln!(
        out,
        "\n**One request at a time** (one connection; added = gateway − echo, per round, then the median)\n"
    );
    let _ = writeln!(
        out,
        "| workload | p50 | p99 | echo p50 / p99 | added p50 | added p99 | × echo p50 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (s, gw) in results.scenarios.iter().zip(&results.gateway) {
        let picks: [(&str, PickLatency); 2] = [
            ("SearchPersons", |r| &r.serial_search),
            ("GetRecords", |r| &r.serial_records),
        ];
        for (name, pick) in picks {
            let (p50, e50, r50) = paired(gw, echo, |r| pick(r).p50, |r| r.serial_records.p50);
            let (p99, e99, _) = paired(gw, echo, |r| pick(r).p99, |r| r.serial_records.p99);
            let added = |f: fn(&Latency) -> f64| -> f64 {
                let v: Vec<f64> = gw
                    .iter()
                    .zip(echo)
                    .map(|(g, e)| f(pick(g)) - f(&e.serial_records))
                    .collect();
                median(&v)
            };
            let _ = writeln!(
                out,
                "| {name}, {} | {} | {} | {} / {} | **{}** | {} | {} |",
                s.label(),
                us(p50),
                us(p99),
                us(e50),
                us(e99),
                us(added(|l| l.p50)),
                us(added(|l| l.p99)),
                ratio(r50),
            );
        }
    }

    // Memory and start-up.
    let _ = writeln!(
        out,
        "\n**Memory and start-up** (VmRSS once serving, VmHWM after the round; start-up from spawn to gRPC health `SERVING`, for echo to its first answer)\n"
    );
    let _ = writeln!(
        out,
        "| server | idle RSS | × echo | peak RSS | × echo | start-up | × echo |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let em = |f: fn(&ServerRun) -> f64| median(&echo.iter().map(f).collect::<Vec<_>>());
    let _ = writeln!(
        out,
        "| echo | {} | 1 | {} | 1 | {:.0} ms | 1 |",
        mib(em(|r| r.idle_rss_kib as f64)),
        mib(em(|r| r.peak_rss_kib as f64)),
        em(|r| r.startup_ms),
    );
    for (s, gw) in results.scenarios.iter().zip(&results.gateway) {
        let (idle, _, idle_r) = paired(
            gw,
            echo,
            |r| r.idle_rss_kib as f64,
            |r| r.idle_rss_kib as f64,
        );
        let (peak, _, peak_r) = paired(
            gw,
            echo,
            |r| r.peak_rss_kib as f64,
            |r| r.peak_rss_kib as f64,
        );
        let (start, _, start_r) = paired(gw, echo, |r| r.startup_ms, |r| r.startup_ms);
        let _ = writeln!(
            out,
            "| gateway, {} | {} | {} | **{}** | {} | **{:.0} ms** | {} |",
            s.label(),
            mib(idle),
            ratio(idle_r),
            mib(peak),
            ratio(peak_r),
            start,
            ratio(start_r),
        );
    }

    out.push_str(&targets(results));
    out
}

/// The issue's targets against this run.
fn targets(results: &Results) -> String {
    let echo = &results.echo;
    let find = |ledger: LedgerKind| {
        results
            .scenarios
            .iter()
            .zip(&results.gateway)
            .find(|(s, _)| s.ledger == ledger && s.source == SourceKind::Memory)
            .map(|(_, g)| g.as_slice())
    };
    let mut out = String::from(
        "\n**Against the targets** (`GetRecords`, in-memory connector, SQLite ledger unless named)\n\n| target | measured | met |\n|---|---:|:---:|\n",
    );
    let mut row = |name: &str, value: f64, shown: String, ok: bool| {
        let mark = if !value.is_finite() {
            "—"
        } else if ok {
            "yes"
        } else {
            "**no**"
        };
        let _ = writeln!(out, "| {name} | {shown} | {mark} |");
    };
    if let Some(gw) = find(LedgerKind::Sqlite) {
        let (_, _, r) = paired(gw, echo, |r| r.records.h2load.rps, |r| r.records.h2load.rps);
        row(
            "throughput ≥ 0.5 × echo, SQLite ledger",
            r,
            format!("{} × echo", ratio(r)),
            r >= 0.5,
        );
    }
    if let Some(gw) = find(LedgerKind::Postgres) {
        let (_, _, r) = paired(gw, echo, |r| r.records.h2load.rps, |r| r.records.h2load.rps);
        row(
            "throughput ≥ 0.35 × echo, PostgreSQL ledger",
            r,
            format!("{} × echo", ratio(r)),
            r >= 0.35,
        );
    }
    if let Some(gw) = find(LedgerKind::Sqlite) {
        let cpu = median(&gw.iter().map(|r| r.records.cpu_us).collect::<Vec<_>>());
        row(
            "CPU per share ≤ 40 µs",
            cpu,
            format!("{cpu:.0} µs"),
            cpu <= 40.0,
        );
        let added: Vec<f64> = gw
            .iter()
            .zip(echo)
            .map(|(g, e)| g.serial_records.p50 - e.serial_records.p50)
            .collect();
        let added = median(&added);
        row(
            "added latency one at a time, p50 ≤ 0.25 ms",
            added,
            us(added),
            added <= 250.0,
        );
        let p = |f: fn(&Latency) -> f64| {
            median(
                &gw.iter()
                    .map(|r| r.open.first().map_or(f64::NAN, f))
                    .collect::<Vec<_>>(),
            )
        };
        let (p50, p99) = (p(|l| l.p50), p(|l| l.p99));
        row(
            "half peak, open loop, p50 ≤ 1 ms",
            p50,
            us(p50),
            p50 <= 1000.0,
        );
        row(
            "half peak, open loop, p99 ≤ 3 ms",
            p99,
            us(p99),
            p99 <= 3000.0,
        );
    }
    let all: Vec<&ServerRun> = results.gateway.iter().flatten().collect();
    let worst = |f: fn(&ServerRun) -> f64| all.iter().map(|&r| f(r)).fold(f64::NAN, f64::max);
    let peak = worst(|r| r.peak_rss_kib as f64);
    row(
        "peak RSS ≤ 64 MiB (largest of every run)",
        peak,
        mib(peak),
        peak <= 64.0 * 1024.0,
    );
    let idle = worst(|r| r.idle_rss_kib as f64);
    row(
        "idle RSS ≤ 30 MiB (largest of every run)",
        idle,
        mib(idle),
        idle <= 30.0 * 1024.0,
    );
    let start = worst(|r| r.startup_ms);
    row(
        "start-up ≤ 1 s (slowest of every run)",
        start,
        format!("{start:.0} ms"),
        start <= 1000.0,
    );
    out
}

/// Prints a run's `block` and, unless `--no-write`, appends it to `section`
/// of `--output` (created with `intro` if it is not there).
pub fn publish(cli: &crate::Cli, section: &str, intro: &str, block: &str) -> Result<(), String> {
    println!("{block}");
    if !cli.no_write {
        append_to(&cli.output, section, intro, block)?;
        eprintln!("appended to {}", cli.output.display());
    }
    Ok(())
}

/// Appends `block` to `section` in `path`, creating the section with
/// `intro` (after any others) if it is not there; earlier blocks are kept.
pub fn append_to(path: &Path, section: &str, intro: &str, block: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let updated = insert_into(&text, section, intro, block);
    std::fs::write(path, updated).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
fn insert(text: &str, block: &str) -> String {
    insert_into(text, SECTION, INTRO, block)
}

fn insert_into(text: &str, section: &str, intro: &str, block: &str) -> String {
    // A section heading is a whole line: "## Gateway" must not match
    // "## Gateway throughput and latency".
    let heading = format!("{section}\n");
    let found = if text.starts_with(&heading) {
        Some(0)
    } else {
        text.find(&format!("\n{heading}")).map(|i| i + 1)
    };
    let Some(start) = found else {
        let mut out = text.trim_end().to_string();
        out.push_str("\n\n");
        out.push_str(section);
        out.push_str("\n\n");
        out.push_str(intro);
        out.push('\n');
        out.push_str(block.trim_end());
        out.push('\n');
        return out;
    };
    // The section ends where the next top-level section begins.
    let after = start + section.len();
    let end = text
        .get(after..)
        .and_then(|rest| rest.find("\n## "))
        .map_or(text.len(), |i| after + i + 1);
    let (head, tail) = text.split_at(end);
    let mut out = head.trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(block.trim_end());
    out.push('\n');
    if !tail.is_empty() {
        out.push('\n');
        out.push_str(tail);
    }
    out
}

/// What the section says once, above its first block.
pub const INTRO: &str = "\
The gateway end to end beside a bare tonic echo server (the ceiling: same tonic, plaintext
HTTP/2 with the gateway's server settings, a unary call with the `GetRecords` request's and
answer's sizes, no work), both as child processes on loopback, in one run of
`conformance-tests/bench` (`liaison-bench`). Every figure is also given as a ratio to the echo
figure of the same rounds, since the machine is shared and absolute figures drift.

**Commands**

```
cargo build --release -p liaison-gateway -p liaison-bench
target/release/liaison-bench            # full: 3 rounds of 10 s runs, ~8 min
target/release/liaison-bench --quick    # smoke: 3 rounds of 1 s runs, under 2 min
```

`--scenario scale-out` and `--scenario fairness` run the measurements of the sections
\"Scale-out behind one port\" and \"Per-agency fairness\" instead.

`h2load` comes from `apt-get install nghttp2-client`; PostgreSQL is the local server
(`LIAISON_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), where each
round gets a scratch database; `--no-postgres` leaves it out.

**What is measured** (`conformance-tests/bench/src/`)

* The gateway (`liaison serve`) in three configurations, each started fresh in every round:
  an in-memory connector (the CSV folder connector, which holds its export in memory once read,
  over a synthetic children's services export of 1,000 people, `write_council_export`), so the
  figures are the gateway's own, with the ledger durable in SQLite (WAL, `synchronous=FULL`);
  the same with the ledger in PostgreSQL; and the SQL connector over a synthetic legacy police
  database (`generate_police_rms`) of 100,000 people with the SQLite ledger. The policy
  has 1,000 rules (casbin lines, as `policy/benches/decide.rs` counts them): the demo agreement
  the requests are made under (8 lines), 30 generated agreements between other agencies (960)
  and 32 operator pauses, none refusing the requests. Tokens are ES256, signed by a key the bench generates and
  published by an in-process discovery document and JWKS; every request carries one, checked
  by the gateway as any other. Answers are minimised by the demo agreement's social-worker
  fields, and every share is appended to the ledger before it is answered. From 2026-12-07
  each gateway also seals its ledger as a deployed one does (a signing key and the default
  interval of 1 s: the new entries re-checked, the tree's nodes stored and a head signed);
  earlier runs, and runs with `--no-seal`, had no sealer.
* Each round runs every gateway configuration, then echo: `SearchPersons` (for Leah Marsh, the
  synthetic data's fixed child) and `GetRecords` (her records) at peak with h2load (gRPC
  framing in the request body, 16 connections × 16 streams, one h2load thread); `GetRecords`
  open loop at half that run's peak, latency from each request's intended send time (so a
  slow answer cannot hide the requests queued behind it); then one request at a time. Echo
  runs open loop at each configuration's rate of the same round.
* CPU per request is the server process's utime + stime (`/proc/<pid>/stat`) over the h2load
  run divided by the requests answered; idle RSS is VmRSS once serving; peak RSS is VmHWM at the
  end of the round; start-up runs from spawning the process to gRPC health `SERVING`.
* A run fails rather than report a figure if h2load's answers are smaller than the answer
  checked beforehand (a gRPC error is an HTTP 200 with a short body).
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_block_creates_the_section_and_later_ones_follow_it() {
        let text = "# Benchmarks\n\n## Policy\n\nold\n";
        let once = insert(text, "### Run 1\n");
        assert!(once.starts_with(text.trim_end()));
        assert!(once.contains(SECTION));
        assert!(once.ends_with("### Run 1\n"));
        let twice = insert(&once, "### Run 2\n");
        assert!(twice.find("### Run 1").unwrap() < twice.find("### Run 2").unwrap());
        let later = format!("{twice}\n## Later\n\nkept\n");
        let thrice = insert(&later, "### Run 3\n");
        assert!(thrice.find("### Run 3").unwrap() < thrice.find("## Later").unwrap());
        assert!(thrice.ends_with("## Later\n\nkept\n"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(us(250.0), "250 µs");
        assert_eq!(us(1500.0), "1.50 ms");
    }
}
