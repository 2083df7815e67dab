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
/// level (O(log n) memory), so a verifier can stream a ledger of any size. It can also report
/// every perfect subtree it completes ([`RootBuilder::push_with`]), which is how the sealer fills
/// the stored node table, and resume from a stored frontier ([`RootBuilder::from_frontier`]).
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Roots of the perfect subtrees covering the leaves so far, largest (leftmost) first, each
    /// with its height. INVARIANT: heights strictly decrease from front to back.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

/// A perfect, aligned subtree of the Merkle tree: the `2^level` leaves from index
/// `index * 2^level`. Level 0 nodes are leaf hashes. These are the nodes the ledger stores, because
/// their hashes never change as the tree grows; every MTH of RFC 9162 is a right fold over a few
/// of them ([`subtrees`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 to 63).
    pub level: u8,
    /// Position among the nodes of this level, from 0.
    pub index: u64,
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

    /// Resumes a tree of `size` leaves from its frontier: the hashes of [`subtrees`]`(0, size)`,
    /// largest first. `None` if there is not exactly one hash per set bit of `size`.
    pub fn from_frontier(size: u64, frontier: &[Hash]) -> Option<Self> {
        let heights = (0..64u32).rev().filter(|bit| size & (1u64 << bit) != 0);
        if frontier.len() != size.count_ones() as usize {
            return None;
        }
        Some(Self {
            stack: heights.zip(frontier.iter().copied()).collect(),
            size,
        })
    }

    /// The frontier: the roots of the perfect subtrees covering the leaves so far, largest
    /// first (the hashes of [`subtrees`]`(0, size)`).
    pub fn frontier(&self) -> Vec<Hash> {
        self.stack.iter().map(|&(_, hash)| hash).collect()
    }

    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _| {});
    }

    /// Appends the next leaf hash and calls `completed` with every perfect subtree this leaf
    /// completes: the leaf itself (level 0), then each subtree it closes, lowest first.
    pub fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let index = self.size;
        completed(NodeId { level: 0, index }, &leaf);
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
            // INVARIANT: the subtree closed at `height` ends with leaf `index`, so it is node
            // `index >> height` of its level; height stays below 64 for a u64 count of leaves.
            completed(
                NodeId {
                    level: height as u8,
                    index: index >> height,
                },
                &hash,
            );
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

/// The perfect subtrees whose right fold ([`fold`]) is MTH of the leaves `[start, end)`, largest
/// (leftmost) first: one per set bit of `end - start`.
///
/// Defined for the ranges RFC 9162's recursion produces, whose start is a multiple of the largest
/// power of two not exceeding their length (the whole tree `[0, n)` and every range in
/// [`inclusion_ranges`] and [`consistency_ranges`]); any other range is an error.
pub fn subtrees(start: u64, end: u64) -> Result<Vec<NodeId>, LedgerError> {
    if start > end {
        return Err(LedgerError::InvalidSizes {
            old: start,
            new: end,
        });
    }
    let mut nodes = Vec::new();
    let mut pos = start;
    let mut rest = end - start;
    while rest > 0 {
        let level = rest.ilog2();
        let width = 1u64 << level;
        if !pos.is_multiple_of(width) {
            return Err(LedgerError::InvalidProof {
                reason: "range is not a subtree of the Merkle tree",
            });
        }
        nodes.push(NodeId {
            // ilog2 of a u64 is at most 63.
            level: level as u8,
            index: pos >> level,
        });
        pos += width;
        rest -= width;
    }
    Ok(nodes)
}

/// The right fold that turns the hashes of [`subtrees`]`(start, end)` into MTH of the range:
/// `node(h0, node(h1, … node(h_{k-1}, h_k)))`. The empty list folds to the empty-tree root.
pub fn fold(hashes: &[Hash]) -> Hash {
    let mut rev = hashes.iter().rev();
    let Some(&last) = rev.next() else {
        return empty_root();
    };
    rev.fold(last, |acc, left| node_hash(left, &acc))
}

/// The leaf ranges `[start, end)` whose MTHs form the inclusion proof of leaf `index` in the tree
/// of `size` leaves (PATH of RFC 6962 §2.1.1, deepest first), so a proof can be assembled from
/// stored nodes without reading every leaf.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, LedgerError> {
    if index >= size {
        return Err(LedgerError::IndexOutOfRange { index, size });
    }
    let mut ranges = Vec::new();
    path_ranges(index, 0, size, &mut ranges);
    Ok(ranges)
}

/// The leaf ranges whose MTHs form the consistency proof between the trees of `old_size` and
/// `new_size` leaves (PROOF of RFC 6962 §2.1.2). Empty when `old_size` is 0 or `new_size`.
pub fn consistency_ranges(old_size: u64, new_size: u64) -> Result<Vec<(u64, u64)>, LedgerError> {
    if old_size > new_size {
        return Err(LedgerError::InvalidSizes {
            old: old_size,
            new: new_size,
        });
    }
    let mut ranges = Vec::new();
    if old_size != 0 {
        subproof_ranges(old_size, 0, new_size, true, &mut ranges);
    }
    Ok(ranges)
}

/// The largest power of two smaller than `n`, for `n >= 2`: where MTH splits `n` leaves.
fn split_point(n: u64) -> u64 {
    (n.saturating_sub(1))
        .checked_ilog2()
        .map_or(0, |bits| 1u64 << bits)
}

fn path_ranges(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    if hi - lo <= 1 {
        return;
    }
    let mid = lo + split_point(hi - lo);
    if m < mid {
        path_ranges(m, lo, mid, out);
        out.push((mid, hi));
    } else {
        path_ranges(m, mid, hi, out);
        out.push((lo, mid));
    }
}

/// SUBPROOF(m, D[lo:hi], complete) with `m` counted from `lo`.
fn subproof_ranges(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    if m == hi - lo {
        if !complete {
            out.push((lo, hi));
        }
        return;
    }
    let k = split_point(hi - lo);
    if m <= k {
        subproof_ranges(m, lo, lo + k, complete, out);
        out.push((lo + k, hi));
    } else {
        subproof_ranges(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

impl NodeId {
    /// The first leaf index under this node.
    /// (Saturating at `u64::MAX` for nodes no tree of `u64` leaves has.)
    pub fn start(&self) -> u64 {
        self.width()
            .and_then(|width| self.index.checked_mul(width))
            .unwrap_or(u64::MAX)
    }

    /// One past the last leaf index under this node (saturating at `u64::MAX`).
    pub fn end(&self) -> u64 {
        self.width()
            .and_then(|width| self.index.checked_add(1)?.checked_mul(width))
            .unwrap_or(u64::MAX)
    }

    fn width(&self) -> Option<u64> {
        1u64.checked_shl(u32::from(self.level))
    }

    /// The two halves of this node, or `None` for a leaf.
    pub fn children(&self) -> Option<(Self, Self)> {
        let level = self.level.checked_sub(1)?;
        let left = self.index.checked_mul(2)?;
        Some((
            Self { level, index: left },
            Self {
                level,
                index: left.checked_add(1)?,
            },
        ))
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
