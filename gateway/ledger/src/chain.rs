//! The hash chain that links every entry to the one before it.
//!
//! The Merkle tree proves inclusion and consistency to outsiders; the chain makes a local check
//! cheap and pinpoints the first altered entry while walking the table once, without building
//! the tree. Both are recomputed from the bodies by [`Ledger::verify`](crate::Ledger::verify).

use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The chain hash before the first entry.
pub const GENESIS: Hash = [0; 32];

/// `SHA-256(previous chain hash || leaf hash)`.
pub fn chain_hash(previous: &Hash, leaf_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(leaf_hash);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_hash_is_sha256_of_the_concatenation() {
        let leaf = crate::merkle::leaf_hash(b"entry");
        let mut joined = GENESIS.to_vec();
        joined.extend_from_slice(&leaf);
        let want: Hash = Sha256::digest(&joined).into();
        assert_eq!(chain_hash(&GENESIS, &leaf), want);
        assert_ne!(chain_hash(&leaf, &GENESIS), want, "order matters");
    }
}
