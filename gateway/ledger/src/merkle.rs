//! The Merkle tree of RFC 9162 §2.1 (the same tree as RFC 6962), over SHA-256.
//!
//! The ledger uses the Certificate Transparency tree rather than a tree of its own so that an
//! oversight body can check inclusion and consistency proofs with any CT-compatible verifier, and
//! so that the algorithms come with published test vectors.
//!
//! Every function is total: a bad size, index or proof is an error, never a panic, because proofs
//! arrive from outside the process.

use sha2::{Digest, Sha256};

use crate::LedgerError;

/// A SHA-256 digest: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Accumulates leaf hashes one at a time and yields the tree root, keeping only one hash per
/// level (O(log n) memory), so a verifier can stream a ledger of any size.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Roots of the perfect subtrees covering the leaves so far, largest (leftmost) first, each
    /// with its height. INVARIANT: heights strictly decrease from front to back.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

/// `SHA-256(0x00 || data)`: the hash of one entry. The prefix keeps a leaf from ever being
/// mistaken for an interior node (second-preimage resistance).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// MTH(D\[n\]): the root of the tree whose leaves have the given hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let (left, right) = split(leaves);
            node_hash(&root(left), &root(right))
        }
    }
}

/// PATH(m, D\[n\]) of RFC 6962 §2.1.1: the audit path proving that leaf `index` is in the tree
/// of `leaves`, deepest sibling first.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, LedgerError> {
    let size = leaves.len() as u64;
    let m = usize::try_from(index)
        .ok()
        .filter(|m| *m < leaves.len())
        .ok_or(LedgerError::IndexOutOfRange { index, size })?;
    let mut proof = Vec::new();
    path(m, leaves, &mut proof);
    Ok(proof)
}

/// PROOF(m, D\[n\]) of RFC 6962 §2.1.2: the proof that the tree of the first `old_size` leaves
/// is a prefix of the tree of all `leaves`. Empty when `old_size` is 0 or the whole tree.
pub fn consistency_proof(old_size: u64, leaves: &[Hash]) -> Result<Vec<Hash>, LedgerError> {
    let new_size = leaves.len() as u64;
    let m = usize::try_from(old_size)
        .ok()
        .filter(|m| *m <= leaves.len())
        .ok_or(LedgerError::InvalidSizes {
            old: old_size,
            new: new_size,
        })?;
    let mut proof = Vec::new();
    if m != 0 {
        subproof(m, leaves, true, &mut proof);
    }
    Ok(proof)
}

/// Verifies an inclusion proof with the algorithm of RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LedgerError> {
    // Step 1.
    if index >= size {
        return Err(LedgerError::IndexOutOfRange { index, size });
    }
    // Steps 2 and 3.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if snode == 0 {
            return Err(LedgerError::InvalidProof {
                reason: "inclusion proof is longer than the path to the root",
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    if snode != 0 {
        return Err(LedgerError::InvalidProof {
            reason: "inclusion proof is shorter than the path to the root",
        });
    }
    if r != *root {
        return Err(LedgerError::InvalidProof {
            reason: "inclusion proof leads to a different root",
        });
    }
    Ok(())
}

/// Verifies a consistency proof with the algorithm of RFC 9162 §2.1.4.2.
///
/// The RFC covers `0 < old_size < new_size`. Outside that range this function accepts only the
/// trivially true cases: equal sizes with equal roots and an empty proof, and an old tree of size
/// 0 whose root is the empty-tree root, again with an empty proof. (transparency-dev/merkle
/// accepts any old root for size 0; checking it costs nothing and rejects a malformed head.)
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LedgerError> {
    if old_size > new_size {
        return Err(LedgerError::InvalidSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(LedgerError::InvalidProof {
                reason: "a consistency proof from an empty or identical tree must be empty",
            });
        }
        let expected_old = if old_size == 0 {
            empty_root()
        } else {
            *new_root
        };
        if *old_root != expected_old {
            return Err(LedgerError::InvalidProof {
                reason: "old root does not match",
            });
        }
        return Ok(());
    }

    // Step 1.
    let Some((first, rest)) = proof.split_first() else {
        return Err(LedgerError::InvalidProof {
            reason: "consistency proof is empty",
        });
    };
    // Step 2: when the old tree is a perfect subtree its root is the first path element, and
    // proofs omit it because the verifier already has it.
    let (start, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    // Step 3.
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    // Step 4.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*start, *start);
    // Step 6.
    for c in rest {
        if snode == 0 {
            return Err(LedgerError::InvalidProof {
                reason: "consistency proof is longer than the path to the root",
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(LedgerError::InvalidProof {
            reason: "consistency proof is shorter than the path to the root",
        });
    }
    if fr != *old_root {
        return Err(LedgerError::InvalidProof {
            reason: "consistency proof leads to a different old root",
        });
    }
    if sr != *new_root {
        return Err(LedgerError::InvalidProof {
            reason: "consistency proof leads to a different new root",
        });
    }
    Ok(())
}

impl RootBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut height = 0u32;
        let mut hash = leaf;
        // Merge equal-height neighbours, like carrying in binary addition.
        while let Some(&(top_height, top_hash)) = self.stack.last() {
            if top_height != height {
                break;
            }
            self.stack.pop();
            hash = node_hash(&top_hash, &hash);
            height += 1;
        }
        self.stack.push((height, hash));
        self.size += 1;
    }

    /// The number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of all leaves pushed so far.
    ///
    /// The perfect subtrees in the stack are exactly the left-to-right decomposition MTH makes
    /// by splitting at the largest power of two, so folding them from the right gives MTH.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.stack.iter().rev();
        let Some(&(_, mut acc)) = subtrees.next() else {
            return empty_root();
        };
        for (_, left) in subtrees {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Splits `n >= 2` leaves at the largest power of two smaller than `n`, as MTH does.
fn split(leaves: &[Hash]) -> (&[Hash], &[Hash]) {
    let k = leaves
        .len()
        .saturating_sub(1)
        .checked_ilog2()
        .map_or(0, |bits| 1usize << bits);
    // INVARIANT: for len >= 2, 0 < k < len, so this never splits past the end.
    leaves.split_at(k.min(leaves.len()))
}

fn path(m: usize, leaves: &[Hash], proof: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let (left, right) = split(leaves);
    let k = left.len();
    if m < k {
        path(m, left, proof);
        proof.push(root(right));
    } else {
        path(m - k, right, proof);
        proof.push(root(left));
    }
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, proof: &mut Vec<Hash>) {
    if m == leaves.len() {
        if !complete {
            proof.push(root(leaves));
        }
        return;
    }
    let (left, right) = split(leaves);
    let k = left.len();
    if m <= k {
        subproof(m, left, complete, proof);
        proof.push(root(right));
    } else {
        subproof(m - k, right, false, proof);
        proof.push(root(left));
    }
}

#[cfg(test)]
mod tests;
