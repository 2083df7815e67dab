//! Decision latency at 100, 1,000 and 10,000 rules, beside Cedar evaluating the same agreements.
//!
//! "Rules" are casbin lines as one enforcer over the whole policy would hold them: one allow line
//! per agreement, dataset, recipient, role, action and purpose, plus one line per operator rule.
//! Each generated agreement compiles to 32 allow lines; operator rules make up the rest.
//!
//! Every request reaches the full evaluation (a known, active agreement in force, a recipient
//! asking for a covered dataset): the cheap early denials (unknown or suspended agreement) would
//! only flatter the numbers. Some requests are refused by an operator rule, some hold two roles.
//!
//! The engine is measured three ways: with its decision cache warm (every request asked once
//! before), which is how a gateway answers repeated questions; with the cache off, reading its
//! decision tables, which is the cost of a question asked for the first time; and with the cache
//! off and no tables (`max_table_cells = 0`), so every decision runs casbin's matcher, for
//! comparison. How long compiling each size takes is printed too: a reload compiles a new engine.
//!
//! Besides criterion's estimates, a plain loop times each call on its own and prints p50 and p99,
//! which criterion does not report. Cedar is timed on `is_authorized` alone, with its request and
//! entities built beforehand; the engine is timed on `decide`, which builds everything it needs.
//!
//! Run with `cargo bench -p liaison-policy --bench decide`.

#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark binary: a fixture that does not build should stop it"
)]

#[path = "../tests/cedar/mod.rs"]
mod cedar;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cedar::CedarPolicy;
use criterion::{BenchmarkId, Criterion};
use liaison_policy::{
    Action, Agreement, AgreementStatus, CompileOptions, DatasetTerms, DecisionRequest, Effect,
    OperatorRule, PolicyEngine, PolicySet, RoleFields,
};
use time::macros::{date, datetime};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Allow lines per generated agreement: 2 datasets × 2 recipients × 2 roles × 2 actions × 2
/// purposes.
const LINES_PER_AGREEMENT: usize = 32;
const AGENCIES: usize = 40;
const DATASETS: usize = 100;
const PURPOSES: [&str; 5] = [
    "safeguarding-children",
    "safeguarding-adults",
    "domestic-abuse-marac",
    "missing-person",
    "crime-prevention",
];
const ROLES: [&str; 2] = ["social-worker", "team-manager"];
const FIELDS: [&str; 6] = [
    "person.names",
    "person.date_of_birth",
    "incident.summary",
    "warning_marker.marker",
    "safeguarding_concern",
    "risk_assessment.level",
];

/// A request with owned values.
struct Ask {
    agency: String,
    roles: Vec<String>,
    action: Action,
    dataset: String,
    purpose: String,
    isa: String,
}

/// One policy size, compiled both ways, with the requests to put to it.
struct Fixture {
    lines: usize,
    /// With the decision cache, warmed: every request has been asked once.
    engine: PolicyEngine,
    /// Without it: every call reads the decision tables.
    uncached: PolicyEngine,
    /// Without the cache or tables: every call runs casbin's matcher.
    live: PolicyEngine,
    /// How long compiling took, with tables and without.
    compile_time: Duration,
    live_compile_time: Duration,
    cedar: CedarPolicy,
    asks: Vec<Ask>,
    /// Cedar's requests and entities, built once, in the order of `asks`.
    cedar_requests: Vec<(cedar_policy::Request, cedar_policy::Entities)>,
}

fn agreement(i: usize) -> Agreement {
    let agency = |k: usize| format!("agency-{}", k % AGENCIES);
    let dataset = |k: usize| format!("dataset-{}.records", k % DATASETS);
    let terms = |name: String| DatasetTerms {
        dataset: name,
        actions: vec![Action::Search, Action::Read],
        roles: ROLES
            .iter()
            .enumerate()
            .map(|(r, role)| RoleFields {
                role: (*role).to_owned(),
                fields: FIELDS[..4 + r].iter().map(|f| (*f).to_owned()).collect(),
            })
            .collect(),
        handling_caveat: Some("OFFICIAL-SENSITIVE".to_owned()),
        notify_provider: i.is_multiple_of(2),
        break_glass: Vec::new(),
    };
    Agreement {
        id: format!("isa-{i}"),
        version: 1,
        title: format!("agreement {i}"),
        provider: format!("provider-{}", i % 25),
        recipients: vec![agency(i), agency(i + 1)],
        purposes: vec![
            PURPOSES[i % PURPOSES.len()].to_owned(),
            PURPOSES[(i + 2) % PURPOSES.len()].to_owned(),
        ],
        legal_basis: "Children Act 2004 s.11".to_owned(),
        datasets: vec![terms(dataset(i)), terms(dataset(i + 7))],
        valid_from: date!(2026 - 01 - 01),
        valid_until: Some(date!(2027 - 12 - 31)),
        review_date: Some(date!(2026 - 12 - 01)),
        status: AgreementStatus::Active,
        dpo_contacts: Vec::new(),
        controllership: None,
        special_category: false,
        law_enforcement: false,
        rights_handling: None,
        retention: None,
        security_requirements: None,
        sign_off: Vec::new(),
    }
}

/// Operator rules of the kinds operators write: narrow pauses of one agency's or one dataset's
/// sharing, and a few broad ones by purpose.
fn rule(i: usize) -> OperatorRule {
    let wild = || "*".to_owned();
    let (agency, role, dataset, purpose, action) = match i % 4 {
        0 => (
            format!("agency-{}", (i * 7) % AGENCIES),
            wild(),
            wild(),
            PURPOSES[i % 5].to_owned(),
            wild(),
        ),
        1 => (
            wild(),
            wild(),
            format!("dataset-{}.records", (i * 13) % DATASETS),
            wild(),
            wild(),
        ),
        2 => (
            wild(),
            "team-manager".to_owned(),
            format!("dataset-{}.records", (i * 3) % DATASETS),
            wild(),
            "read".to_owned(),
        ),
        _ => (
            format!("agency-{}", (i * 11) % AGENCIES),
            "social-worker".to_owned(),
            format!("dataset-{}.records", (i * 17) % DATASETS),
            wild(),
            wild(),
        ),
    };
    OperatorRule {
        id: format!("rule-{i}"),
        effect: Effect::Deny,
        agency,
        role,
        dataset,
        purpose,
        action,
        description: "paused".to_owned(),
        marker: None,
        break_glass: Default::default(),
    }
}

fn fixture(lines: usize) -> Fixture {
    // About one line in thirty is an operator rule.
    let agreements = lines / LINES_PER_AGREEMENT - usize::from(lines >= 1_000);
    let rules = lines - agreements * LINES_PER_AGREEMENT;
    let set = PolicySet::new(
        (0..agreements).map(agreement).collect(),
        (0..rules).map(rule).collect(),
    )
    .expect("generated policy is valid");
    let engine = PolicyEngine::compile(&set).expect("compiles");
    let start = Instant::now();
    let uncached = PolicyEngine::compile(&set)
        .expect("compiles")
        .with_decision_cache(0);
    let compile_time = start.elapsed();
    let start = Instant::now();
    let live = live_engine(&set);
    let live_compile_time = start.elapsed();
    let cedar = CedarPolicy::translate(&set);

    // 1,024 requests spread over the agreements, each within an agreement's terms.
    let asks: Vec<Ask> = (0..1_024)
        .map(|k| {
            let a = &set.agreements()[(k * 7919) % agreements];
            let roles = match k % 3 {
                0 => vec![ROLES[0].to_owned()],
                1 => vec![ROLES[1].to_owned()],
                _ => vec![ROLES[1].to_owned(), ROLES[0].to_owned()],
            };
            Ask {
                agency: a.recipients[k % 2].clone(),
                roles,
                action: if k % 5 == 0 {
                    Action::Search
                } else {
                    Action::Read
                },
                dataset: a.datasets[(k / 2) % 2].dataset.clone(),
                purpose: a.purposes[(k / 3) % 2].clone(),
                isa: a.id.clone(),
            }
        })
        .collect();
    let cedar_requests = asks
        .iter()
        .map(|ask| cedar.request(&request(ask)))
        .collect();
    Fixture {
        lines,
        engine,
        uncached,
        live,
        compile_time,
        live_compile_time,
        cedar,
        asks,
        cedar_requests,
    }
}

/// An engine without decision tables or cache: casbin runs its matcher on every decision.
fn live_engine(set: &PolicySet) -> PolicyEngine {
    PolicyEngine::compile_with(
        set,
        CompileOptions {
            max_table_cells: 0,
            ..CompileOptions::default()
        },
    )
    .expect("compiles")
    .with_decision_cache(0)
}

fn request(ask: &Ask) -> DecisionRequest<'_> {
    DecisionRequest {
        agency: &ask.agency,
        roles: &ask.roles,
        action: ask.action,
        dataset: &ask.dataset,
        purpose: &ask.purpose,
        isa_id: &ask.isa,
        at: datetime!(2026-06-01 10:00 UTC),
        break_glass: false,
    }
}

impl Fixture {
    /// Both engines answer every request alike, and the mix holds allows and denials.
    fn check_agreement(&self) {
        let mut allowed = 0;
        for (ask, (req, entities)) in self.asks.iter().zip(&self.cedar_requests) {
            let ours = self.engine.decide(&request(ask));
            assert_eq!(ours, self.uncached.decide(&request(ask)));
            assert_eq!(ours, self.live.decide(&request(ask)));
            let ours = ours.is_allowed();
            assert_eq!(ours, self.cedar.is_authorized(req, entities), "{}", ask.isa);
            allowed += usize::from(ours);
        }
        let coverage = self.uncached.table_coverage();
        eprintln!(
            "{} lines: {} cedar policies; {allowed} of {} requests allowed; {} enforcers with \
             tables ({} cells), {} live; compiled in {:.2?} with tables, {:.2?} without",
            self.lines,
            self.cedar.len(),
            self.asks.len(),
            coverage.tables,
            coverage.cells,
            coverage.live,
            self.compile_time,
            self.live_compile_time,
        );
        assert_eq!(coverage.live, 0);
        assert!(allowed > 0 && allowed < self.asks.len());
    }

    fn decide(&self, k: usize) -> bool {
        let ask = &self.asks[k % self.asks.len()];
        self.engine.decide(black_box(&request(ask))).is_allowed()
    }

    fn decide_uncached(&self, k: usize) -> bool {
        let ask = &self.asks[k % self.asks.len()];
        self.uncached.decide(black_box(&request(ask))).is_allowed()
    }

    fn decide_live(&self, k: usize) -> bool {
        let ask = &self.asks[k % self.asks.len()];
        self.live.decide(black_box(&request(ask))).is_allowed()
    }

    fn cedar(&self, k: usize) -> bool {
        let (req, entities) = &self.cedar_requests[k % self.cedar_requests.len()];
        self.cedar
            .is_authorized(black_box(req), black_box(entities))
    }
}

fn criterion_benches(c: &mut Criterion, fixtures: &[Fixture]) {
    let mut group = c.benchmark_group("decide");
    for fixture in fixtures {
        let mut k = 0;
        group.bench_with_input(
            BenchmarkId::new("liaison-cached", fixture.lines),
            fixture,
            |b, f| {
                b.iter(|| {
                    k += 1;
                    f.decide(k)
                })
            },
        );
        let mut k = 0;
        group.bench_with_input(
            BenchmarkId::new("liaison-table", fixture.lines),
            fixture,
            |b, f| {
                b.iter(|| {
                    k += 1;
                    f.decide_uncached(k)
                })
            },
        );
        let mut k = 0;
        group.bench_with_input(
            BenchmarkId::new("liaison-live", fixture.lines),
            fixture,
            |b, f| {
                b.iter(|| {
                    k += 1;
                    f.decide_live(k)
                })
            },
        );
        let mut k = 0;
        group.bench_with_input(BenchmarkId::new("cedar", fixture.lines), fixture, |b, f| {
            b.iter(|| {
                k += 1;
                f.cedar(k)
            })
        });
    }
    group.finish();
}

/// Times calls one by one for up to `budget` (and at most 200,000 calls) and returns the sorted
/// latencies.
fn latencies(budget: Duration, mut call: impl FnMut(usize) -> bool) -> Vec<Duration> {
    // Warm caches and branch predictors first.
    for k in 0..2_000 {
        black_box(call(k));
    }
    let mut times = Vec::with_capacity(200_000);
    let start = Instant::now();
    let mut k = 0;
    while times.len() < 200_000 && start.elapsed() < budget {
        let t = Instant::now();
        black_box(call(k));
        times.push(t.elapsed());
        k += 1;
    }
    times.sort_unstable();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn percentiles(fixtures: &[Fixture]) {
    println!();
    println!("per-call latency (plain loop, each call timed alone)");
    println!(
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>9}",
        "rules", "engine", "calls", "p50", "p99"
    );
    for fixture in fixtures {
        for (name, times) in [
            (
                "cached",
                latencies(Duration::from_secs(2), |k| fixture.decide(k)),
            ),
            (
                "table",
                latencies(Duration::from_secs(2), |k| fixture.decide_uncached(k)),
            ),
            (
                "live",
                latencies(Duration::from_secs(2), |k| fixture.decide_live(k)),
            ),
            (
                "cedar",
                latencies(Duration::from_secs(2), |k| fixture.cedar(k)),
            ),
        ] {
            println!(
                "{:>7}  {name:>9}  {:>9}  {:>9.2?}  {:>9.2?}",
                fixture.lines,
                times.len(),
                percentile(&times, 0.50),
                percentile(&times, 0.99),
            );
        }
    }
}

/// What one uncached decision costs against the number of casbin lines in the enforcer it
/// reaches, from the table and live: one agreement, recipient, dataset, role and action, with `n`
/// purposes, so the enforcer holds `n` lines and the request matches the first.
fn line_scaling() {
    println!();
    println!("uncached cost by lines in the enforcer a request reaches (plain loop)");
    println!(
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>9}",
        "lines", "table p50", "table p99", "live p50", "live p99"
    );
    for n in [1, 4, 16, 64] {
        let mut a = agreement(0);
        a.recipients.truncate(1);
        a.datasets.truncate(1);
        a.purposes = (0..n).map(|p| format!("purpose-{p}")).collect();
        for terms in &mut a.datasets {
            terms.actions = vec![Action::Read];
            terms.roles.truncate(1);
        }
        let ask = Ask {
            agency: a.recipients[0].clone(),
            roles: vec![ROLES[0].to_owned()],
            action: Action::Read,
            dataset: a.datasets[0].dataset.clone(),
            purpose: a.purposes[0].clone(),
            isa: a.id.clone(),
        };
        let set = PolicySet::new(vec![a], Vec::new()).expect("valid");
        let tabled = PolicyEngine::compile(&set)
            .expect("compiles")
            .with_decision_cache(0);
        let live = live_engine(&set);
        assert!(tabled.decide(&request(&ask)).is_allowed());
        assert_eq!(tabled.decide(&request(&ask)), live.decide(&request(&ask)));
        let table_times = latencies(Duration::from_secs(1), |_| {
            tabled.decide(black_box(&request(&ask))).is_allowed()
        });
        let live_times = latencies(Duration::from_secs(1), |_| {
            live.decide(black_box(&request(&ask))).is_allowed()
        });
        println!(
            "{n:>7}  {:>9.2?}  {:>9.2?}  {:>9.2?}  {:>9.2?}",
            percentile(&table_times, 0.50),
            percentile(&table_times, 0.99),
            percentile(&live_times, 0.50),
            percentile(&live_times, 0.99)
        );
    }
}

/// How long compiling takes at each size, with decision tables and without, best of three.
fn compile_times() {
    println!();
    println!("compile time (best of 3)");
    println!(
        "{:>7}  {:>9}  {:>11}  {:>12}",
        "rules", "enforcers", "with tables", "without"
    );
    for &lines in &SIZES {
        let agreements = lines / LINES_PER_AGREEMENT - usize::from(lines >= 1_000);
        let rules = lines - agreements * LINES_PER_AGREEMENT;
        let set = PolicySet::new(
            (0..agreements).map(agreement).collect(),
            (0..rules).map(rule).collect(),
        )
        .expect("valid");
        let best = |compile: &dyn Fn() -> PolicyEngine| {
            (0..3)
                .map(|_| {
                    let start = Instant::now();
                    black_box(compile());
                    start.elapsed()
                })
                .min()
                .expect("three runs")
        };
        let tabled = best(&|| PolicyEngine::compile(&set).expect("compiles"));
        let live = best(&|| live_engine(&set));
        let enforcers = PolicyEngine::compile(&set)
            .expect("compiles")
            .table_coverage()
            .tables;
        println!("{lines:>7}  {enforcers:>9}  {tabled:>11.2?}  {live:>12.2?}");
    }
}

fn main() {
    // `DECIDE_PROFILE=1` runs uncached decisions at 10,000 rules for ten seconds and nothing
    // else, for `perf record`.
    if std::env::var_os("DECIDE_PROFILE").is_some() {
        let fixture = fixture(10_000);
        let start = Instant::now();
        let mut k = 0;
        while start.elapsed() < Duration::from_secs(10) {
            black_box(fixture.decide_uncached(k));
            k += 1;
        }
        return;
    }
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| fixture(n)).collect();
    for fixture in &fixtures {
        fixture.check_agreement();
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &fixtures);
    criterion.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each benchmark once instead,
    // and needs no percentiles.
    if std::env::args().any(|arg| arg == "--bench") {
        percentiles(&fixtures);
        line_scaling();
        compile_times();
    }
}
