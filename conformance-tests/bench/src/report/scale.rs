//! The markdown block a `--scenario scale-out` run appends to BENCHMARKS.md.

use std::{fmt::Write as _, time::Duration};

use super::{machine, mib, ratio, rounds_list, thousands, us};
use crate::{load::median, scale::Results};

/// The section the blocks go under.
pub const SECTION: &str = "## Scale-out behind one port";

/// About the run itself.
#[derive(Debug)]
pub struct RunInfo {
    /// `--quick`.
    pub quick: bool,
    /// Seconds of each h2load run.
    pub h2load_seconds: u64,
    /// The command line.
    pub command: String,
    /// Load average before the rounds, after them, and after the failover
    /// run.
    pub load: [String; 3],
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// Renders one run's block.
pub fn render(results: &Results, info: &RunInfo) -> String {
    let mut out = String::new();
    let when = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mode = if info.quick { "`--quick`" } else { "full" };
    let rounds = &results.rounds;
    let _ = writeln!(out, "### Run of {when} ({mode})\n");
    let _ = writeln!(out, "* Command: `{}`", info.command);
    let _ = writeln!(out, "* Machine: {}", machine());
    let _ = writeln!(
        out,
        "* {} rounds of h2load {} s per configuration; load average {} before, {} after the rounds, {} after the failover run; {:.0} s in all.",
        rounds.len(),
        info.h2load_seconds,
        info.load[0],
        info.load[1],
        info.load[2],
        info.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "* Echo messages: request {} bytes, answer {} bytes (the `GetRecords` request and answer).",
        results.sizes.0, results.sizes.1
    );

    let echo: Vec<f64> = rounds.iter().map(|r| r.echo.h2load.rps).collect();
    let _ = writeln!(
        out,
        "\n**Peak through the balancer** (`GetRecords`, h2load 16 connections × 16 streams; medians of the rounds; × echo = median of per-round ratios to echo direct; CPU per request is all replicas' together)\n"
    );
    let _ = writeln!(
        out,
        "| behind the balancer | req/s (rounds) | × echo | × 1 replica | replicas' CPU per request | balancer CPU per request | h2load mean | peak RSS per replica | connections per replica (one is the balancer's readiness probe) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let _ = writeln!(
        out,
        "| echo, direct (no balancer) | {} ({}) | 1 | | {:.0} µs | | {} | | |",
        thousands(median(&echo)),
        rounds_list(echo.iter().copied()),
        median(&rounds.iter().map(|r| r.echo.cpu_us).collect::<Vec<_>>()),
        us(median(
            &rounds
                .iter()
                .map(|r| r.echo.h2load.mean_us)
                .collect::<Vec<_>>()
        )),
    );
    let balanced: Vec<f64> = rounds.iter().map(|r| r.echo_balanced.h2load.rps).collect();
    let balanced_ratio: Vec<f64> = balanced.iter().zip(&echo).map(|(b, e)| b / e).collect();
    let _ = writeln!(
        out,
        "| echo | {} ({}) | **{}** | | {:.0} µs | {:.0} µs | {} | | |",
        thousands(median(&balanced)),
        rounds_list(balanced.iter().copied()),
        ratio(median(&balanced_ratio)),
        median(
            &rounds
                .iter()
                .map(|r| r.echo_balanced.cpu_us)
                .collect::<Vec<_>>()
        ),
        median(
            &rounds
                .iter()
                .map(|r| r.echo_balancer_cpu_us)
                .collect::<Vec<_>>()
        ),
        us(median(
            &rounds
                .iter()
                .map(|r| r.echo_balanced.h2load.mean_us)
                .collect::<Vec<_>>()
        )),
    );
    let replicas = rounds.iter().map(|r| r.gateways.len()).max().unwrap_or(0);
    for n in 1..=replicas {
        let runs: Vec<_> = rounds
            .iter()
            .filter_map(|r| r.gateways.get(n - 1))
            .collect();
        let firsts: Vec<f64> = rounds
            .iter()
            .map(|r| r.gateways.first().map_or(f64::NAN, |g| g.peak.h2load.rps))
            .collect();
        let rps: Vec<f64> = runs.iter().map(|g| g.peak.h2load.rps).collect();
        let to_echo: Vec<f64> = rps.iter().zip(&echo).map(|(g, e)| g / e).collect();
        let to_one: Vec<f64> = rps.iter().zip(&firsts).map(|(g, f)| g / f).collect();
        let rss: Vec<String> = (0..n)
            .map(|i| {
                mib(median(
                    &runs
                        .iter()
                        .map(|g| g.peak_rss_kib.get(i).map_or(f64::NAN, |&k| k as f64))
                        .collect::<Vec<_>>(),
                ))
            })
            .collect();
        let routed = runs
            .last()
            .map(|g| {
                g.routed
                    .per_backend
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| gateway × {n}, PostgreSQL ledger | {} ({}) | **{}** | **{}** | {:.0} µs | {:.0} µs | {} | {} | {routed} |",
            thousands(median(&rps)),
            rounds_list(rps.iter().copied()),
            ratio(median(&to_echo)),
            ratio(median(&to_one)),
            median(&runs.iter().map(|g| g.peak.cpu_us).collect::<Vec<_>>()),
            median(&runs.iter().map(|g| g.balancer_cpu_us).collect::<Vec<_>>()),
            us(median(
                &runs
                    .iter()
                    .map(|g| g.peak.h2load.mean_us)
                    .collect::<Vec<_>>()
            )),
            rss.join(" / "),
        );
    }

    let f = &results.failover;
    let _ = writeln!(
        out,
        "\n**One replica killed mid-load** ({} replicas, closed loop of 16 connections × 16 calls through the balancer for {:.0} s, replica 2 sent SIGKILL at {:.1} s; the channels reconnect through the balancer)\n",
        f.replicas,
        f.run.as_secs_f64(),
        f.killed_at.as_secs_f64()
    );
    let _ = writeln!(out, "| | measured |\n|---|---:|");
    let _ = writeln!(
        out,
        "| answered per second before the kill (from 1 s in) | {} |",
        thousands(f.before_rps)
    );
    let _ = writeln!(
        out,
        "| answered per second in the second after the kill | {} |",
        thousands(f.dip_rps)
    );
    let _ = writeln!(
        out,
        "| answered per second from 1 s after the kill | **{}** ({} × before) |",
        thousands(f.after_rps),
        ratio(f.after_rps / f.before_rps)
    );
    let errors: u64 = f.errors.values().sum();
    let kinds: Vec<String> = f.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "| calls answered with a receipt / failed | {} / **{}** ({}) |",
        thousands(f.answered as f64),
        thousands(errors as f64),
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "| failures before the kill; last failure after it | {}; {} |",
        f.errors_before_kill,
        f.last_error_after_kill.map_or_else(
            || "none".into(),
            |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)
        )
    );
    let _ = writeln!(
        out,
        "| connections per replica (balancer log), refused connects skipped | {}; {} skipped, {} unrouted |",
        f.routed
            .per_backend
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" / "),
        f.routed.skipped,
        f.routed.unrouted
    );
    let _ = writeln!(
        out,
        "| peak RSS per replica (the killed one's at the kill) | {} |",
        f.peak_rss_kib
            .iter()
            .map(|&k| mib(k as f64))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let l = &f.ledger;
    let written = l.after - l.before;
    let _ = writeln!(
        out,
        "| ledger entries written during the run / receipts given | {} / {} |",
        thousands(written as f64),
        thousands(l.receipts as f64)
    );
    let _ = writeln!(
        out,
        "| receipts found in the ledger by entry id | **{} of {}** |",
        thousands(l.found as f64),
        thousands(l.receipts as f64)
    );
    let _ = writeln!(
        out,
        "| entries with no receipt given (appended, answer lost with the replica) | {} |",
        thousands((written - l.found) as f64)
    );
    let _ = writeln!(
        out,
        "| sequence dense and head row agrees | {} |",
        if l.dense { "yes" } else { "**no**" }
    );
    let _ = writeln!(
        out,
        "| `liaison audit verify` (exit code, output) | {}: {} |",
        l.verify.0, l.verify.1
    );
    out
}

/// What the section says once, above its first block.
pub const INTRO: &str = "\
Several `liaison serve` replicas behind one port, one PostgreSQL ledger, concurrent clients;
one replica killed mid-load. In one run of `liaison-bench --scenario scale-out`
(`conformance-tests/bench/src/scale.rs`).

**Commands**

```
cargo build --release -p liaison-gateway -p liaison-bench
target/release/liaison-bench --scenario scale-out            # 3 rounds of 10 s runs, ~3.5 min
target/release/liaison-bench --scenario scale-out --quick    # 1 s runs, a smoke test
```

**What is measured**

* The balancer is the bench's own (`src/balancer.rs`), a child process: round-robin per TCP
  connection, bytes copied both ways (`copy_bidirectional`, `TCP_NODELAY` on both sides), a
  backend that refuses the connection skipped for the next. As an L4 balancer it pins each
  HTTP/2 connection, and all its streams, to one replica.
* Each round starts 1, then 2, then 3 replicas afresh, each on a new PostgreSQL database that
  the replicas of that configuration share, with the in-memory connector (1,000 people) and the
  1,000-rule policy of the throughput section, checks each replica directly, then runs h2load
  (`GetRecords`, 16 connections × 16 streams) through the balancer. Then echo with the same
  message sizes, once direct and once through the balancer, so the balancer's own cost is
  visible in the same round. CPU per request is the processes' utime + stime over the h2load run
  divided by the requests answered; peak RSS is each replica's VmHWM after its run.
* The failover run starts 3 replicas on a fresh database, and drives `GetRecords` through the
  balancer from the bench (16 tonic channels × 16 calls in a closed loop, each call's status and
  receipt kept); halfway through, the second replica is sent SIGKILL. Its connections fail;
  tonic reconnects them through the balancer, which skips the dead replica. Afterwards every
  receipt the clients were given is looked up in `audit_entries` by `entry_id`, the sequence is
  checked dense against `ledger_head`, and `liaison audit verify` recomputes the whole chain the
  replicas wrote together.
* The two cores are shared by every replica, PostgreSQL, the balancer and the load generator:
  more replicas add no CPU, so throughput cannot scale here; the rows show what replication
  costs on a fixed machine, not what it gains on several.
";
