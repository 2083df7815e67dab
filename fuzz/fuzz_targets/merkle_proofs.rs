//! Merkle inclusion and consistency proofs (RFC 9162) as a DPO or an
//! auditor receives them: proofs the ledger made must verify, any change to
//! a proof, index, size or root must be refused, and proofs the fuzzer
//! makes up must never be accepted by accident or panic the verifier. The
//! gateway's client-side check (`liaison query`'s `verify_proof`) reads a
//! proof response straight off the wire.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use liaison_gateway::query::verify_proof;
use liaison_ledger::merkle::{self, Hash};
use liaison_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The largest tree built from real leaves.
const MAX_LEAVES: u64 = 64;

/// Leaves and the root of every prefix, hashed once rather than per input.
static LEAVES: LazyLock<Vec<Hash>> = LazyLock::new(|| {
    (0..MAX_LEAVES)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect()
});
static ROOTS: LazyLock<Vec<Hash>> = LazyLock::new(|| {
    (0..=LEAVES.len())
        .map(|n| merkle::root(&LEAVES[..n]))
        .collect()
});

#[derive(Debug, Arbitrary)]
struct Input {
    /// Tree size, up to 64 leaves so proofs are built from real leaves
    /// quickly; every shape of path up to depth 6 is reachable.
    size: u8,
    index: u64,
    old_size: u64,
    /// Which proof element to change, and how.
    flip_at: usize,
    flip_bit: u8,
    /// Made-up proofs and sizes.
    forged: Vec<Hash>,
    forged_size: u64,
    forged_root: Hash,
    wire: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let size = u64::from(input.size) % (MAX_LEAVES + 1);
    let leaves = LEAVES.get(..size as usize).unwrap_or_default();
    let root = ROOTS[size as usize];

    // Forged inputs: never a panic, and a leaf that is not in the tree is
    // never proved to be, whatever path is offered.
    let leaf = merkle::leaf_hash(b"forged");
    assert!(
        merkle::verify_inclusion(&leaf, input.index, size, &input.forged, &root).is_err(),
        "a leaf outside the tree was proved included"
    );
    let _ = merkle::verify_inclusion(
        &leaf,
        input.index,
        input.forged_size,
        &input.forged,
        &input.forged_root,
    );
    let _ = merkle::verify_consistency(
        input.old_size,
        input.forged_size,
        &input.forged_root,
        &root,
        &input.forged,
    );
    let _ = merkle::inclusion_ranges(input.index, input.forged_size);
    let _ = merkle::consistency_ranges(input.old_size, input.forged_size);
    let _ = merkle::subtrees(input.old_size, input.forged_size);
    if let Ok(response) = pb::GetInclusionProofResponse::decode(input.wire.as_slice()) {
        let _ = verify_proof(&input.wire, &response);
    }

    if size == 0 {
        return;
    }
    let index = input.index % size;
    let Some(leaf) = leaves.get(index as usize) else {
        return;
    };
    let mut proof = merkle::inclusion_proof(index, leaves).expect("index is in range");
    merkle::verify_inclusion(leaf, index, size, &proof, &root)
        .expect("a real inclusion proof verifies");
    if !proof.is_empty() {
        let at = input.flip_at % proof.len();
        if let Some(hash) = proof.get_mut(at) {
            hash[usize::from(input.flip_bit) % 32] ^= 1 << (input.flip_bit % 8);
        }
        assert!(
            merkle::verify_inclusion(leaf, index, size, &proof, &root).is_err(),
            "altered inclusion proof accepted"
        );
    }
    if size > 1 {
        let wrong = (index + 1) % size;
        let proof = merkle::inclusion_proof(index, leaves).expect("index is in range");
        assert!(
            merkle::verify_inclusion(leaf, wrong, size, &proof, &root).is_err(),
            "proof accepted at another index"
        );
    }

    let old = input.old_size % (size + 1);
    let old_root = ROOTS[old as usize];
    let mut proof = merkle::consistency_proof(old, leaves).expect("old size is in range");
    merkle::verify_consistency(old, size, &old_root, &root, &proof)
        .expect("a real consistency proof verifies");
    if !proof.is_empty() {
        let at = input.flip_at % proof.len();
        if let Some(hash) = proof.get_mut(at) {
            hash[usize::from(input.flip_bit) % 32] ^= 1 << (input.flip_bit % 8);
        }
        assert!(
            merkle::verify_consistency(old, size, &old_root, &root, &proof).is_err(),
            "altered consistency proof accepted"
        );
    }
});
