//! Ledger benchmarks. Opt-in, never part of `cargo test`:
//!
//! ```text
//! cargo bench -p liaison-ledger --bench ledger -- append [--appenders 16,32,64] [--entries N] [--rounds R]
//! cargo bench -p liaison-ledger --bench ledger -- proof [--backend postgres|sqlite] [--sizes 1000000,10000000]
//! ```
//!
//! `append` measures durable appends per second with group commit on PostgreSQL, for each number
//! of concurrent appenders, beside a plain baseline in the same server and run: a fresh table
//! with the same columns (and only a primary key) filled by one connection with multi-row
//! `INSERT`s of as many rows as there are appenders (the most one group commit can hold) and of
//! 256 rows, and with `COPY` of 256 rows, one committed transaction per batch, rows of the same
//! size. Baseline and ledger runs are interleaved, in several rounds, and medians reported,
//! because a shared machine's load drifts.
//!
//! `proof` writes a tree of each size straight into `tree_nodes` (leaf hashes are generated, not
//! appended) with one signed head over it, then times `inclusion_proof`, `tree_head` and
//! `consistency_proof` through the public API at random positions.
//!
//! The server is `LIAISON_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each run uses a fresh database and drops it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark binary fails by panicking"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use liaison_ledger::test_util::{
    body_for, fresh_postgres_db, fresh_sqlite_db, load_entry, test_signing_key,
};
use liaison_ledger::{Hash, Ledger, LedgerOptions, merkle};
use sqlx::{Connection as _, PgConnection, QueryBuilder};

const BODY_BYTES: usize = 512;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let list = |name: &str, default: &str| -> Vec<u64> {
        option(name)
            .unwrap_or_else(|| default.to_owned())
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect()
    };
    match args.first().map(String::as_str) {
        Some("append") => {
            let appenders = list("--appenders", "16,32,64");
            let entries = list("--entries", "20000")[0];
            let rounds = list("--rounds", "3")[0];
            runtime.block_on(append_bench(&appenders, entries, rounds as usize));
        }
        Some("proof") => {
            let sizes = list("--sizes", "1000000");
            let backend = option("--backend").unwrap_or_else(|| "postgres".to_owned());
            runtime.block_on(proof_bench(&backend, &sizes));
        }
        _ => {
            eprintln!(
                "usage: ledger (append [--appenders 16,32,64] [--entries N] | proof [--backend postgres|sqlite] [--sizes N,...])"
            );
            std::process::exit(2);
        }
    }
}

async fn append_bench(appenders: &[u64], entries: u64, rounds: usize) {
    println!(
        "durable appends, PostgreSQL, {BODY_BYTES}-byte bodies, {entries} entries per run, \
         median of {rounds} interleaved rounds"
    );
    let (base_url, _base_db) = fresh_postgres_db().await;
    let mut base = PgConnection::connect(&base_url).await.unwrap();
    let mut ledger_rates: Vec<Vec<f64>> = vec![Vec::new(); appenders.len()];
    let mut insert_rates: Vec<Vec<f64>> = vec![Vec::new(); appenders.len()];
    let (mut insert_256, mut copy_256) = (Vec::new(), Vec::new());
    let mut batches: Vec<Vec<f64>> = vec![Vec::new(); appenders.len()];
    for round in 0..rounds {
        for (i, &n) in appenders.iter().enumerate() {
            insert_rates[i].push(baseline(&mut base, entries, n, false).await);
            let (rate, mean_batch) = ledger_run(n, entries).await;
            ledger_rates[i].push(rate);
            batches[i].push(mean_batch);
        }
        insert_256.push(baseline(&mut base, entries, 256, false).await);
        copy_256.push(baseline(&mut base, entries, 256, true).await);
        eprintln!("  round {} done", round + 1);
    }
    base.close().await.unwrap();
    let insert_256 = median(&mut insert_256);
    println!("  baseline INSERT 256 rows per commit {insert_256:>9.0} rows/s");
    println!(
        "  baseline COPY   256 rows per commit {:>9.0} rows/s",
        median(&mut copy_256)
    );
    for (i, &n) in appenders.iter().enumerate() {
        let insert_n = median(&mut insert_rates[i]);
        let ledger = median(&mut ledger_rates[i]);
        println!(
            "  baseline INSERT {n:>3} rows per commit {insert_n:>9.0} rows/s\n  \
             ledger, {n:>2} appenders            {ledger:>9.0} entries/s  \
             ({:.2} of INSERT at {n} rows, {:.2} of INSERT at 256; mean batch {:.1}; \
             runs {:?})",
            ledger / insert_n,
            ledger / insert_256,
            median(&mut batches[i]),
            ledger_rates[i]
                .iter()
                .map(|r| r.round() as u64)
                .collect::<Vec<_>>(),
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `entries` appends from `n` concurrent tasks into a fresh ledger: entries per second and the
/// mean batch.
async fn ledger_run(n: u64, entries: u64) -> (f64, f64) {
    let (url, _db) = fresh_postgres_db().await;
    let mut options = LedgerOptions::default();
    options.queue_capacity = 4096;
    let ledger = Ledger::connect_with(&url, options).await.unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (ledger, next) = (ledger.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= entries {
                    break;
                }
                let id = format!("bench-{i}");
                ledger
                    .append(load_entry(&id, body_for(&id, BODY_BYTES)))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let rate = entries as f64 / started.elapsed().as_secs_f64();
    let stats = ledger.stats();
    assert_eq!(ledger.verify().await.unwrap().entries, entries);
    ledger.close().await;
    (
        rate,
        stats.entries as f64 / stats.transactions.max(1) as f64,
    )
}

/// Rows per second into a fresh table with the ledger's columns and only a primary key, by one
/// connection: multi-row `INSERT`s (or `COPY`) of `batch` rows, one committed transaction each.
async fn baseline(conn: &mut PgConnection, entries: u64, batch: u64, copy: bool) -> f64 {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS baseline;
         CREATE TABLE baseline (
             seq BIGINT PRIMARY KEY, entry_id TEXT NOT NULL, recorded_at BIGINT NOT NULL,
             body BYTEA NOT NULL, leaf_hash BYTEA NOT NULL, chain_hash BYTEA NOT NULL,
             agency TEXT NOT NULL, subject TEXT NOT NULL, recipient TEXT NOT NULL,
             action TEXT NOT NULL, purpose TEXT NOT NULL, isa_id TEXT NOT NULL,
             outcome TEXT NOT NULL)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < entries {
        let rows: Vec<u64> = (seq..(seq + batch).min(entries)).collect();
        seq += rows.len() as u64;
        let mut tx = conn.begin().await.unwrap();
        if copy {
            let mut data = String::new();
            for i in &rows {
                let id = format!("bench-{i}");
                let e = load_entry(&id, body_for(&id, BODY_BYTES));
                let hash = hex::encode(merkle::leaf_hash(&e.body));
                data.push_str(&format!(
                    "{}\t{id}\t{}\t\\\\x{}\t\\\\x{hash}\t\\\\x{hash}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    i + 1,
                    e.recorded_at.unix_timestamp_nanos(),
                    hex::encode(&e.body),
                    e.index.agency,
                    e.index.subject,
                    e.index.recipient,
                    e.index.action,
                    e.index.purpose,
                    e.index.isa_id,
                    e.index.outcome,
                ));
            }
            let mut sink = tx.copy_in_raw("COPY baseline FROM STDIN").await.unwrap();
            sink.send(data.into_bytes()).await.unwrap();
            sink.finish().await.unwrap();
        } else {
            let mut insert = QueryBuilder::new("INSERT INTO baseline ");
            insert.push_values(&rows, |mut values, i| {
                let id = format!("bench-{i}");
                let e = load_entry(&id, body_for(&id, BODY_BYTES));
                let hash = merkle::leaf_hash(&e.body).to_vec();
                values
                    .push_bind(i64::try_from(*i + 1).unwrap())
                    .push_bind(id)
                    .push_bind(i64::try_from(e.recorded_at.unix_timestamp_nanos()).unwrap())
                    .push_bind(e.body)
                    .push_bind(hash.clone())
                    .push_bind(hash)
                    .push_bind(e.index.agency)
                    .push_bind(e.index.subject)
                    .push_bind(e.index.recipient)
                    .push_bind(e.index.action)
                    .push_bind(e.index.purpose)
                    .push_bind(e.index.isa_id)
                    .push_bind(e.index.outcome);
            });
            insert.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    entries as f64 / started.elapsed().as_secs_f64()
}

async fn proof_bench(backend: &str, sizes: &[u64]) {
    for &size in sizes {
        let (url, guard): (String, Box<dyn std::any::Any>) = match backend {
            "sqlite" => {
                let (url, dir) = fresh_sqlite_db();
                (url, Box::new(dir))
            }
            _ => {
                let (url, db) = fresh_postgres_db().await;
                (url, Box::new(db))
            }
        };
        let started = Instant::now();
        let root = fill_tree(&url, size).await;
        let filled = started.elapsed();
        let ledger = Ledger::connect(&url).await.unwrap();
        assert_eq!(ledger.tree_head(size).await.unwrap().root, root);
        let head = ledger.latest_signed_head().await.unwrap().unwrap();
        assert_eq!((head.size, head.root), (size, root));

        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Warm up the connection pool and caches, and check some proofs.
        for _ in 0..200 {
            let seq = next() % size + 1;
            let proof = ledger.inclusion_proof(seq, size).await.unwrap();
            merkle::verify_inclusion(&leaf(seq - 1), seq - 1, size, &proof, &root).unwrap();
        }
        // The floor: one trivial statement through a pool like the ledger's, on the same server.
        let mut round_trip = Vec::new();
        if url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            for _ in 0..2000 {
                let t = Instant::now();
                sqlx::query("SELECT 1").execute(&pool).await.unwrap();
                round_trip.push(t.elapsed());
            }
            pool.close().await;
        }
        let mut inclusion = Vec::new();
        for _ in 0..2000 {
            let seq = next() % size + 1;
            let t = Instant::now();
            let proof = ledger.inclusion_proof(seq, size).await.unwrap();
            inclusion.push(t.elapsed());
            assert!(!proof.is_empty());
        }
        let mut heads = Vec::new();
        let mut consistency = Vec::new();
        for _ in 0..500 {
            let old = next() % size + 1;
            let t = Instant::now();
            ledger.tree_head(old).await.unwrap();
            heads.push(t.elapsed());
            let t = Instant::now();
            ledger.consistency_proof(old, size).await.unwrap();
            consistency.push(t.elapsed());
        }
        println!(
            "{backend}, {size} entries (tree written in {filled:.1?}):\n  inclusion_proof   {}\n  tree_head         {}\n  consistency_proof {}",
            summary(&mut inclusion),
            summary(&mut heads),
            summary(&mut consistency),
        );
        if !round_trip.is_empty() {
            println!("  SELECT 1 (floor)  {}", summary(&mut round_trip));
        }
        ledger.close().await;
        drop(guard);
    }
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    format!(
        "median {:>9.1?}  p99 {:>9.1?}  mean {:>9.1?}  ({} calls)",
        pick(0.5),
        pick(0.99),
        mean,
        times.len()
    )
}

/// The generated leaf hash of leaf `index`.
fn leaf(index: u64) -> Hash {
    merkle::leaf_hash(&index.to_be_bytes())
}

/// Writes every node of the tree of `size` generated leaves, a signed head over it, and a head
/// row claiming `size` entries. Returns the root.
async fn fill_tree(url: &str, size: u64) -> Hash {
    let ledger = Ledger::connect(url).await.unwrap();
    ledger.close().await;
    let mut level: Vec<Hash> = (0..size).map(leaf).collect();
    let mut levels_written = Vec::new();
    let postgres = url.starts_with("postgres");
    if postgres {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql("ALTER TABLE tree_nodes DROP CONSTRAINT tree_nodes_pkey")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut height = 0u8;
        loop {
            let mut sink = conn
                .copy_in_raw("COPY tree_nodes (level, idx, hash) FROM STDIN")
                .await
                .unwrap();
            for (chunk_start, chunk) in (0u64..).step_by(65536).zip(level.chunks(65536)) {
                let mut data = String::with_capacity(chunk.len() * 90);
                for (i, hash) in (chunk_start..).zip(chunk) {
                    data.push_str(&format!("{height}\t{i}\t\\\\x{}\n", hex::encode(hash)));
                }
                sink.send(data.into_bytes()).await.unwrap();
            }
            sink.finish().await.unwrap();
            levels_written.push(level.len());
            if level.len() < 2 {
                break;
            }
            level = level
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            height += 1;
        }
        sqlx::raw_sql("ALTER TABLE tree_nodes ADD PRIMARY KEY (level, idx); ANALYZE tree_nodes")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let mut height = 0i16;
        loop {
            let mut tx = conn.begin().await.unwrap();
            for (chunk_start, chunk) in (0i64..).step_by(3000).zip(level.chunks(3000)) {
                let mut insert = QueryBuilder::new("INSERT INTO tree_nodes (level, idx, hash) ");
                insert.push_values((chunk_start..).zip(chunk), |mut values, (i, hash)| {
                    values
                        .push_bind(height)
                        .push_bind(i)
                        .push_bind(hash.to_vec());
                });
                insert.build().execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
            if level.len() < 2 {
                break;
            }
            level = level
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            height += 1;
        }
        conn.close().await.unwrap();
    }
    // The root, from the stored perfect subtrees of `size`.
    let leaves_root = {
        let mut builder = merkle::RootBuilder::new();
        for i in 0..size {
            builder.push(leaf(i));
        }
        builder.root()
    };
    let head = test_signing_key(1)
        .sign_head(size, leaves_root, 1_700_000_000_000)
        .unwrap();
    let statements = format!(
        "INSERT INTO tree_heads (size, timestamp, root, key_id, signature) VALUES \
         ({size}, {}, {}, {}, {}); UPDATE ledger_head SET size = {size} WHERE id = 1",
        head.timestamp,
        blob(postgres, &head.root),
        blob(postgres, &head.key_id.0),
        blob(postgres, &head.signature),
    );
    if postgres {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    leaves_root
}

fn blob(postgres: bool, bytes: &[u8]) -> String {
    if postgres {
        format!("'\\x{}'::bytea", hex::encode(bytes))
    } else {
        format!("X'{}'", hex::encode(bytes))
    }
}
