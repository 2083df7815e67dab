//! Sealing: signed tree heads, stored nodes, proofs from them, the sealer task, leadership among
//! replicas on PostgreSQL, witness files, and upgrading a schema-1 database.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use std::time::Duration;

use common::Raw;
use liaison_ledger::test_util::{fresh_postgres_db, sample_entry, test_signing_key};
use liaison_ledger::{
    Hash, Ledger, LedgerError, LedgerOptions, Problem, Sealer, SealerOptions, SignedTreeHead,
    merkle, read_witness_file,
};
use sqlx::PgPool;
use tokio::task::JoinSet;

on_both_backends!(
    sealing_signs_heads_and_stores_nodes,
    proofs_from_stored_nodes_match_the_rfc_algorithms,
    sealer_seals_on_its_interval_in_bounded_steps,
    concurrent_seals_never_sign_two_heads_of_one_size,
    sealer_refuses_to_sign_over_damage,
    witness_file_records_every_head,
    schema_1_databases_upgrade_and_get_sealed,
);

async fn append_range(ledger: &Ledger, ns: std::ops::RangeInclusive<u64>) -> Vec<Hash> {
    let mut leaves = Vec::new();
    for n in ns {
        leaves.push(ledger.append(sample_entry(n)).await.unwrap().leaf_hash);
    }
    leaves
}

/// Appends `ns`, up to `at_once` in flight, so group commit batches them.
async fn append_concurrently(ledger: &Ledger, ns: std::ops::RangeInclusive<u64>, at_once: usize) {
    let mut tasks = JoinSet::new();
    for n in ns {
        let ledger = ledger.clone();
        tasks.spawn(async move { ledger.append(sample_entry(n)).await.unwrap() });
        if tasks.len() >= at_once {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// On SQLite a write transaction is the database's one write lock, which every append needs: a
/// sealer that read and re-hashed thousands of entries inside one held every share up for as
/// long. Appends must complete while a large seal is under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_go_on_while_a_seal_reads_its_entries() {
    let (url, _dir) = liaison_ledger::test_util::fresh_sqlite_db();
    let ledger = Ledger::connect(&url).await.unwrap();
    let most = 16_384;
    append_concurrently(&ledger, 1..=most, 512).await;

    let sealing = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.seal(&test_signing_key(1)).await }
    });
    let mut during = 0;
    let mut n = most + 1;
    while !sealing.is_finished() {
        ledger.append(sample_entry(n)).await.unwrap();
        n += 1;
        if !sealing.is_finished() {
            during += 1;
        }
    }
    let head = sealing.await.unwrap().unwrap().unwrap();
    assert!(head.size >= most);
    assert!(
        during >= 10,
        "only {during} appends completed while {most} entries were sealed"
    );
    let report = ledger
        .verify_signed(&test_signing_key(1).verifying_key(), &[])
        .await
        .unwrap();
    assert!(report.heads >= 1);
}

/// On SQLite the seal's writes are made by the ledger writer thread, between batches, rather
/// than on a connection of the sealer's own, which would have to catch the write lock between two
/// of the writer's transactions. With a busy timeout of a millisecond such a connection gives up
/// under steady appends; seals must still succeed, each one after another batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_seals_succeed_while_appends_keep_the_writer_busy() {
    let (url, _dir) = liaison_ledger::test_util::fresh_sqlite_db();
    let mut options = LedgerOptions::default();
    options.busy_timeout = Duration::from_millis(1);
    let ledger = Ledger::connect_with(&url, options).await.unwrap();
    let key = test_signing_key(1);
    append_concurrently(&ledger, 1..=2_000, 64).await;

    let appending = tokio::spawn({
        let ledger = ledger.clone();
        async move { append_concurrently(&ledger, 2_001..=60_000, 64).await }
    });
    let mut sizes = Vec::new();
    while !appending.is_finished() && sizes.len() < 20 {
        let head = ledger.seal(&key).await.unwrap().unwrap();
        sizes.push(head.size);
    }
    appending.await.unwrap();
    assert!(
        sizes.len() >= 5,
        "only {} seals while appends went on",
        sizes.len()
    );
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(sizes.first() < sizes.last(), "{sizes:?}");
    let head = ledger.seal(&key).await.unwrap().unwrap();
    assert_eq!(head.size, 60_000);
    let report = ledger
        .verify_signed(&key.verifying_key(), &[])
        .await
        .unwrap();
    assert!(report.heads >= 5);
}

async fn sealing_signs_heads_and_stores_nodes(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let key = test_signing_key(1);
    let public = key.verifying_key();
    assert_eq!(ledger.seal(&key).await.unwrap(), None, "nothing to seal");
    assert_eq!(ledger.latest_signed_head().await.unwrap(), None);

    let mut leaves = append_range(&ledger, 1..=37).await;
    let first = ledger.seal(&key).await.unwrap().unwrap();
    assert_eq!(first.size, 37);
    assert_eq!(first.root, merkle::root(&leaves));
    assert_eq!(first.key_id, key.key_id());
    public.verify(&first).unwrap();
    assert_eq!(ledger.seal(&key).await.unwrap(), Some(first), "idempotent");

    leaves.extend(append_range(&ledger, 38..=47).await);
    let second = ledger.seal(&key).await.unwrap().unwrap();
    assert_eq!(second.size, 47);
    assert_eq!(second.root, merkle::root(&leaves));
    assert!(second.timestamp >= first.timestamp);

    assert_eq!(ledger.latest_signed_head().await.unwrap(), Some(second));
    assert_eq!(ledger.signed_head(37).await.unwrap(), Some(first));
    assert_eq!(ledger.signed_head(38).await.unwrap(), None);
    assert_eq!(ledger.signed_heads(0, 1).await.unwrap(), vec![first]);
    assert_eq!(ledger.signed_heads(37, 10).await.unwrap(), vec![second]);
    assert_eq!(ledger.tree_head(47).await.unwrap(), second.tree_head());

    // Every complete perfect subtree within the sealed size is stored: 47 leaves and
    // 23 + 11 + 5 + 2 + 1 interior nodes.
    let raw = Raw::connect(url).await;
    assert_eq!(raw.count("tree_nodes").await, 47 + 23 + 11 + 5 + 2 + 1);

    let report = ledger.verify_signed(&public, &[]).await.unwrap();
    assert_eq!(report.entries, 47);
    assert_eq!(report.heads, 2);
    assert_eq!(report.latest_head, Some(second));
    assert_eq!(ledger.verify().await.unwrap().heads, 2);
}

async fn proofs_from_stored_nodes_match_the_rfc_algorithms(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let key = test_signing_key(1);
    let mut leaves = append_range(&ledger, 1..=21).await;
    ledger.seal(&key).await.unwrap();
    // Some entries sealed, some appended since: proofs mix stored nodes and leaves.
    leaves.extend(append_range(&ledger, 22..=33).await);
    for tree_size in [1u64, 13, 21, 22, 32, 33] {
        let tree = &leaves[..tree_size as usize];
        let head = ledger.tree_head(tree_size).await.unwrap();
        assert_eq!(head.root, merkle::root(tree));
        for seq in 1..=tree_size {
            let proof = ledger.inclusion_proof(seq, tree_size).await.unwrap();
            assert_eq!(proof, merkle::inclusion_proof(seq - 1, tree).unwrap());
            merkle::verify_inclusion(
                &tree[seq as usize - 1],
                seq - 1,
                tree_size,
                &proof,
                &head.root,
            )
            .unwrap();
        }
        for old in 0..=tree_size {
            let proof = ledger.consistency_proof(old, tree_size).await.unwrap();
            assert_eq!(proof, merkle::consistency_proof(old, tree).unwrap());
        }
    }
    assert_eq!(
        ledger.consistency_proof(33, 34).await.unwrap_err(),
        LedgerError::TreeTooLarge {
            requested: 34,
            size: 33
        }
    );
    assert_eq!(
        ledger.consistency_proof(0, 34).await.unwrap_err(),
        LedgerError::TreeTooLarge {
            requested: 34,
            size: 33
        }
    );
}

async fn sealer_seals_on_its_interval_in_bounded_steps(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    append_range(&ledger, 1..=35).await;
    let key = test_signing_key(1);
    let public = key.verifying_key();
    let mut options = SealerOptions::default();
    options.interval = Duration::from_millis(50);
    options.max_entries = 10;
    let mut sealer = Sealer::spawn_with(ledger.clone(), key, options);
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        sealer.wait_for(|s| s.latest.is_some_and(|h| h.size == 35)),
    )
    .await
    .unwrap();
    assert!(status.active);
    assert_eq!(status.last_error, None);
    let sizes: Vec<u64> = ledger
        .signed_heads(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|h| h.size)
        .collect();
    assert_eq!(sizes, [10, 20, 30, 35], "at most 10 entries per head");

    append_range(&ledger, 36..=40).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        sealer.wait_for(|s| s.latest.is_some_and(|h| h.size == 40)),
    )
    .await
    .unwrap();
    // An idle ledger gets no new heads.
    let heads = ledger.signed_heads(0, 100).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ledger.signed_heads(0, 100).await.unwrap().len(), heads);
    assert_eq!(sealer.status().signed, heads as u64);
    sealer.shutdown().await;
    assert_eq!(
        ledger.verify_signed(&public, &[]).await.unwrap().heads,
        heads as u64
    );
}

async fn concurrent_seals_never_sign_two_heads_of_one_size(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let other = Ledger::connect(url).await.unwrap();
    let mut tasks = JoinSet::new();
    for (i, ledger) in [ledger.clone(), other.clone()].into_iter().enumerate() {
        tasks.spawn(async move {
            let key = test_signing_key(1);
            for round in 0..10u64 {
                let n = 1 + i as u64 * 1000 + round * 10;
                append_range(&ledger, n..=n + 9).await;
                ledger.seal(&key).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let heads = ledger.signed_heads(0, 1000).await.unwrap();
    assert!(heads.windows(2).all(|w| w[0].size < w[1].size));
    assert_eq!(heads.last().unwrap().size, 200);
    let report = ledger
        .verify_signed(&test_signing_key(1).verifying_key(), &[])
        .await
        .unwrap();
    assert_eq!(report.heads, heads.len() as u64);
}

async fn sealer_refuses_to_sign_over_damage(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let key = test_signing_key(1);
    append_range(&ledger, 1..=8).await;
    ledger.seal(&key).await.unwrap();
    append_range(&ledger, 9..=12).await;
    let raw = Raw::connect(url).await;
    raw.drop_append_only_guards().await;
    let mut body = raw.body(10).await;
    body[3] ^= 1;
    raw.set_column(10, common::Column::Body, &body).await;
    assert_eq!(
        ledger.seal(&key).await.unwrap_err(),
        LedgerError::Broken {
            seq: 10,
            entry_id: Some("entry-000010".into()),
            problem: Problem::LeafHashMismatch
        }
    );
    assert_eq!(ledger.latest_signed_head().await.unwrap().unwrap().size, 8);
}

async fn witness_file_records_every_head(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("witness.jsonl");
    let key = test_signing_key(1);
    let public = key.verifying_key();
    let mut options = SealerOptions::default();
    options.interval = Duration::from_millis(20);
    options.witness = Some(path.clone());
    let mut sealer = Sealer::spawn_with(ledger.clone(), key, options);
    for round in 0..3u64 {
        append_range(&ledger, round * 5 + 1..=round * 5 + 5).await;
        let size = round * 5 + 5;
        tokio::time::timeout(
            Duration::from_secs(10),
            sealer.wait_for(|s| s.latest.is_some_and(|h| h.size == size)),
        )
        .await
        .unwrap();
    }
    sealer.shutdown().await;
    let witnessed = read_witness_file(&path, &public).unwrap();
    assert_eq!(witnessed, ledger.signed_heads(0, 100).await.unwrap());
    assert!(witnessed.len() >= 3, "the sealer may seal between appends");
    assert_eq!(
        ledger
            .verify_signed(&public, &witnessed)
            .await
            .unwrap()
            .witnessed,
        witnessed.len() as u64
    );
}

/// A database created by the first version of the ledger gains the new tables on connect, its
/// entries stay valid, and the sealer seals them.
async fn schema_1_databases_upgrade_and_get_sealed(url: &str) {
    let raw = Raw::connect(url).await;
    let (schema, create) = if raw.is_sqlite() {
        (
            include_str!("../schema/sqlite/0001_audit_ledger.sql"),
            "CREATE TABLE ledger_schema (version INTEGER PRIMARY KEY, description TEXT NOT NULL) STRICT",
        )
    } else {
        (
            include_str!("../schema/postgres/0001_audit_ledger.sql"),
            "CREATE TABLE ledger_schema (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
        )
    };
    raw.exec(create).await;
    raw.exec(schema).await;
    raw.exec("INSERT INTO ledger_schema (version, description) VALUES (1, 'audit ledger')")
        .await;
    let mut chain = liaison_ledger::GENESIS;
    let mut leaves = Vec::new();
    for seq in 1..=9i64 {
        let body = format!("schema-1 entry {seq}").into_bytes();
        let leaf = merkle::leaf_hash(&body);
        chain = liaison_ledger::chain_hash(&chain, &leaf);
        raw.insert_entry(seq, &format!("old-{seq}"), &body, &leaf, &chain)
            .await;
        leaves.push(leaf);
    }
    raw.set_head(9, &chain).await;
    raw.close().await;

    let ledger = Ledger::connect(url).await.unwrap();
    assert_eq!(ledger.verify().await.unwrap().entries, 9);
    assert_eq!(
        ledger.tree_head(9).await.unwrap().root,
        merkle::root(&leaves)
    );
    leaves.push(ledger.append(sample_entry(10)).await.unwrap().leaf_hash);
    let key = test_signing_key(1);
    let head = ledger.seal(&key).await.unwrap().unwrap();
    assert_eq!((head.size, head.root), (10, merkle::root(&leaves)));
    ledger
        .verify_signed(&key.verifying_key(), &[])
        .await
        .unwrap();
    let proof = ledger.inclusion_proof(3, 10).await.unwrap();
    merkle::verify_inclusion(&leaves[2], 2, 10, &proof, &head.root).unwrap();
}

/// Two gateway replicas on one PostgreSQL: exactly one sealer is active; when its session dies
/// the other takes over within a few intervals, and the heads stay one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sealers_elect_one_leader_and_fail_over() {
    let (url, db) = fresh_postgres_db().await;
    let a = Ledger::connect(&url).await.unwrap();
    let b = Ledger::connect(&url).await.unwrap();
    let public = test_signing_key(1).verifying_key();
    let mut options = SealerOptions::default();
    options.interval = Duration::from_millis(50);
    let mut sealer_a = Sealer::spawn_with(a.clone(), test_signing_key(1), options.clone());
    tokio::time::timeout(Duration::from_secs(10), sealer_a.wait_for(|s| s.active))
        .await
        .unwrap();
    let mut sealer_b = Sealer::spawn_with(b.clone(), test_signing_key(1), options);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sealer_a.is_active());
    assert!(!sealer_b.is_active(), "only one sealer leads");

    append_range(&b, 1..=10).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        sealer_a.wait_for(|s| s.latest.is_some_and(|h| h.size == 10)),
    )
    .await
    .unwrap();
    assert_eq!(sealer_b.status().signed, 0);

    // The leader's database session dies (its process crashed, or the network dropped): the
    // server releases the lock and the standby takes over.
    let admin = PgPool::connect(db.admin_url()).await.unwrap();
    // Only the leadership lock: a seal transaction in progress holds its own
    // (transaction-level) advisory lock beside it. A bigint key is split into
    // `classid` (high half) and `objid` (low half).
    let leader = i64::from_be_bytes(*b"ledglead");
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted \
           AND database = (SELECT oid FROM pg_database WHERE datname = $1) \
           AND classid::bigint = $2 AND objid::bigint = $3",
    )
    .bind(db.name())
    .bind(leader >> 32)
    .bind(leader & 0xffff_ffff)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(killed.len(), 1, "one session holds leadership");
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), sealer_b.wait_for(|s| s.active))
        .await
        .unwrap();
    let failover = started.elapsed();
    append_range(&a, 11..=20).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        sealer_b.wait_for(|s| s.latest.is_some_and(|h| h.size == 20)),
    )
    .await
    .unwrap();
    // The old leader notices it lost its session and stands by.
    tokio::time::timeout(Duration::from_secs(10), sealer_a.wait_for(|s| !s.active))
        .await
        .unwrap();
    eprintln!("sealer failover after the leader's session was killed: {failover:?}");

    // A clean shutdown hands over too.
    sealer_b.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), sealer_a.wait_for(|s| s.active))
        .await
        .unwrap();
    append_range(&a, 21..=25).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        sealer_a.wait_for(|s| s.latest.is_some_and(|h| h.size == 25)),
    )
    .await
    .unwrap();
    sealer_a.shutdown().await;

    // Sealers may seal between appends; whoever sealed, the heads form one growing chain.
    let heads: Vec<SignedTreeHead> = a.signed_heads(0, 100).await.unwrap();
    let sizes: Vec<u64> = heads.iter().map(|h| h.size).collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert!(sizes.contains(&10) && sizes.contains(&20) && sizes.ends_with(&[25]));
    assert_eq!(
        a.verify_signed(&public, &[]).await.unwrap().heads,
        heads.len() as u64
    );
}
