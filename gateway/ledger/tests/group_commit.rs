//! Concurrent appends: shared transactions, dense sequence numbers, several writers on one
//! database.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use liaison_ledger::test_util::sample_entry;
use liaison_ledger::{Ledger, Receipt};
use tokio::task::JoinSet;

on_both_backends!(
    concurrent_appends_share_transactions,
    two_ledgers_on_one_database_stay_dense,
    throughput,
);

/// Appends `ns` from one task each and returns the receipts.
async fn append_concurrently(ledger: &Ledger, ns: impl IntoIterator<Item = u64>) -> Vec<Receipt> {
    let mut tasks = JoinSet::new();
    for n in ns {
        let ledger = ledger.clone();
        tasks.spawn(async move { ledger.append(sample_entry(n)).await });
    }
    let mut receipts = Vec::new();
    while let Some(result) = tasks.join_next().await {
        receipts.push(result.unwrap().unwrap());
    }
    receipts
}

async fn concurrent_appends_share_transactions(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let receipts = append_concurrently(&ledger, 1..=200).await;

    let seqs: BTreeSet<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=200).collect(),
        "every append acknowledged, seqs dense"
    );
    let report = ledger.verify().await.unwrap();
    assert_eq!(report.entries, 200);

    let stats = ledger.stats();
    assert_eq!(stats.entries, 200);
    assert_eq!(stats.failed_transactions, 0);
    assert!(
        stats.transactions < 200,
        "appends were not batched: {stats:?}"
    );
    assert!(stats.largest_batch > 1, "{stats:?}");

    // Each receipt's chain hash is the one stored at its seq.
    for receipt in &receipts {
        let stored = ledger.get_by_seq(receipt.seq).await.unwrap().unwrap();
        assert_eq!(stored.entry_id, receipt.entry_id);
        assert_eq!(stored.chain_hash, receipt.chain_hash);
    }
}

/// Two ledgers with their own pools and writers stand in for two gateway processes.
async fn two_ledgers_on_one_database_stay_dense(url: &str) {
    let a = Ledger::connect(url).await.unwrap();
    let b = Ledger::connect(url).await.unwrap();
    let (from_a, from_b) = tokio::join!(
        append_concurrently(&a, 1..=100),
        append_concurrently(&b, 101..=200)
    );
    let seqs: BTreeSet<u64> = from_a.iter().chain(&from_b).map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=200).collect());
    assert_eq!(a.verify().await.unwrap(), b.verify().await.unwrap());
    assert_eq!(a.verify().await.unwrap().entries, 200);
}

/// Informational only: prints appends per second; asserts nothing about time.
async fn throughput(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let started = Instant::now();
    let mut next = 1;
    for _ in 0..10 {
        append_concurrently(&ledger, next..next + 100).await;
        next += 100;
    }
    let concurrent = started.elapsed();

    let started = Instant::now();
    for n in next..next + 100 {
        ledger.append(sample_entry(n)).await.unwrap();
    }
    let sequential = started.elapsed();
    let stats = ledger.stats();
    eprintln!(
        "{}: 1000 concurrent appends in {concurrent:?} ({:.0}/s, {} transactions); \
         100 sequential in {sequential:?} ({:.0}/s)",
        url.split(':').next().unwrap_or(""),
        1000.0 / concurrent.as_secs_f64(),
        stats.transactions - 100,
        100.0 / sequential.as_secs_f64(),
    );
    assert_eq!(ledger.verify().await.unwrap().entries, 1100);
}
