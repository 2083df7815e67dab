//! Exports: what they hold, that they verify offline with only the public key, and that they
//! resume exactly where they were interrupted.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use liaison_ledger::test_util::{fresh_sqlite_db, sample_entry, test_signing_key};
use liaison_ledger::{
    KeyRing, Ledger, LedgerError, Problem, merkle, verify_export, verify_export_file,
    verify_export_with_witness,
};

on_both_backends!(export_verifies_offline);

async fn export_bytes(ledger: &Ledger, from_seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    ledger.export(&mut out, from_seq).await.unwrap();
    out
}

/// 53 entries, signed at every seventh, the last four unsigned.
async fn sample_ledger(url: &str) -> Ledger {
    let ledger = Ledger::connect(url).await.unwrap();
    let key = test_signing_key(1);
    for n in 1..=53 {
        ledger.append(sample_entry(n)).await.unwrap();
        if n % 7 == 0 {
            ledger.seal(&key).await.unwrap();
        }
    }
    ledger
}

async fn export_verifies_offline(url: &str) {
    let ledger = sample_ledger(url).await;
    let public = test_signing_key(1).verifying_key();
    let bytes = export_bytes(&ledger, 0).await;
    let text = String::from_utf8(bytes.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"type":"header","format":"liaison-ledger-export","version":1}"#
    );
    assert!(lines[1].starts_with(r#"{"type":"entry","seq":1,"entry_id":"entry-000001","recorded_at":"2023-11-14T22:13:21.000000007Z","body":""#), "{}", lines[1]);
    assert_eq!(lines.last().unwrap(), &r#"{"type":"end","size":53}"#);
    assert_eq!(lines.len(), 1 + 53 + 7 + 1);

    let report = verify_export(&bytes[..], &public).unwrap();
    let live = ledger.verify_signed(&public, &[]).await.unwrap();
    assert_eq!((report.first_seq, report.size, report.entries), (1, 53, 53));
    assert_eq!(report.heads, 7);
    assert_eq!(report.latest_head.unwrap().size, 49);
    assert_eq!(report.latest_head, live.latest_head);
    assert_eq!(report.root, live.root);
    assert_eq!(report.chain_head, live.head);

    // Continuations are exactly the rest of a complete export.
    for k in [1u64, 6, 7, 8, 30, 52, 53] {
        let rest = export_bytes(&ledger, k + 1).await;
        let cut = text
            .find(&format!("\"seq\":{k},"))
            .map(|at| at + text[at..].find('\n').unwrap() + 1)
            .unwrap();
        assert_eq!(
            String::from_utf8(rest).unwrap(),
            text[cut..],
            "continuation after entry {k}"
        );
    }
    assert_eq!(
        ledger.export(&mut Vec::new(), 55).await.unwrap_err(),
        LedgerError::SeqOutOfRange {
            seq: 55,
            tree_size: 53
        }
    );

    // The witness of every head matches; a witness of a later head proves the export old.
    let heads = ledger.signed_heads(0, 100).await.unwrap();
    assert_eq!(
        verify_export_with_witness(&bytes[..], &public, &heads)
            .unwrap()
            .witnessed,
        7
    );
    ledger.append(sample_entry(54)).await.unwrap();
    let newer = ledger.seal(&test_signing_key(1)).await.unwrap().unwrap();
    assert_eq!(
        verify_export_with_witness(&bytes[..], &public, &[newer]).unwrap_err(),
        LedgerError::Broken {
            seq: 54,
            entry_id: None,
            problem: Problem::RolledBack { witnessed_size: 54 }
        }
    );
}

#[tokio::test]
async fn an_empty_ledger_exports_and_verifies() {
    let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
    let bytes = export_bytes(&ledger, 1).await;
    let report = verify_export(&bytes[..], &test_signing_key(1).verifying_key()).unwrap();
    assert_eq!((report.size, report.entries, report.heads), (0, 0, 0));
    assert_eq!(report.root, merkle::empty_root());
    assert_eq!(
        verify_export(&b""[..], &test_signing_key(1).verifying_key()).unwrap_err(),
        LedgerError::Broken {
            seq: 1,
            entry_id: None,
            problem: Problem::Truncated
        }
    );
}

/// An interrupted export file is cut back to its last complete entry and continued; the result
/// is the export that was never interrupted. Repeated exports keep one file up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_resume_where_they_stopped() {
    let (url, dir) = fresh_sqlite_db();
    let ledger = sample_ledger(&url).await;
    let public = test_signing_key(1).verifying_key();
    let path = dir.path().join("ledger.jsonl");
    let summary = ledger.export_file(&path).await.unwrap();
    assert!(!summary.resumed);
    assert_eq!(
        (summary.first_seq, summary.entries, summary.heads),
        (1, 53, 7)
    );
    let full = std::fs::read(&path).unwrap();
    assert_eq!(full, export_bytes(&ledger, 0).await);

    // Nothing new: the file is rewritten from its last entry to the same bytes.
    let again = ledger.export_file(&path).await.unwrap();
    assert!(again.resumed);
    assert_eq!(again.entries, 0);
    assert_eq!(std::fs::read(&path).unwrap(), full);

    for cut in [
        0,
        10,
        63,
        64,
        65,
        500,
        full.len() / 2,
        full.len() - 30,
        full.len() - 1,
    ] {
        std::fs::write(&path, &full[..cut]).unwrap();
        ledger.export_file(&path).await.unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            full,
            "resumed from byte {cut}"
        );
    }

    for n in 54..=60 {
        ledger.append(sample_entry(n)).await.unwrap();
    }
    ledger.seal(&test_signing_key(1)).await.unwrap();
    let grown = ledger.export_file(&path).await.unwrap();
    assert_eq!((grown.first_seq, grown.entries, grown.heads), (54, 7, 1));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        export_bytes(&ledger, 0).await
    );
    let report = verify_export_file(&path, &public, None).unwrap();
    assert_eq!((report.size, report.latest_head.unwrap().size), (60, 60));
}

/// After the signing key is rotated, heads signed by the old key still verify with a ring that
/// keeps the old public key; without it the first old head is named as signed by an unknown key.
#[tokio::test]
async fn a_rotated_key_verifies_with_the_ring_of_old_and_new_keys() {
    let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
    let (old, new) = (test_signing_key(1), test_signing_key(2));
    for n in 1..=20 {
        ledger.append(sample_entry(n)).await.unwrap();
        if n % 5 == 0 {
            ledger
                .seal(if n <= 10 { &old } else { &new })
                .await
                .unwrap();
        }
    }
    let bytes = export_bytes(&ledger, 0).await;
    let ring = KeyRing::new([new.verifying_key(), old.verifying_key()]);
    let report = verify_export(&bytes[..], &ring).unwrap();
    assert_eq!((report.size, report.heads), (20, 4));
    assert_eq!(report.latest_head.unwrap().key_id, new.key_id());
    ledger.verify_signed(&ring, &[]).await.unwrap();

    let only_new = KeyRing::from(new.verifying_key());
    for err in [
        verify_export(&bytes[..], &only_new).unwrap_err(),
        ledger.verify_signed(&only_new, &[]).await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                LedgerError::Broken {
                    problem: Problem::UnknownKey { signed_size: 5, key_id },
                    ..
                } if key_id == old.key_id()
            ),
            "{err:?}"
        );
    }
}
