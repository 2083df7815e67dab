//! Tampering with the database itself, as someone with full rights over it could, is detected by
//! `verify_signed` (with the public key and, where only outside evidence can tell, a witness) and
//! pinpointed: the same eight kinds as the export tests, on both backends, each case on a fresh
//! copy of one sealed ledger (200 entries, a signed head after every fifth).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use common::Raw;
use liaison_ledger::test_util::{
    TestDatabase, copy_postgres_db, fresh_postgres_db, sample_entry, test_signing_key,
};
use liaison_ledger::{
    Hash, Ledger, LedgerError, Problem, SignedTreeHead, SigningKey, chain_hash, merkle,
};

const ENTRIES: u64 = 200;
const HEAD_EVERY: u64 = 5;

/// Runs one statement with binds on whichever backend `raw` is.
macro_rules! exec {
    ($raw:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        match &$raw {
            Raw::Sqlite(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(drop),
            Raw::Postgres(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(drop),
        }
        .unwrap()
    };
}

/// An entry as the attacker knows it.
#[derive(Clone)]
struct Row {
    entry_id: String,
    body: Vec<u8>,
}

fn next_head(p: u64) -> u64 {
    p.div_ceil(HEAD_EVERY) * HEAD_EVERY
}

fn prev_head(p: u64) -> u64 {
    (p - 1) / HEAD_EVERY * HEAD_EVERY
}

fn first_head_after(p: u64) -> u64 {
    (p / HEAD_EVERY + 1) * HEAD_EVERY
}

fn broken(seq: u64, entry_id: Option<String>, problem: Problem) -> LedgerError {
    LedgerError::Broken {
        seq,
        entry_id,
        problem,
    }
}

fn id(seq: u64) -> Option<String> {
    Some(format!("entry-{seq:06}"))
}

/// Builds the sealed ledger at `url` and returns its signed heads (what a witness holds) and
/// its entries.
async fn build(url: &str) -> (Vec<SignedTreeHead>, Vec<Row>) {
    let ledger = Ledger::connect(url).await.unwrap();
    let key = test_signing_key(1);
    let mut rows = Vec::new();
    for n in 1..=ENTRIES {
        let entry = sample_entry(n);
        rows.push(Row {
            entry_id: entry.entry_id.clone(),
            body: entry.body.clone(),
        });
        ledger.append(entry).await.unwrap();
        if n % HEAD_EVERY == 0 {
            ledger.seal(&key).await.unwrap();
        }
    }
    let heads = ledger.signed_heads(0, 100).await.unwrap();
    ledger.close().await;
    (heads, rows)
}

/// Rewrites entries from `from` on to `rows` (renumbered from `from`), with recomputed leaf and
/// chain hashes and a head row to match: what an attacker covering their tracks does.
async fn rewrite_from(raw: &Raw, all: &[Row], from: usize) -> Vec<Hash> {
    exec!(
        raw,
        "DELETE FROM audit_subjects WHERE seq >= $1",
        from as i64
    );
    exec!(
        raw,
        "DELETE FROM audit_entries WHERE seq >= $1",
        from as i64
    );
    let mut chain = liaison_ledger::GENESIS;
    let mut leaves = Vec::new();
    for (seq, row) in (1i64..).zip(all) {
        let leaf = merkle::leaf_hash(&row.body);
        chain = chain_hash(&chain, &leaf);
        leaves.push(leaf);
        if seq as usize >= from {
            raw.insert_entry(seq, &row.entry_id, &row.body, &leaf, &chain)
                .await;
        }
    }
    raw.set_head(all.len() as i64, &chain).await;
    leaves
}

/// Replaces the heads from `from` on with ones over `leaves` signed by `key`.
async fn resign(raw: &Raw, heads: &[SignedTreeHead], leaves: &[Hash], from: u64, key: &SigningKey) {
    for head in heads.iter().filter(|h| h.size >= from) {
        let new = key
            .sign_head(
                head.size,
                merkle::root(&leaves[..head.size as usize]),
                head.timestamp,
            )
            .unwrap();
        exec!(
            raw,
            "UPDATE tree_heads SET root = $1, key_id = $2, signature = $3 WHERE size = $4",
            new.root.to_vec(),
            new.key_id.0.to_vec(),
            new.signature.to_vec(),
            new.size as i64,
        );
    }
}

/// One case: tamper with a fresh copy, then verify it.
async fn case(
    url: &str,
    rows: &[Row],
    heads: &[SignedTreeHead],
    kind: &str,
    p: u64,
) -> (
    Result<liaison_ledger::VerifyReport, LedgerError>,
    LedgerError,
) {
    let public = test_signing_key(1).verifying_key();
    let raw = Raw::connect(url).await;
    raw.drop_append_only_guards().await;
    let mut witness: &[SignedTreeHead] = &[];
    let want = match kind {
        "modify" => {
            let mut body = rows[p as usize - 1].body.clone();
            body[2] ^= 0x20;
            raw.set_column(p as i64, common::Column::Body, &body).await;
            broken(p, id(p), Problem::LeafHashMismatch)
        }
        "delete" => {
            raw.delete_entry(p as i64).await;
            broken(p, None, Problem::SequenceGap { next: p + 1 })
        }
        "insert" => {
            let mut all = rows.to_vec();
            all.insert(
                p as usize - 1,
                Row {
                    entry_id: "forged".into(),
                    body: b"{\"share\":\"forged\"}".to_vec(),
                },
            );
            rewrite_from(&raw, &all, p as usize).await;
            broken(
                prev_head(p) + 1,
                None,
                Problem::RootMismatch {
                    signed_size: next_head(p),
                },
            )
        }
        "reorder" => {
            // Swap the bodies and hashes of two rows.
            let select = "SELECT body, leaf_hash, chain_hash FROM audit_entries WHERE seq = $1";
            let mut read = Vec::new();
            for seq in [p as i64, p as i64 + 1] {
                let row: (Vec<u8>, Vec<u8>, Vec<u8>) = match &raw {
                    Raw::Sqlite(pool) => sqlx::query_as(select).bind(seq).fetch_one(pool).await,
                    Raw::Postgres(pool) => sqlx::query_as(select).bind(seq).fetch_one(pool).await,
                }
                .unwrap();
                read.push(row);
            }
            for (seq, (body, leaf, chain)) in [p as i64 + 1, p as i64].into_iter().zip(read) {
                exec!(
                    raw,
                    "UPDATE audit_entries SET body = $1, leaf_hash = $2, chain_hash = $3 \
                     WHERE seq = $4",
                    body,
                    leaf,
                    chain,
                    seq,
                );
            }
            broken(p, id(p), Problem::ChainMismatch)
        }
        "truncate" => {
            exec!(raw, "DELETE FROM audit_subjects WHERE seq > $1", p as i64);
            exec!(raw, "DELETE FROM audit_entries WHERE seq > $1", p as i64);
            let chain = chain_at(rows, p);
            raw.set_head(p as i64, &chain).await;
            broken(
                p + 1,
                None,
                Problem::HeadBeyondEnd {
                    signed_size: first_head_after(p),
                },
            )
        }
        "rollback" => {
            // The database as it was when it held p entries: what restoring a backup gives.
            exec!(raw, "DELETE FROM audit_subjects WHERE seq > $1", p as i64);
            exec!(raw, "DELETE FROM audit_entries WHERE seq > $1", p as i64);
            exec!(raw, "DELETE FROM tree_heads WHERE size > $1", p as i64);
            let sealed = p / HEAD_EVERY * HEAD_EVERY;
            for level in 0..8i16 {
                exec!(
                    raw,
                    "DELETE FROM tree_nodes WHERE level = $1 AND idx >= $2",
                    level,
                    (sealed >> level) as i64,
                );
            }
            raw.set_head(p as i64, &chain_at(rows, p)).await;
            let ledger = Ledger::connect(url).await.unwrap();
            let alone = ledger.verify_signed(&public, &[]).await.unwrap();
            assert_eq!(alone.entries, p, "a restored backup verifies on its own");
            ledger.close().await;
            witness = heads;
            broken(
                p + 1,
                None,
                Problem::RolledBack {
                    witnessed_size: first_head_after(p),
                },
            )
        }
        "fork" | "foreign key" => {
            // Rewrite entry p, recompute everything after it, and re-sign the heads over it.
            let mut all = rows.to_vec();
            all[p as usize - 1].body[2] ^= 0x20;
            let leaves = rewrite_from(&raw, &all, p as usize).await;
            let signed_size = next_head(p);
            if kind == "fork" {
                // With the ledger's own key: only the witness tells the histories apart.
                resign(&raw, heads, &leaves, signed_size, &test_signing_key(1)).await;
                witness = heads;
                broken(
                    signed_size,
                    None,
                    Problem::ForkedHeads { size: signed_size },
                )
            } else {
                let foreign = test_signing_key(2);
                resign(&raw, heads, &leaves, signed_size, &foreign).await;
                broken(
                    signed_size,
                    None,
                    Problem::UnknownKey {
                        signed_size,
                        key_id: foreign.key_id(),
                    },
                )
            }
        }
        other => panic!("unknown kind {other}"),
    };
    raw.close().await;
    let ledger = Ledger::connect(url).await.unwrap();
    let got = ledger.verify_signed(&public, witness).await;
    ledger.close().await;
    (got, want)
}

/// The chain hash after entry `p` of the untouched ledger.
fn chain_at(rows: &[Row], p: u64) -> Hash {
    let mut chain = liaison_ledger::GENESIS;
    for row in &rows[..p as usize] {
        chain = chain_hash(&chain, &merkle::leaf_hash(&row.body));
    }
    chain
}

const KINDS: [&str; 8] = [
    "modify",
    "delete",
    "insert",
    "reorder",
    "truncate",
    "rollback",
    "fork",
    "foreign key",
];

/// The twenty positions of the export tests: spread over the ledger and over the offsets within
/// a signing interval.
fn all_positions() -> Vec<u64> {
    (0..20).map(|i| 1 + i * 10 + i % 5).collect()
}

async fn sqlite_matrix(positions: &[u64]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("sqlite://{}", dir.path().join("base.db").display());
    let (heads, rows) = build(&base).await;
    let raw = Raw::connect(&base).await;
    let mut checked = 0;
    for kind in KINDS {
        for &p in positions {
            let path = dir.path().join(format!("case-{checked}.db"));
            raw.exec_owned(format!("VACUUM INTO '{}'", path.display()))
                .await;
            let url = format!("sqlite://{}", path.display());
            let (got, want) = case(&url, &rows, &heads, kind, p).await;
            assert_eq!(got.as_ref().err(), Some(&want), "{kind} at {p}: {got:?}");
            std::fs::remove_file(&path).unwrap();
            checked += 1;
        }
    }
    checked
}

/// With `one_per_kind`, each kind is tried at one of `positions`, in turn: a copy of a
/// PostgreSQL database costs a few hundred milliseconds.
async fn postgres_matrix(positions: &[u64], one_per_kind: bool) -> usize {
    let (base, template): (String, TestDatabase) = fresh_postgres_db().await;
    let (heads, rows) = build(&base).await;
    let mut checked = 0;
    for (k, kind) in KINDS.into_iter().enumerate() {
        let mine = if one_per_kind {
            &positions[k % positions.len()..][..1]
        } else {
            positions
        };
        for &p in mine {
            let (url, _copy) = copy_postgres_db(&template).await;
            let (got, want) = case(&url, &rows, &heads, kind, p).await;
            assert_eq!(got.as_ref().err(), Some(&want), "{kind} at {p}: {got:?}");
            checked += 1;
        }
    }
    checked
}

/// Every kind at three positions (one on a signed head's boundary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tampering_is_detected_and_pinpointed() {
    assert_eq!(sqlite_matrix(&[1, 45, 123]).await, 24);
}

/// Every kind, at one of two positions (one on a signed head's boundary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tampering_is_detected_and_pinpointed() {
    assert_eq!(postgres_matrix(&[12, 95], true).await, 8);
}

/// Every kind at all twenty positions, 160 databases per backend (about a minute):
/// `cargo test -p liaison-ledger --test tamper_live -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 320 damaged database copies"]
async fn every_position_on_both_backends() {
    let sqlite = sqlite_matrix(&all_positions()).await;
    let postgres = postgres_matrix(&all_positions(), false).await;
    eprintln!("tampered databases detected: sqlite {sqlite}, postgres {postgres}");
    assert_eq!((sqlite, postgres), (160, 160));
}
