//! Tampering with an export is always detected by the offline verifier, which names the first
//! bad entry or the heads that contradict each other: eight kinds of tampering, each at twenty
//! positions, each in several variants (an attacker who recomputes hashes, one who does not).
//!
//! The ledger: 200 entries, a signed head after every fifth (40 heads).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use liaison_ledger::test_util::{sample_entry, test_signing_key};
use liaison_ledger::{
    Hash, Ledger, LedgerError, Problem, SignedTreeHead, SigningKey, chain_hash, merkle,
    verify_export, verify_export_with_witness,
};
use serde_json::{Value, json};

const ENTRIES: u64 = 200;
const HEAD_EVERY: u64 = 5;

/// The twenty positions each kind of tampering is tried at: spread over the ledger and over the
/// offsets within a signing interval (1, 2, 3, 4, 0 modulo 5).
fn positions() -> Vec<u64> {
    (0..20).map(|i| 1 + i * 10 + i % 5).collect()
}

/// The signed head at or after entry `p`.
fn next_head(p: u64) -> u64 {
    p.div_ceil(HEAD_EVERY) * HEAD_EVERY
}

/// The signed head before entry `p` (0 if none).
fn prev_head(p: u64) -> u64 {
    (p - 1) / HEAD_EVERY * HEAD_EVERY
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

/// A parsed export, easy to rewrite.
#[derive(Clone)]
struct Export {
    header: Value,
    entries: Vec<Value>,
    heads: Vec<Value>,
    end: Value,
}

impl Export {
    fn parse(bytes: &[u8]) -> Self {
        let mut export = Self {
            header: Value::Null,
            entries: Vec::new(),
            heads: Vec::new(),
            end: Value::Null,
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: Value = serde_json::from_slice(line).unwrap();
            match value["type"].as_str().unwrap() {
                "header" => export.header = value,
                "entry" => export.entries.push(value),
                "head" => export.heads.push(value),
                "end" => export.end = value,
                other => panic!("unexpected line type {other}"),
            }
        }
        export
    }

    /// The lines in export order: each head after the entry of its size.
    fn lines(&self) -> Vec<Value> {
        let mut lines = vec![self.header.clone()];
        let mut heads = self.heads.iter().peekable();
        for entry in &self.entries {
            lines.push(entry.clone());
            while let Some(head) = heads.peek() {
                if head["size"].as_u64() > entry["seq"].as_u64() {
                    break;
                }
                lines.push((*heads.next().unwrap()).clone());
            }
        }
        lines.extend(heads.cloned());
        lines.push(self.end.clone());
        lines
    }

    fn bytes(&self) -> Vec<u8> {
        join(&self.lines())
    }

    fn entry(&mut self, seq: u64) -> &mut Value {
        &mut self.entries[seq as usize - 1]
    }

    fn body(&self, seq: u64) -> Vec<u8> {
        BASE64
            .decode(self.entries[seq as usize - 1]["body"].as_str().unwrap())
            .unwrap()
    }

    fn set_body(&mut self, seq: u64, body: &[u8]) {
        self.entry(seq)["body"] = json!(BASE64.encode(body));
    }

    fn leaf(&self, index: usize) -> Hash {
        hash(&self.entries[index]["leaf_hash"])
    }

    /// Renumbers entries 1.. and recomputes every leaf and chain hash, as an attacker covering
    /// their tracks would.
    fn recompute_hashes(&mut self) {
        let mut chain = liaison_ledger::GENESIS;
        for (seq, entry) in (1u64..).zip(self.entries.iter_mut()) {
            let body = BASE64.decode(entry["body"].as_str().unwrap()).unwrap();
            let leaf = merkle::leaf_hash(&body);
            chain = chain_hash(&chain, &leaf);
            entry["seq"] = json!(seq);
            entry["leaf_hash"] = json!(hex::encode(leaf));
            entry["chain_hash"] = json!(hex::encode(chain));
        }
    }

    /// The root over the first `size` entries' stored leaf hashes.
    fn root(&self, size: u64) -> Hash {
        let leaves: Vec<Hash> = (0..size as usize).map(|i| self.leaf(i)).collect();
        merkle::root(&leaves)
    }

    /// Re-signs the heads from size `from` on over the current entries with `key`, naming
    /// `key_id` (the signer's own, or a lie).
    fn resign(&mut self, from: u64, key: &SigningKey, key_id: Option<liaison_ledger::KeyId>) {
        for i in 0..self.heads.len() {
            let old = head(&self.heads[i]);
            if old.size < from {
                continue;
            }
            let mut new = key
                .sign_head(old.size, self.root(old.size), old.timestamp)
                .unwrap();
            if let Some(key_id) = key_id {
                new.key_id = key_id;
            }
            self.heads[i] = head_line(&new);
        }
    }
}

fn join(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut out, line).unwrap();
        out.push(b'\n');
    }
    out
}

fn hash(value: &Value) -> Hash {
    let mut out = [0; 32];
    hex::decode_to_slice(value.as_str().unwrap(), &mut out).unwrap();
    out
}

fn head(value: &Value) -> SignedTreeHead {
    SignedTreeHead {
        size: value["size"].as_u64().unwrap(),
        timestamp: value["timestamp"].as_u64().unwrap(),
        root: hash(&value["root"]),
        key_id: liaison_ledger::KeyId::from_hex(value["key_id"].as_str().unwrap()).unwrap(),
        signature: BASE64
            .decode(value["signature"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    }
}

fn head_line(head: &SignedTreeHead) -> Value {
    json!({
        "type": "head",
        "size": head.size,
        "timestamp": head.timestamp,
        "root": hex::encode(head.root),
        "key_id": head.key_id.to_string(),
        "signature": BASE64.encode(head.signature),
    })
}

/// The ledger and its export, built once per test binary run.
async fn base() -> (Export, Vec<u8>) {
    let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
    let key = test_signing_key(1);
    for n in 1..=ENTRIES {
        ledger.append(sample_entry(n)).await.unwrap();
        if n % HEAD_EVERY == 0 {
            ledger.seal(&key).await.unwrap();
        }
    }
    let mut bytes = Vec::new();
    ledger.export(&mut bytes, 1).await.unwrap();
    (Export::parse(&bytes), bytes)
}

/// Checks one tampered export, and counts it.
struct Cases {
    public: liaison_ledger::VerifyingKey,
    checked: usize,
}

impl Cases {
    fn expect(&mut self, what: &str, bytes: &[u8], witness: &[SignedTreeHead], want: LedgerError) {
        let got = verify_export_with_witness(bytes, &self.public, witness);
        assert_eq!(got.as_ref().err(), Some(&want), "{what}: got {got:?}");
        self.checked += 1;
    }
}

#[tokio::test]
async fn every_kind_of_tampering_is_detected_at_every_position() {
    let (export, bytes) = base().await;
    let public = test_signing_key(1).verifying_key();
    let foreign = test_signing_key(2);
    assert_eq!(export.heads.len(), 40);
    let genuine = verify_export(&bytes[..], &public).unwrap();
    assert_eq!((genuine.size, genuine.heads), (ENTRIES, 40));
    let witness: Vec<SignedTreeHead> = export.heads.iter().map(head).collect();
    let mut cases = Cases { public, checked: 0 };
    let mut per_kind = Vec::new();

    // 1. Modify an entry's body.
    let before = cases.checked;
    for (i, p) in positions().into_iter().enumerate() {
        let mut e = export.clone();
        let mut body = e.body(p);
        body[2] ^= 0x20;
        e.set_body(p, &body);
        let want = match i % 3 {
            0 => broken(p, id(p), Problem::LeafHashMismatch),
            1 => {
                e.entry(p)["leaf_hash"] = json!(hex::encode(merkle::leaf_hash(&body)));
                broken(p, id(p), Problem::ChainMismatch)
            }
            _ => {
                e.recompute_hashes();
                broken(
                    prev_head(p) + 1,
                    None,
                    Problem::RootMismatch {
                        signed_size: next_head(p),
                    },
                )
            }
        };
        cases.expect(&format!("modify {p} ({i})"), &e.bytes(), &[], want);
    }
    per_kind.push(("modify", cases.checked - before));

    // 2. Delete an entry.
    let before = cases.checked;
    for (i, p) in positions().into_iter().enumerate() {
        let mut e = export.clone();
        let mut lines = e.lines();
        let want = if i % 2 == 0 {
            // The line alone.
            lines.retain(|l| !(l["type"] == "entry" && l["seq"] == json!(p)));
            if p % HEAD_EVERY == 0 {
                broken(p, None, Problem::HeadBeyondEnd { signed_size: p })
            } else {
                broken(p, None, Problem::SequenceGap { next: p + 1 })
            }
        } else {
            // And renumbered, hashes recomputed, heads left where they were.
            e.entries.remove(p as usize - 1);
            e.recompute_hashes();
            e.end = json!({"type": "end", "size": ENTRIES - 1});
            lines = e.lines();
            broken(
                prev_head(p) + 1,
                None,
                Problem::RootMismatch {
                    signed_size: next_head(p),
                },
            )
        };
        cases.expect(&format!("delete {p} ({i})"), &join(&lines), &[], want);
    }
    per_kind.push(("delete", cases.checked - before));

    // 3. Insert a forged entry before entry p.
    let before = cases.checked;
    for (i, p) in positions().into_iter().enumerate() {
        let mut e = export.clone();
        let body = br#"{"share":"forged"}"#;
        let mut forged = e.entries[p as usize - 1].clone();
        forged["entry_id"] = json!("forged");
        forged["body"] = json!(BASE64.encode(body));
        forged["leaf_hash"] = json!(hex::encode(merkle::leaf_hash(body)));
        e.entries.insert(p as usize - 1, forged);
        e.end = json!({"type": "end", "size": ENTRIES + 1});
        let want = if i % 2 == 0 {
            // Numbered into place, the chain not recomputed.
            for (seq, entry) in (1u64..).zip(e.entries.iter_mut()) {
                entry["seq"] = json!(seq);
            }
            broken(p, Some("forged".into()), Problem::ChainMismatch)
        } else {
            e.recompute_hashes();
            broken(
                prev_head(p) + 1,
                None,
                Problem::RootMismatch {
                    signed_size: next_head(p),
                },
            )
        };
        cases.expect(&format!("insert {p} ({i})"), &e.bytes(), &[], want);
    }
    per_kind.push(("insert", cases.checked - before));

    // 4. Reorder entries p and p + 1.
    let before = cases.checked;
    for (i, p) in positions().into_iter().enumerate() {
        let mut e = export.clone();
        let want = if i % 2 == 0 {
            // The lines swapped.
            let mut lines = e.lines();
            let a = lines
                .iter()
                .position(|l| l["type"] == "entry" && l["seq"] == json!(p))
                .unwrap();
            let b = lines
                .iter()
                .position(|l| l["type"] == "entry" && l["seq"] == json!(p + 1))
                .unwrap();
            lines.swap(a, b);
            cases.expect(
                &format!("reorder {p} ({i})"),
                &join(&lines),
                &[],
                broken(p, None, Problem::SequenceGap { next: p + 1 }),
            );
            continue;
        } else {
            // Swapped and renumbered, the stored hashes moving with their entries.
            e.entries.swap(p as usize - 1, p as usize);
            e.entry(p)["seq"] = json!(p);
            e.entry(p + 1)["seq"] = json!(p + 1);
            broken(p, id(p + 1), Problem::ChainMismatch)
        };
        cases.expect(&format!("reorder {p} ({i})"), &e.bytes(), &[], want);
    }
    per_kind.push(("reorder", cases.checked - before));

    // 5. Truncate the file.
    let before = cases.checked;
    for (i, p) in positions().into_iter().enumerate() {
        let full = export.bytes();
        let text = String::from_utf8(full.clone()).unwrap();
        let start = text.find(&format!("\"seq\":{p},")).unwrap();
        let line_start = text[..start].rfind('\n').unwrap() + 1;
        let line_end = start + text[start..].find('\n').unwrap() + 1;
        let (cut, want) = match i % 3 {
            // After entry p's line.
            0 => (
                full[..line_end].to_vec(),
                broken(p + 1, None, Problem::Truncated),
            ),
            // Inside entry p's line.
            1 => (
                full[..(line_start + line_end) / 2].to_vec(),
                broken(p, None, Problem::Truncated),
            ),
            // After entry p, with the end line put back.
            _ => {
                let mut cut = full[..line_end].to_vec();
                cut.extend_from_slice(b"{\"type\":\"end\",\"size\":200}\n");
                (cut, broken(p + 1, None, Problem::Truncated))
            }
        };
        cases.expect(&format!("truncate {p} ({i})"), &cut, &[], want);
    }
    per_kind.push(("truncate", cases.checked - before));

    // 6. Roll back to an earlier backup: a complete, valid export of the ledger at size p. It
    //    verifies on its own (it is a true older state); the witness shows it is old.
    let before = cases.checked;
    for p in positions() {
        let mut e = export.clone();
        e.entries.truncate(p as usize);
        e.heads.retain(|h| h["size"].as_u64().unwrap() <= p);
        e.end = json!({"type": "end", "size": p});
        let old = e.bytes();
        assert_eq!(verify_export(&old[..], &public).unwrap().size, p);
        let first_newer = (p / HEAD_EVERY + 1) * HEAD_EVERY;
        cases.expect(
            &format!("rollback to {p}"),
            &old,
            &witness,
            broken(
                p + 1,
                None,
                Problem::RolledBack {
                    witnessed_size: first_newer,
                },
            ),
        );
    }
    per_kind.push(("rollback", cases.checked - before));

    // 7. Fork: a second, validly signed head of the same size with a different root (only the
    //    key holder can make one), in the export or in the witness.
    let before = cases.checked;
    let key = test_signing_key(1);
    for i in 0..20u64 {
        let size = HEAD_EVERY * (2 * i + 1);
        let genuine = head(&export.heads[size as usize / HEAD_EVERY as usize - 1]);
        let other = key
            .sign_head(
                size,
                merkle::leaf_hash(b"another history"),
                genuine.timestamp,
            )
            .unwrap();
        let want = broken(size, None, Problem::ForkedHeads { size });
        if i % 2 == 0 {
            let mut lines = export.lines();
            let at = lines
                .iter()
                .position(|l| l["type"] == "head" && l["size"] == json!(size))
                .unwrap();
            lines.insert(at + 1, head_line(&other));
            cases.expect(
                &format!("fork at {size} in export"),
                &join(&lines),
                &[],
                want,
            );
        } else {
            cases.expect(
                &format!("fork at {size} in witness"),
                &bytes,
                &[other],
                want,
            );
        }
    }
    per_kind.push(("fork", cases.checked - before));

    // 8. Rewrite entry p and re-sign the heads over it with a foreign key.
    let before = cases.checked;
    for (i, p) in positions().into_iter().enumerate() {
        let mut e = export.clone();
        let mut body = e.body(p);
        body[2] ^= 0x20;
        e.set_body(p, &body);
        e.recompute_hashes();
        let signed_size = next_head(p);
        let want = match i % 3 {
            0 => {
                e.resign(signed_size, &foreign, None);
                broken(
                    signed_size,
                    None,
                    Problem::UnknownKey {
                        signed_size,
                        key_id: foreign.key_id(),
                    },
                )
            }
            1 => {
                e.resign(signed_size, &foreign, Some(key.key_id()));
                broken(signed_size, None, Problem::BadSignature { signed_size })
            }
            _ => {
                // Every head re-signed: the first one is already foreign.
                e.resign(0, &foreign, None);
                broken(
                    HEAD_EVERY,
                    None,
                    Problem::UnknownKey {
                        signed_size: HEAD_EVERY,
                        key_id: foreign.key_id(),
                    },
                )
            }
        };
        cases.expect(&format!("foreign re-sign {p} ({i})"), &e.bytes(), &[], want);
    }
    per_kind.push(("foreign key", cases.checked - before));

    eprintln!(
        "tampered exports detected: {per_kind:?}, {} in all",
        cases.checked
    );
    assert!(per_kind.iter().all(|(_, n)| *n >= 20));
    assert!(cases.checked >= 160);
}

/// The export as the tests above rewrite it, but untouched, still verifies: every failure above
/// is the tampering's, not the rewriting's.
#[tokio::test]
async fn the_untouched_export_round_trips_through_the_test_parser() {
    let (export, bytes) = base().await;
    let public = test_signing_key(1).verifying_key();
    let rewritten = export.bytes();
    assert_eq!(
        Export::parse(&rewritten).lines(),
        Export::parse(&bytes).lines()
    );
    assert_eq!(
        verify_export(&rewritten[..], &public).unwrap(),
        verify_export(&bytes[..], &public).unwrap()
    );
}
