//! Audit entries as the ledger stores them: protobuf `AuditEntry` bytes the
//! gateway encodes and anyone may later read back from an export.
//!
//! The ledger hashes exactly the bytes it is given, so the gateway's
//! encoding must be canonical: decoding stored bytes and encoding them again
//! must give bytes that read as the same entry and that encode to
//! themselves, or a verifier rebuilding an entry would compute another
//! hash. The chain and the incremental tree are checked against the
//! definitions they shortcut.
#![no_main]

use liaison_ledger::merkle::{self, RootBuilder};
use liaison_ledger::{GENESIS, chain_hash};
use liaison_proto::v1::AuditEntry;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = AuditEntry::decode(data) {
        let canonical = entry.encode_to_vec();
        let again = AuditEntry::decode(canonical.as_slice()).expect("canonical bytes decode");
        assert_eq!(entry, again, "entry changed on a second reading");
        assert_eq!(
            again.encode_to_vec(),
            canonical,
            "encoding is not canonical"
        );
    }

    // Each 8-byte slice of the input is one entry body, up to 64 of them:
    // the tree's shape, not its size, is what can go wrong.
    let leaves: Vec<_> = data.chunks(8).take(64).map(merkle::leaf_hash).collect();
    let mut builder = RootBuilder::new();
    let mut chain = GENESIS;
    for leaf in &leaves {
        builder.push(*leaf);
        chain = chain_hash(&chain, leaf);
    }
    assert_eq!(builder.size(), leaves.len() as u64);
    assert_eq!(
        builder.root(),
        merkle::root(&leaves),
        "incremental root differs"
    );
    let resumed = RootBuilder::from_frontier(builder.size(), &builder.frontier())
        .expect("a builder's own frontier resumes it");
    assert_eq!(resumed.root(), builder.root(), "resumed root differs");
    let _ = chain;
});
