//! Tampering with the stored ledger behind its back is detected and pinpointed by `verify`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use common::{Column, Raw};
use liaison_ledger::test_util::sample_entry;
use liaison_ledger::{Fault, Ledger, LedgerError, Problem, merkle};

on_both_backends!(
    edited_body_names_the_entry,
    swapped_bodies_are_detected,
    recomputed_leaf_hash_breaks_the_chain,
    deleted_entry_leaves_a_gap,
    deleted_last_entry_disagrees_with_the_head,
    edited_head_is_detected,
    append_only_guards_refuse_edits,
);

/// A ledger with six entries and a raw connection to its database.
async fn six_entries(url: &str) -> (Ledger, Raw) {
    let ledger = Ledger::connect(url).await.unwrap();
    for n in 1..=6 {
        ledger.append(sample_entry(n)).await.unwrap();
    }
    ledger.verify().await.unwrap();
    let raw = Raw::connect(url).await;
    raw.drop_append_only_guards().await;
    (ledger, raw)
}

fn broken(seq: u64, entry_id: Option<&str>, problem: Problem) -> LedgerError {
    LedgerError::Broken {
        seq,
        entry_id: entry_id.map(str::to_owned),
        problem,
    }
}

async fn edited_body_names_the_entry(url: &str) {
    let (ledger, raw) = six_entries(url).await;
    let mut body = raw.body(3).await;
    body[5] ^= 0x01;
    raw.set_column(3, Column::Body, &body).await;

    let err = ledger.verify().await.unwrap_err();
    assert_eq!(
        err,
        broken(3, Some("entry-000003"), Problem::LeafHashMismatch)
    );
    assert_eq!(err.fault(), Fault::Gateway);
    assert_eq!(
        err.to_string(),
        "audit ledger is broken at entry 3 (`entry-000003`): leaf hash mismatch: the body was altered"
    );
}

async fn swapped_bodies_are_detected(url: &str) {
    let (ledger, raw) = six_entries(url).await;
    let (two, five) = (raw.body(2).await, raw.body(5).await);
    raw.set_column(2, Column::Body, &five).await;
    raw.set_column(5, Column::Body, &two).await;
    assert_eq!(
        ledger.verify().await.unwrap_err(),
        broken(2, Some("entry-000002"), Problem::LeafHashMismatch)
    );
}

/// Someone who edits a body and fixes its leaf hash still breaks the chain.
async fn recomputed_leaf_hash_breaks_the_chain(url: &str) {
    let (ledger, raw) = six_entries(url).await;
    let body = b"{\"share\":4,\"fields\":[]}".to_vec();
    raw.set_column(4, Column::Body, &body).await;
    raw.set_column(4, Column::LeafHash, &merkle::leaf_hash(&body))
        .await;
    assert_eq!(
        ledger.verify().await.unwrap_err(),
        broken(4, Some("entry-000004"), Problem::ChainMismatch)
    );

    // A stored hash of the wrong length is reported, not a panic. PostgreSQL can drop the
    // length CHECK to let one in; SQLite cannot drop a constraint, so there the CHECK holds.
    if raw
        .try_exec("ALTER TABLE audit_entries DROP CONSTRAINT audit_entries_chain_hash_check")
        .await
        .is_ok()
    {
        raw.set_column(1, Column::ChainHash, &[0; 31]).await;
        assert_eq!(
            ledger.verify().await.unwrap_err(),
            broken(
                1,
                Some("entry-000001"),
                Problem::Malformed { what: "chain hash" }
            )
        );
    }
}

async fn deleted_entry_leaves_a_gap(url: &str) {
    let (ledger, raw) = six_entries(url).await;
    raw.delete_entry(3).await;
    let err = ledger.verify().await.unwrap_err();
    assert_eq!(err, broken(3, None, Problem::SequenceGap { next: 4 }));
    assert_eq!(
        err.to_string(),
        "audit ledger is broken at entry 3: sequence gap: the entry is missing, the next present is 4"
    );
    // Proofs refuse to build over the hole rather than proving a different tree.
    assert_eq!(
        ledger.tree_head(6).await.unwrap_err(),
        broken(3, None, Problem::SequenceGap { next: 4 })
    );
}

async fn deleted_last_entry_disagrees_with_the_head(url: &str) {
    let (ledger, raw) = six_entries(url).await;
    raw.delete_entry(6).await;
    assert_eq!(
        ledger.verify().await.unwrap_err(),
        broken(
            5,
            Some("entry-000005"),
            Problem::HeadSizeMismatch { head_size: 6 }
        )
    );
}

async fn edited_head_is_detected(url: &str) {
    let (ledger, raw) = six_entries(url).await;
    raw.exec("UPDATE ledger_head SET size = 5").await;
    assert_eq!(
        ledger.verify().await.unwrap_err(),
        broken(
            6,
            Some("entry-000006"),
            Problem::HeadSizeMismatch { head_size: 5 }
        )
    );
    raw.exec("UPDATE ledger_head SET size = 6").await;
    ledger.verify().await.unwrap();

    if raw.is_sqlite() {
        raw.exec("UPDATE ledger_head SET chain_hash = zeroblob(32)")
            .await;
    } else {
        raw.exec("UPDATE ledger_head SET chain_hash = decode(repeat('ab', 32), 'hex')")
            .await;
    }
    let err = ledger.verify().await.unwrap_err();
    assert_eq!(
        err,
        broken(6, Some("entry-000006"), Problem::HeadChainMismatch)
    );
    // Appending on top of a head that does not match the last entry would bury the damage,
    // so the ledger refuses until the head is repaired.
    let err = ledger.append(sample_entry(7)).await.unwrap_err();
    assert_eq!(
        err,
        broken(6, Some("entry-000006"), Problem::HeadChainMismatch)
    );
    raw.exec("UPDATE ledger_head SET size = 5").await;
    assert_eq!(
        ledger.append(sample_entry(7)).await.unwrap_err(),
        broken(
            6,
            Some("entry-000006"),
            Problem::HeadSizeMismatch { head_size: 5 }
        )
    );
    raw.exec("UPDATE ledger_head SET size = 7").await;
    assert_eq!(
        ledger.append(sample_entry(7)).await.unwrap_err(),
        broken(7, None, Problem::HeadSizeMismatch { head_size: 7 })
    );
    assert_eq!(
        ledger.size().await.unwrap(),
        7,
        "the head is as the attacker left it"
    );
    assert_eq!(
        ledger.get_by_seq(7).await.unwrap(),
        None,
        "nothing was appended"
    );
}

async fn append_only_guards_refuse_edits(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();
    let raw = Raw::connect(url).await;
    let err = raw.try_set_body(1, b"rewritten").await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = raw.try_exec("DELETE FROM audit_entries").await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    if !raw.is_sqlite() {
        let err = raw
            .try_exec("TRUNCATE audit_entries CASCADE")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(ledger.verify().await.unwrap().entries, 1);
}
