//! Retention: pruning a prefix of entries under a signed checkpoint keeps the rest verifiable,
//! keeps proofs working, and is refused at anything but a signed head of this ledger.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use common::Raw;
use liaison_ledger::test_util::{sample_entry, test_signing_key};
use liaison_ledger::{Hash, Ledger, LedgerError, merkle, verify_export};
use time::OffsetDateTime;

on_both_backends!(
    pruning_keeps_the_rest_verifiable,
    pruning_is_refused_without_a_checkpoint
);

/// 35 entries, signed at 10, 20 and 30.
async fn sample(url: &str) -> (Ledger, Vec<Hash>) {
    let ledger = Ledger::connect(url).await.unwrap();
    let key = test_signing_key(1);
    let mut leaves = Vec::new();
    for n in 1..=35 {
        leaves.push(ledger.append(sample_entry(n)).await.unwrap().leaf_hash);
        if n % 10 == 0 {
            ledger.seal(&key).await.unwrap();
        }
    }
    (ledger, leaves)
}

async fn pruning_keeps_the_rest_verifiable(url: &str) {
    let (ledger, mut leaves) = sample(url).await;
    let key = test_signing_key(1);
    let public = key.verifying_key();
    let witness = ledger.signed_heads(0, 100).await.unwrap();
    let checkpoint = ledger
        .retention_checkpoint(OffsetDateTime::now_utc() + time::Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        checkpoint.size, 30,
        "the latest head short of the whole ledger"
    );
    let checkpoint = ledger.signed_head(20).await.unwrap().unwrap();

    let report = ledger.prune_before(21, &checkpoint).await.unwrap();
    assert_eq!((report.pruned_through, report.removed), (20, 20));
    assert_eq!(ledger.get_by_seq(20).await.unwrap(), None);
    assert_eq!(ledger.get("entry-000005").await.unwrap(), None);
    assert_eq!(
        ledger.get_by_seq(21).await.unwrap().unwrap().entry_id,
        "entry-000021"
    );
    assert_eq!(ledger.size().await.unwrap(), 35);

    let verified = ledger.verify_signed(&public, &witness).await.unwrap();
    assert_eq!((verified.first_seq, verified.entries), (21, 15));
    assert_eq!(verified.root, merkle::root(&leaves));
    assert_eq!(
        verified.witnessed, 2,
        "the heads at 20 and 30; 10 is before the checkpoint"
    );
    assert_eq!(verified.heads, 3);

    // Proofs for kept entries, for pruned ones (the nodes are kept), and between any heads.
    let head = ledger.tree_head(35).await.unwrap();
    assert_eq!(head.root, merkle::root(&leaves));
    for seq in [1u64, 5, 20, 21, 30, 35] {
        let proof = ledger.inclusion_proof(seq, 35).await.unwrap();
        merkle::verify_inclusion(&leaves[seq as usize - 1], seq - 1, 35, &proof, &head.root)
            .unwrap();
    }
    for (old, new) in [(10u64, 35u64), (20, 30), (7, 20), (30, 35)] {
        let proof = ledger.consistency_proof(old, new).await.unwrap();
        merkle::verify_consistency(
            old,
            new,
            &merkle::root(&leaves[..old as usize]),
            &merkle::root(&leaves[..new as usize]),
            &proof,
        )
        .unwrap();
    }

    // The export starts at the checkpoint and verifies offline.
    let mut export = Vec::new();
    ledger.export(&mut export, 0).await.unwrap();
    let text = String::from_utf8(export.clone()).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with(r#"{"type":"checkpoint","size":20,"#)
    );
    let offline = verify_export(&export[..], &public).unwrap();
    assert_eq!(
        (offline.first_seq, offline.size, offline.entries),
        (21, 35, 15)
    );
    assert_eq!(offline.root, verified.root);

    // The ledger carries on: appends, seals, verifies.
    for n in 36..=40 {
        leaves.push(ledger.append(sample_entry(n)).await.unwrap().leaf_hash);
    }
    let head = ledger.seal(&key).await.unwrap().unwrap();
    assert_eq!(head.root, merkle::root(&leaves));
    assert_eq!(ledger.verify().await.unwrap().entries, 20);

    // Only pruned entries may be deleted; an older checkpoint prunes nothing more.
    let raw = Raw::connect(url).await;
    let err = raw
        .try_exec("DELETE FROM audit_entries WHERE seq = 25")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let older = ledger.signed_head(10).await.unwrap().unwrap();
    let again = ledger.prune_before(11, &older).await.unwrap();
    assert_eq!((again.pruned_through, again.removed), (20, 0));
    let later = ledger.signed_head(30).await.unwrap().unwrap();
    let more = ledger.prune_before(31, &later).await.unwrap();
    assert_eq!((more.pruned_through, more.removed), (30, 10));
    assert_eq!(
        ledger
            .verify_signed(&public, &witness)
            .await
            .unwrap()
            .entries,
        10
    );
}

async fn pruning_is_refused_without_a_checkpoint(url: &str) {
    let (ledger, _) = sample(url).await;
    let key = test_signing_key(1);
    let at_20 = ledger.signed_head(20).await.unwrap().unwrap();
    let invalid = |reason| LedgerError::InvalidCheckpoint { reason };
    assert_eq!(
        ledger.prune_before(22, &at_20).await.unwrap_err(),
        invalid("the checkpoint's size must be one less than the first entry kept")
    );
    assert_eq!(
        ledger.prune_before(1, &at_20).await.unwrap_err(),
        invalid("the checkpoint's size must be one less than the first entry kept")
    );
    // A head signed with the key but never stored (a forged history) is not a checkpoint.
    let forged = key.sign_head(20, [9; 32], at_20.timestamp).unwrap();
    assert_eq!(
        ledger.prune_before(21, &forged).await.unwrap_err(),
        invalid("it is not a signed head of this ledger")
    );
    let unsigned = key
        .sign_head(
            25,
            ledger.tree_head(25).await.unwrap().root,
            at_20.timestamp,
        )
        .unwrap();
    assert_eq!(
        ledger.prune_before(26, &unsigned).await.unwrap_err(),
        invalid("it is not a signed head of this ledger")
    );
    let whole = ledger.seal(&key).await.unwrap().unwrap();
    assert_eq!(whole.size, 35);
    let err = ledger.prune_before(36, &whole).await.unwrap_err();
    assert_eq!(err, invalid("the last entry is always kept"));
    assert_eq!(
        err.to_string(),
        "cannot prune at this checkpoint: the last entry is always kept"
    );
    assert_eq!(ledger.verify().await.unwrap().entries, 35);
}
