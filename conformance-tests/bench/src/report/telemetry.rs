//! The markdown block a `--scenario telemetry` run appends to BENCHMARKS.md.

use std::{fmt::Write as _, time::Duration};

use super::{machine, mib, ratio, thousands, us};
use crate::{
    load::median,
    telemetry::{Figures, Results, Variant},
};

/// The section the blocks go under.
pub const SECTION: &str = "## Telemetry cost";

/// What the section is about, written once above the first block.
pub const INTRO: &str = "\
What the gateway's own telemetry costs on the share path, in one run of
`liaison-bench --scenario telemetry` (`conformance-tests/bench/src/telemetry.rs`): the same
gateway (in-memory connector over 1,000 people, SQLite ledger, the 1,000-rule policy, ES256
tokens) started fresh four ways in every round, in an order rotated each round, each measured
with h2load at peak on `GetRecords` (16 connections × 16 streams): **silent**
(`RUST_LOG=off`: nothing logged or traced, the reference), **off** (the default: no
`[telemetry]` table, logs at `info`), **metrics** (`[telemetry] admin_listen`: every instrument
recorded, Prometheus text served) and **traces** (`[telemetry] otlp_endpoint`: every share's span
tree exported over OTLP/gRPC to a collector stand-in in the bench process, which counts and drops
the spans, on the same two cores).

**Commands**

```
cargo build --release -p liaison-gateway -p liaison-bench
target/release/liaison-bench --scenario telemetry            # 3 rounds of 10 s runs, ~3 min
target/release/liaison-bench --scenario telemetry --quick    # 1 s runs, a smoke test
```

\"Telemetry off costs nothing measurable\" holds when off's median ratio to silent is within the
spread of silent itself across the rounds.
";

/// About the run itself.
#[derive(Debug)]
pub struct RunInfo {
    /// `--quick`.
    pub quick: bool,
    /// Seconds of each h2load run.
    pub seconds: u64,
    /// The command line.
    pub command: String,
    /// Load average before and after.
    pub load: (String, String),
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// The median over rounds of `f(variant) / f(silent)`.
pub fn median_ratio(results: &Results, v: usize, f: fn(&Figures) -> f64) -> f64 {
    median(
        &results
            .rounds
            .iter()
            .filter_map(|r| Some(f(r.get(v)?) / f(r.first()?)))
            .collect::<Vec<_>>(),
    )
}

/// The spread of silent's throughput over the rounds: (max − min) / median.
pub fn silent_spread(results: &Results) -> f64 {
    let rps: Vec<f64> = results.rounds.iter().map(|r| r[0].rps).collect();
    let (lo, hi) = rps.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(*v), hi.max(*v))
    });
    (hi - lo) / median(&rps)
}

/// Renders one run's block.
pub fn render(results: &Results, info: &RunInfo) -> String {
    let mut out = String::new();
    let when = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mode = if info.quick { "`--quick`" } else { "full" };
    let _ = writeln!(out, "### Run of {when} ({mode})\n");
    let _ = writeln!(out, "* Command: `{}`", info.command);
    let _ = writeln!(out, "* Machine: {}", machine());
    let _ = writeln!(
        out,
        "* {} rounds of 4 gateways, h2load {} s each; {} spans reached the collector stand-in; load average {} before, {} after; {:.0} s in all.\n",
        results.rounds.len(),
        info.seconds,
        thousands(results.spans as f64),
        info.load.0,
        info.load.1,
        info.elapsed.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "**Each round** (`GetRecords` at peak: answers per second / gateway CPU per answer)\n"
    );
    let _ = write!(out, "| round | order |");
    for v in Variant::ALL {
        let _ = write!(out, " {} |", v.label());
    }
    let _ = writeln!(out, "\n|---|---|---:|---:|---:|---:|");
    for (i, (r, order)) in results.rounds.iter().zip(&results.orders).enumerate() {
        let order: Vec<&str> = order
            .iter()
            .map(|v| match v {
                Variant::Silent => "silent",
                Variant::Off => "off",
                Variant::Metrics => "metrics",
                Variant::Traces => "traces",
            })
            .collect();
        let _ = write!(out, "| {} | {} |", i + 1, order.join(", "));
        for f in r {
            let _ = write!(out, " {} / {} |", thousands(f.rps), us(f.cpu_us));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\n**Medians** (ratios are medians of the per-round ratios to silent)\n"
    );
    let _ = writeln!(
        out,
        "| variant | answers/s | × silent | CPU per answer | × silent | peak RSS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (i, v) in Variant::ALL.iter().enumerate() {
        let pick = |f: fn(&Figures) -> f64| {
            median(
                &results
                    .rounds
                    .iter()
                    .filter_map(|r| r.get(i).map(f))
                    .collect::<Vec<_>>(),
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            v.label(),
            thousands(pick(|f| f.rps)),
            ratio(median_ratio(results, i, |f| f.rps)),
            us(pick(|f| f.cpu_us)),
            ratio(median_ratio(results, i, |f| f.cpu_us)),
            mib(pick(|f| f.peak_rss_kib as f64)),
        );
    }
    let spread = silent_spread(results);
    let off = median_ratio(results, 1, |f| f.rps);
    let _ = writeln!(
        out,
        "\n**Against the target**: telemetry off runs at {} × silent's throughput; silent itself \
         spread {:.1} % across the rounds. Off costs nothing measurable: **{}**.",
        ratio(off),
        spread * 100.0,
        if (1.0 - off).abs() <= spread.max(0.02) {
            "yes"
        } else {
            "no"
        }
    );
    out
}
