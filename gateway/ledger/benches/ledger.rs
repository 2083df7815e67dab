//! Ledger benchmarks. Opt-in, never part of `cargo test`:
//!
//! ```text
//! cargo bench -p liaison-ledger --bench ledger -- append [--appenders 16,32,64] [--entries N]
//! cargo bench -p liaison-ledger --bench ledger -- proof [--backend postgres|sqlite] [--sizes 1000000,10000000]
//! ```
//!
//! `append` measures durable appends per second with group commit on PostgreSQL, for each number
//! of concurrent appenders, beside a plain baseline in the same server and run: a fresh table
//! with the same columns (and only a primary key) filled by one connection with multi-row
//! `INSERT`s, and with `COPY`, one committed transaction per batch, rows of the same size.
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
            let entries = list("--entries", "30000")[0];
            runtime.block_on(append_bench(&appenders, entries));
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

async fn append_bench(appenders: &[u64], entries: u64) {
    println!("durable appends, PostgreSQL, {BODY_BYTES}-byte bodies, {entries} entries per run");
    let baselines = baseline(entries).await;
    for (name, rate) in &baselines {
        println!("  baseline {name:<34} {rate:>9.0} rows/s");
    }
    let reference = baselines
        .iter()
        .find(|(name, _)| name.starts_with("INSERT, 256"))
        .map_or(1.0, |(_, rate)| *rate);
    for &n in appenders {
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
        let elapsed = started.elapsed();
        let stats = ledger.stats();
        let rate = entries as f64 / elapsed.as_secs_f64();
        println!(
            "  ledger, {n:>2} appenders{:>22} {rate:>9.0} entries/s  ({:.2} of the INSERT baseline; \
             {} transactions, mean batch {:.1}, largest {})",
            "",
            rate / reference,
            stats.transactions,
            stats.entries as f64 / stats.transactions.max(1) as f64,
            stats.largest_batch,
        );
        assert_eq!(ledger.verify().await.unwrap().entries, entries);
        ledger.close().await;
    }
}

/// Rows per second into a table with the ledger's columns and only a primary key: multi-row
/// `INSERT`s of 64 and 256 rows, and `COPY` of 256 rows, one committed transaction each.
async fn baseline(entries: u64) -> Vec<(String, f64)> {
    let (url, _db) = fresh_postgres_db().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("SET synchronous_commit = on")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut results = Vec::new();
    for (name, batch, copy) in [
        ("INSERT, 64 rows per commit", 64u64, false),
        ("INSERT, 256 rows per commit", 256, false),
        ("COPY, 256 rows per commit", 256, true),
    ] {
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS baseline;
             CREATE TABLE baseline (
                 seq BIGINT PRIMARY KEY, entry_id TEXT NOT NULL, recorded_at BIGINT NOT NULL,
                 body BYTEA NOT NULL, leaf_hash BYTEA NOT NULL, chain_hash BYTEA NOT NULL,
                 agency TEXT NOT NULL, subject TEXT NOT NULL, recipient TEXT NOT NULL,
                 action TEXT NOT NULL, purpose TEXT NOT NULL, isa_id TEXT NOT NULL,
                 outcome TEXT NOT NULL)",
        )
        .execute(&mut conn)
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
        results.push((
            name.to_owned(),
            entries as f64 / started.elapsed().as_secs_f64(),
        ));
    }
    conn.close().await.unwrap();
    results
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
