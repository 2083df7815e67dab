//! Appending, reading back, and proving: the ledger's everyday behaviour on both backends.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use liaison_ledger::test_util::sample_entry;
use liaison_ledger::{
    EntryFilter, Fault, GENESIS, Ledger, LedgerError, MAX_PAGE, NewEntry, Order, StoredEntry,
    VerifyReport, chain_hash, merkle,
};
use time::UtcOffset;
use time::macros::datetime;

on_both_backends!(
    receipts_are_dense_and_chained,
    retry_returns_the_original_receipt,
    invalid_entries_are_refused_before_the_database,
    entries_survive_reopening,
    stored_entries_round_trip,
    list_filters_and_pages,
    proofs_verify_against_tree_heads,
);

/// Spoils an otherwise valid entry.
type Mutation = fn(&mut NewEntry);

/// Which entries a filter should return.
type Keep<'a> = Box<dyn Fn(&NewEntry) -> bool + 'a>;

async fn receipts_are_dense_and_chained(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let empty = ledger.verify().await.unwrap();
    assert_eq!(
        (empty.entries, empty.head, empty.root, empty.first_seq),
        (0, GENESIS, merkle::empty_root(), 1)
    );
    assert_eq!((empty.heads, empty.latest_head), (0, None));

    let mut chain = GENESIS;
    let mut leaves = Vec::new();
    for n in 1..=10 {
        let entry = sample_entry(n);
        let receipt = ledger.append(entry.clone()).await.unwrap();
        assert_eq!(receipt.seq, n);
        assert_eq!(receipt.entry_id, entry.entry_id);
        assert_eq!(receipt.leaf_hash, merkle::leaf_hash(&entry.body));
        chain = chain_hash(&chain, &receipt.leaf_hash);
        assert_eq!(receipt.chain_hash, chain);
        assert_eq!(receipt.recorded_at, entry.recorded_at);
        leaves.push(receipt.leaf_hash);
    }
    assert_eq!(ledger.size().await.unwrap(), 10);
    let report: VerifyReport = ledger.verify().await.unwrap();
    assert_eq!(
        (report.entries, report.head, report.root),
        (10, chain, merkle::root(&leaves))
    );
    assert_eq!(ledger.stats().entries, 10);
}

async fn retry_returns_the_original_receipt(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let first = ledger.append(sample_entry(1)).await.unwrap();
    ledger.append(sample_entry(2)).await.unwrap();

    // A caller that lost the answer retries: same receipt, nothing new recorded.
    let again = ledger.append(sample_entry(1)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(ledger.size().await.unwrap(), 2);

    // The same id with another body is refused.
    let mut forged = sample_entry(1);
    forged.body.push(b'!');
    let err = ledger.append(forged).await.unwrap_err();
    assert_eq!(
        err,
        LedgerError::Duplicate {
            entry_id: "entry-000001".into()
        }
    );
    assert_eq!(err.fault(), Fault::Caller);
    assert_eq!(
        err.to_string(),
        "entry `entry-000001` is already recorded with a different body"
    );

    // Two identical appends racing (likely in one batch) are recorded once.
    let (a, b) = tokio::join!(
        ledger.append(sample_entry(3)),
        ledger.append(sample_entry(3))
    );
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(ledger.size().await.unwrap(), 3);
    assert_eq!(ledger.verify().await.unwrap().entries, 3);

    // A retry batched with new entries: the retry gets its receipt, the new ones are recorded
    // after the head, and a forgery among them is refused alone.
    let mut forged = sample_entry(2);
    forged.body.push(b'!');
    let (old, new, other, refused) = tokio::join!(
        ledger.append(sample_entry(1)),
        ledger.append(sample_entry(4)),
        ledger.append(sample_entry(5)),
        ledger.append(forged),
    );
    assert_eq!(old.unwrap(), first);
    let mut seqs = [new.unwrap().seq, other.unwrap().seq];
    seqs.sort_unstable();
    assert_eq!(seqs, [4, 5]);
    assert!(matches!(refused, Err(LedgerError::Duplicate { .. })));
    assert_eq!(ledger.verify().await.unwrap().entries, 5);
}

async fn invalid_entries_are_refused_before_the_database(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let cases: [(Mutation, &str); 5] = [
        (|e| e.entry_id.clear(), "the entry id is empty"),
        (
            |e| e.entry_id = "x".repeat(257),
            "the entry id is longer than 256 bytes",
        ),
        (
            |e| e.index.purpose = "safe\0guarding".into(),
            "a text field contains a NUL character",
        ),
        (
            |e| e.index.subjects.push("person\0".into()),
            "a text field contains a NUL character",
        ),
        (
            |e| e.recorded_at = datetime!(2300-01-01 0:00 UTC),
            "the time is outside the years 1677 to 2262",
        ),
    ];
    for (mutate, reason) in cases {
        let mut entry = sample_entry(1);
        mutate(&mut entry);
        let err = ledger.append(entry.clone()).await.unwrap_err();
        assert_eq!(
            err,
            LedgerError::InvalidEntry {
                entry_id: entry.entry_id.clone(),
                reason
            }
        );
        assert_eq!(err.fault(), Fault::Caller);
    }
    assert_eq!(ledger.size().await.unwrap(), 0);
    // The writer is unharmed.
    assert_eq!(ledger.append(sample_entry(1)).await.unwrap().seq, 1);
}

async fn entries_survive_reopening(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    for n in 1..=3 {
        ledger.append(sample_entry(n)).await.unwrap();
    }
    let before = ledger.verify().await.unwrap();
    ledger.close().await;
    assert_eq!(
        ledger.append(sample_entry(9)).await.unwrap_err(),
        LedgerError::Closed
    );
    drop(ledger);

    let ledger = Ledger::connect(url).await.unwrap();
    assert_eq!(ledger.verify().await.unwrap(), before);
    assert_eq!(ledger.append(sample_entry(4)).await.unwrap().seq, 4);
    assert_eq!(ledger.verify().await.unwrap().entries, 4);
}

async fn stored_entries_round_trip(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let mut entry = sample_entry(1);
    // Not UTC, with nanoseconds: stored as the same instant, returned in UTC.
    entry.recorded_at = datetime!(2025-03-30 01:30:00.123456789 +01:00);
    entry.index.subjects = vec!["person-b".into(), "person-a".into(), "person-b".into()];
    entry.body = vec![0, 159, 146, 150, 255];
    let receipt = ledger.append(entry.clone()).await.unwrap();
    assert_eq!(receipt.recorded_at.offset(), UtcOffset::UTC);
    assert_eq!(receipt.recorded_at, entry.recorded_at);

    let stored = ledger.get(&entry.entry_id).await.unwrap().unwrap();
    let mut index = entry.index.clone();
    index.subjects = vec!["person-a".into(), "person-b".into()];
    assert_eq!(
        stored,
        StoredEntry {
            seq: 1,
            entry_id: entry.entry_id.clone(),
            recorded_at: entry.recorded_at,
            body: entry.body.clone(),
            leaf_hash: receipt.leaf_hash,
            chain_hash: receipt.chain_hash,
            index,
        }
    );
    assert_eq!(stored.recorded_at.nanosecond(), 123_456_789);
    assert_eq!(ledger.get_by_seq(1).await.unwrap(), Some(stored.clone()));
    assert!(
        !format!("{stored:?}").contains("159"),
        "Debug must not print the body"
    );

    assert_eq!(ledger.get("missing").await.unwrap(), None);
    assert_eq!(ledger.get_by_seq(0).await.unwrap(), None);
    assert_eq!(ledger.get_by_seq(2).await.unwrap(), None);
    assert_eq!(ledger.get_by_seq(u64::MAX).await.unwrap(), None);
}

async fn list_filters_and_pages(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let entries: Vec<NewEntry> = (1..=40).map(sample_entry).collect();
    for entry in &entries {
        ledger.append(entry.clone()).await.unwrap();
    }
    let ids = |page: &[StoredEntry]| page.iter().map(|e| e.entry_id.clone()).collect::<Vec<_>>();
    let expect = |keep: &dyn Fn(&NewEntry) -> bool| {
        entries
            .iter()
            .rev()
            .filter(|e| keep(e))
            .map(|e| e.entry_id.clone())
            .collect::<Vec<_>>()
    };

    let all = ledger
        .list(&EntryFilter::default(), MAX_PAGE, None)
        .await
        .unwrap();
    assert_eq!(ids(&all), expect(&|_| true));
    assert_eq!(all[0].seq, 40, "newest first by default");

    let cases: Vec<(EntryFilter, Keep<'_>)> = vec![
        (
            EntryFilter {
                agency: Some("norfolk-cc".into()),
                ..Default::default()
            },
            Box::new(|e| e.index.agency == "norfolk-cc"),
        ),
        (
            EntryFilter {
                subject: Some("user-2".into()),
                outcome: Some("disclosed".into()),
                ..Default::default()
            },
            Box::new(|e| e.index.subject == "user-2" && e.index.outcome == "disclosed"),
        ),
        (
            EntryFilter {
                purpose: Some("crime-prevention".into()),
                recipient: Some("norfolk-mash".into()),
                isa_id: Some("norfolk-mash-isa".into()),
                action: Some("share.search".into()),
                ..Default::default()
            },
            Box::new(|e| e.index.purpose == "crime-prevention"),
        ),
        (
            EntryFilter {
                subject_ref: Some("person-3".into()),
                ..Default::default()
            },
            Box::new(|e| e.index.subjects.iter().any(|s| s == "person-3")),
        ),
        (
            EntryFilter {
                from: Some(entries[9].recorded_at),
                until: Some(entries[19].recorded_at),
                ..Default::default()
            },
            Box::new(|e| {
                e.recorded_at >= entries[9].recorded_at && e.recorded_at < entries[19].recorded_at
            }),
        ),
        (
            EntryFilter {
                from: Some(datetime!(1000-01-01 0:00 UTC)),
                until: Some(datetime!(9000-01-01 0:00 UTC)),
                ..Default::default()
            },
            Box::new(|_| true),
        ),
        (
            EntryFilter {
                agency: Some("nobody".into()),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
    ];
    for (filter, keep) in &cases {
        let page = ledger.list(filter, MAX_PAGE, None).await.unwrap();
        assert_eq!(ids(&page), expect(keep.as_ref()), "{filter:?}");
        assert!(!page.is_empty() || expect(keep.as_ref()).is_empty());
    }
    let person3 = ledger.list(&cases[3].0, 1, None).await.unwrap();
    assert!(person3[0].index.subjects.contains(&"person-3".to_owned()));

    // Keyset pagination, both directions, visits every entry once.
    for order in [Order::NewestFirst, Order::OldestFirst] {
        let filter = EntryFilter {
            order,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = ledger.list(&filter, 7, after).await.unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 7);
            after = Some(last.seq);
            seen.extend(page.iter().map(|e| e.seq));
        }
        let mut want: Vec<u64> = (1..=40).collect();
        if order == Order::NewestFirst {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}");
    }
    assert!(
        ledger
            .list(&EntryFilter::default(), 0, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ledger
            .list(&EntryFilter::default(), u32::MAX, Some(u64::MAX))
            .await
            .unwrap()
            .len(),
        40
    );
}

async fn proofs_verify_against_tree_heads(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let mut leaves = Vec::new();
    for n in 1..=20 {
        leaves.push(ledger.append(sample_entry(n)).await.unwrap().leaf_hash);
    }
    let mut heads = Vec::new();
    for size in 0..=20u64 {
        let head = ledger.tree_head(size).await.unwrap();
        assert_eq!(head.size, size);
        assert_eq!(head.root, merkle::root(&leaves[..size as usize]));
        heads.push(head);
    }
    assert_eq!(ledger.verify().await.unwrap().root, heads[20].root);

    for tree_size in [1u64, 7, 16, 20] {
        for seq in 1..=tree_size {
            let proof = ledger.inclusion_proof(seq, tree_size).await.unwrap();
            merkle::verify_inclusion(
                &leaves[seq as usize - 1],
                seq - 1,
                tree_size,
                &proof,
                &heads[tree_size as usize].root,
            )
            .unwrap();
        }
    }
    for new in [1u64, 5, 8, 13, 20] {
        for old in 0..=new {
            let proof = ledger.consistency_proof(old, new).await.unwrap();
            merkle::verify_consistency(
                old,
                new,
                &heads[old as usize].root,
                &heads[new as usize].root,
                &proof,
            )
            .unwrap();
        }
    }

    assert_eq!(
        ledger.inclusion_proof(0, 5).await.unwrap_err(),
        LedgerError::SeqOutOfRange {
            seq: 0,
            tree_size: 5
        }
    );
    assert_eq!(
        ledger.inclusion_proof(6, 5).await.unwrap_err(),
        LedgerError::SeqOutOfRange {
            seq: 6,
            tree_size: 5
        }
    );
    assert_eq!(
        ledger.inclusion_proof(1, 21).await.unwrap_err(),
        LedgerError::TreeTooLarge {
            requested: 21,
            size: 20
        }
    );
    assert_eq!(
        ledger.tree_head(21).await.unwrap_err(),
        LedgerError::TreeTooLarge {
            requested: 21,
            size: 20
        }
    );
    assert_eq!(
        ledger.consistency_proof(6, 5).await.unwrap_err(),
        LedgerError::InvalidSizes { old: 6, new: 5 }
    );
    assert_eq!(
        ledger
            .consistency_proof(5, 21)
            .await
            .unwrap_err()
            .to_string(),
        "tree size 21 is larger than the ledger (20 entries)"
    );
}

#[tokio::test]
async fn in_memory_sqlite_works_for_tests() {
    let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
    for n in 1..=5 {
        assert_eq!(ledger.append(sample_entry(n)).await.unwrap().seq, n);
    }
    assert_eq!(ledger.verify().await.unwrap().entries, 5);
    assert_eq!(ledger.backend(), liaison_ledger::Backend::Sqlite);
}

/// The writer does not checkpoint the WAL itself (that would stall its batches); the ledger
/// copies it back into the database in the background, so the WAL is reused rather than
/// holding every page ever written.
#[tokio::test]
async fn the_sqlite_wal_is_checkpointed_while_entries_are_appended() {
    let (url, dir) = liaison_ledger::test_util::fresh_sqlite_db();
    let ledger = Ledger::connect(&url).await.unwrap();
    for round in 0..8u32 {
        let appends = (0..200u32).map(|n| {
            let id = format!("wal-{round}-{n}");
            let body = liaison_ledger::test_util::body_for(&id, 2_000);
            ledger.append(liaison_ledger::test_util::load_entry(&id, body))
        });
        for receipt in futures_util::future::join_all(appends).await {
            receipt.unwrap();
        }
        // Longer than the checkpoint interval (1 s), so each pause holds a checkpoint.
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
    let (db, wal) = (size("ledger.db"), size("ledger.db-wal"));
    // 1,600 entries of 2 kB: several megabytes, which the WAL would hold uncheckpointed.
    assert!(
        db > 3_000_000,
        "the database file holds the entries: {db} bytes"
    );
    assert!(wal < db / 2, "the WAL is reused: {wal} bytes beside {db}");
    assert_eq!(ledger.verify().await.unwrap().entries, 1_600);
}

/// Under appends that never pause, the background checkpoint always finishes behind the writer;
/// the WAL must still start over from its beginning now and then (each time, SQLite counts a
/// checkpoint in the WAL header), or it grows by every page ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_starts_over_while_appends_never_pause() {
    let (url, dir) = liaison_ledger::test_util::fresh_sqlite_db();
    let ledger = Ledger::connect(&url).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();
    // The WAL header's checkpoint sequence number (bytes 12..16, big-endian) goes up by one
    // each time the WAL is started over.
    let restarts = || {
        let header = std::fs::read(dir.path().join("ledger.db-wal")).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    };
    let before = restarts();
    // Four checkpoint intervals (1 s each).
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(4_500);
    let appenders = (0..32u32).map(|task| {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while std::time::Instant::now() < deadline {
                let id = format!("steady-{task}-{n}");
                let body = liaison_ledger::test_util::body_for(&id, 1_000);
                ledger
                    .append(liaison_ledger::test_util::load_entry(&id, body))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    });
    let mut appended = 0;
    for appender in futures_util::future::join_all(appenders).await {
        appended += appender.unwrap();
    }
    let after = restarts();
    assert!(
        after >= before + 2,
        "the WAL started over {} times during {appended} appends",
        after - before
    );
    assert_eq!(
        ledger.verify().await.unwrap().entries,
        u64::from(appended) + 1
    );
}
