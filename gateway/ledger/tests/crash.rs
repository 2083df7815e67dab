//! Crash and fault tests: opt-in, because each takes minutes.
//!
//! ```text
//! cargo test -p liaison-ledger --test crash -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - `sqlite_survives_kill_9` / `postgres_survives_kill_9`: run `ledger-load` (16 concurrent
//!   appenders, a sealer every 200 ms) against one ledger and kill it with SIGKILL at a
//!   pseudo-random moment, at least 50 times and until at least 100,000 appends were
//!   acknowledged; then check that every acknowledged entry is there (lost = 0), that nothing is
//!   there that was never attempted or that was in flight in a way the protocol does not allow
//!   (unexpected = 0), that no entry is recorded twice (duplicated = 0), and that the sequence
//!   is dense and verifies, signatures included (gaps = 0).
//! - `postgres_outages_fail_fast_and_recover`: 16 in-process appenders; 20 times the database
//!   stops accepting connections and every session is terminated (`ALTER DATABASE …
//!   ALLOW_CONNECTIONS false` and `pg_terminate_backend`: the server is shared, so it is not
//!   stopped). Appends must fail `Unavailable` within 1 s of the outage, succeed again within 5 s
//!   of the end of it, and lose nothing acknowledged.
//!
//! The PostgreSQL server is `LIAISON_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use liaison_ledger::test_util::{
    body_for, fresh_postgres_db, fresh_sqlite_db, load_entry, test_signing_key,
};
use liaison_ledger::{EntryFilter, Ledger, LedgerError, LedgerOptions, MAX_PAGE, Order};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::Mutex;

const MIN_CYCLES: u64 = 50;
const MIN_ACKS: usize = 100_000;
const TASKS: u64 = 16;
const BODY_BYTES: usize = 512;

/// What a crash run found.
#[derive(Debug, Default)]
struct Tally {
    cycles: u64,
    acknowledged: usize,
    recorded: u64,
    in_flight_recorded: u64,
    lost: usize,
    unexpected: usize,
    duplicated: usize,
    gaps: u64,
}

/// Entry ids are `c{cycle}-t{task}-{n}`.
fn parse_id(id: &str) -> Option<(u64, u64, u64)> {
    let rest = id.strip_prefix('c')?;
    let (cycle, rest) = rest.split_once("-t")?;
    let (task, n) = rest.split_once('-')?;
    Some((cycle.parse().ok()?, task.parse().ok()?, n.parse().ok()?))
}

/// Deterministic pseudo-random kill delays, 150 to 1350 ms.
fn delay(cycle: u64) -> Duration {
    let mut x = cycle.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    Duration::from_millis(150 + x % 1200)
}

async fn crash_cycles(url: &str) -> Tally {
    let bin = env!("CARGO_BIN_EXE_ledger-load");
    let mut acked: HashSet<String> = HashSet::new();
    let mut tally = Tally::default();
    let started = Instant::now();
    while tally.cycles < MIN_CYCLES || acked.len() < MIN_ACKS {
        let cycle = tally.cycles;
        let mut child = tokio::process::Command::new(bin)
            .args([
                url,
                "--tasks",
                &TASKS.to_string(),
                "--prefix",
                &format!("c{cycle}-"),
                "--body-bytes",
                &BODY_BYTES.to_string(),
                "--seal-ms",
                "200",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let reader = tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    // A line cut off by the kill was not fully reported: not counted.
                    Ok(_) if line.last() == Some(&b'\n') => {
                        ids.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
                    }
                    Ok(_) => break,
                }
            }
            ids
        });
        tokio::time::sleep(delay(cycle)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let ids = reader.await.unwrap();
        tally.cycles += 1;
        acked.extend(ids);
        if cycle % 10 == 9 {
            eprintln!(
                "  {} cycles, {} acknowledged, {:?}",
                tally.cycles,
                acked.len(),
                started.elapsed()
            );
        }
    }
    tally.acknowledged = acked.len();

    // The highest acknowledged n of each (cycle, task): each task may have had exactly the next
    // one in flight when it was killed, which may or may not have been committed.
    let mut highest: HashMap<(u64, u64), u64> = HashMap::new();
    for id in &acked {
        let (cycle, task, n) = parse_id(id).unwrap();
        let top = highest.entry((cycle, task)).or_insert(n);
        *top = (*top).max(n);
    }

    let ledger = Ledger::connect(url).await.unwrap();
    // Seal whatever the last run left unsealed, then check everything including signatures.
    let key = test_signing_key(1);
    ledger.seal(&key).await.unwrap();
    let report = ledger
        .verify_signed(&key.verifying_key(), &[])
        .await
        .unwrap_or_else(|err| panic!("the ledger does not verify after the crashes: {err}"));
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = None;
    let mut expected_seq = 1;
    let filter = EntryFilter {
        order: Order::OldestFirst,
        ..EntryFilter::default()
    };
    loop {
        let page = ledger.list(&filter, MAX_PAGE, after).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for entry in page {
            if entry.seq != expected_seq {
                tally.gaps += 1;
            }
            expected_seq = entry.seq + 1;
            assert_eq!(
                entry.body,
                body_for(&entry.entry_id, BODY_BYTES),
                "body of {}",
                entry.entry_id
            );
            *seen.entry(entry.entry_id).or_default() += 1;
        }
    }
    tally.recorded = seen.values().sum();
    if tally.recorded != report.entries {
        tally.gaps += 1;
    }
    tally.duplicated = seen.values().filter(|count| **count > 1).count();
    tally.lost = acked.iter().filter(|id| !seen.contains_key(*id)).count();
    for id in seen.keys().filter(|id| !acked.contains(*id)) {
        let in_flight = parse_id(id).is_some_and(|(cycle, task, n)| {
            n == highest.get(&(cycle, task)).map_or(0, |top| top + 1)
        });
        if in_flight {
            tally.in_flight_recorded += 1;
        } else {
            tally.unexpected += 1;
        }
    }
    eprintln!("{tally:?} in {:?}", started.elapsed());
    tally
}

fn assert_clean(tally: &Tally) {
    assert!(tally.cycles >= MIN_CYCLES);
    assert!(tally.acknowledged >= MIN_ACKS);
    assert_eq!(
        (tally.lost, tally.unexpected, tally.duplicated, tally.gaps),
        (0, 0, 0, 0),
        "{tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes: 50+ SIGKILL cycles and 100,000+ appends"]
async fn sqlite_survives_kill_9() {
    let (url, _dir) = fresh_sqlite_db();
    assert_clean(&crash_cycles(&url).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes: 50+ SIGKILL cycles and 100,000+ appends"]
async fn postgres_survives_kill_9() {
    let (url, _db) = fresh_postgres_db().await;
    assert_clean(&crash_cycles(&url).await);
}

/// One append attempt's outcome, for the fault test's timings.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    started: Instant,
    ended: Instant,
    ok: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute: 20 database outages under load"]
async fn postgres_outages_fail_fast_and_recover() {
    const OUTAGES: usize = 20;
    let (url, db) = fresh_postgres_db().await;
    let mut options = LedgerOptions::default();
    options.acquire_timeout = Duration::from_secs(1);
    let ledger = Ledger::connect_with(&url, options).await.unwrap();
    let admin = PgPool::connect(db.admin_url()).await.unwrap();
    let name = db.name().to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::new(Mutex::new(Vec::new()));
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (ledger, stop, attempts, acked) = (
            ledger.clone(),
            Arc::clone(&stop),
            Arc::clone(&attempts),
            Arc::clone(&acked),
        );
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let entry_id = format!("c0-t{task}-{n}");
                let entry = load_entry(&entry_id, body_for(&entry_id, BODY_BYTES));
                let started = Instant::now();
                let result = ledger.append(entry).await;
                let ended = Instant::now();
                attempts.lock().await.push(Attempt {
                    started,
                    ended,
                    ok: result.is_ok(),
                });
                match result {
                    Ok(_) => {
                        acked.lock().await.push(entry_id);
                        n += 1;
                    }
                    Err(LedgerError::Unavailable { .. } | LedgerError::Busy { .. }) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        });
    }

    let mut fail_after = Vec::new();
    let mut slowest_failure = Duration::ZERO;
    let mut resume_after = Vec::new();
    for _ in 0..OUTAGES {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let down = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        )))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .fetch_all(&admin)
        .await
        .unwrap();
        let terminated = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let up = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"
        )))
        .execute(&admin)
        .await
        .unwrap();
        // Wait for the first success after the outage (at most 5 s), then look at the log.
        while up.elapsed() < Duration::from_secs(5)
            && !attempts.lock().await.iter().any(|a| a.ok && a.ended >= up)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = attempts.lock().await.clone();
        // The first failure after the outage began.
        let first_failure = log
            .iter()
            .filter(|a| !a.ok && a.ended >= down)
            .map(|a| a.ended)
            .min()
            .expect("appends failed during the outage");
        fail_after.push(first_failure - down);
        // Every append that started during the outage failed within 1 s.
        for a in log
            .iter()
            .filter(|a| a.started >= down && a.started < up && !a.ok)
        {
            slowest_failure = slowest_failure.max(a.ended - a.started);
        }
        assert!(
            !log.iter().any(|a| a.ok
                && a.started >= terminated + Duration::from_millis(50)
                && a.ended < up),
            "an append succeeded while the database refused connections"
        );
        let first_success = log
            .iter()
            .filter(|a| a.ok && a.ended >= up)
            .map(|a| a.ended)
            .min()
            .expect("appends resumed after the outage");
        resume_after.push(first_success - up);
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let acked = acked.lock().await.clone();
    let report = ledger.verify().await.unwrap();
    let mut lost = 0;
    for id in &acked {
        if ledger.get(id).await.unwrap().is_none() {
            lost += 1;
        }
    }
    let max = |d: &[Duration]| d.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{OUTAGES} outages: first failure after at most {:?} (mean {:?}); slowest failed append \
         {slowest_failure:?}; first success after the outage at most {:?} (mean {:?}); \
         {} acknowledged, {} recorded, {lost} lost",
        max(&fail_after),
        fail_after.iter().sum::<Duration>() / OUTAGES as u32,
        max(&resume_after),
        resume_after.iter().sum::<Duration>() / OUTAGES as u32,
        acked.len(),
        report.entries,
    );
    assert!(max(&fail_after) < Duration::from_secs(1), "{fail_after:?}");
    assert!(
        slowest_failure < Duration::from_secs(1),
        "{slowest_failure:?}"
    );
    assert!(
        max(&resume_after) < Duration::from_secs(5),
        "{resume_after:?}"
    );
    assert_eq!(lost, 0);
    assert!(report.entries >= acked.len() as u64);
}
