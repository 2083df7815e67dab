//! The checks shared by [`Ledger::verify`](crate::Ledger::verify) (over the database) and
//! [`verify_export`](crate::verify_export) (over an export file), so both name the same problem
//! at the same position.
//!
//! A [`Checker`] is fed, in ledger order, an optional retention checkpoint, then entries, each
//! followed by the signed heads of its size. For each entry it recomputes the leaf hash from the
//! body, the chain hash, and the Merkle tree; for each signed head it checks the signature (when
//! it has the public key), that heads only grow, and that the recomputed root is the signed root.
//! Checking every signed root against the same append-only leaf sequence is stronger than
//! checking a consistency proof between each pair of heads: any two heads it accepts are
//! consistent. Witnessed heads (published outside the database) are checked the same way, so a
//! ledger that was rewritten, forked or rolled back since they were published is caught.

use crate::LedgerError;
use crate::chain::chain_hash;
use crate::error::Problem;
use crate::merkle::{self, Hash, NodeId, RootBuilder};
use crate::sign::{HeadVerifier, SignedTreeHead};

/// The streaming verifier.
pub(crate) struct Checker<'a> {
    key: Option<&'a dyn HeadVerifier>,
    /// Witnessed heads, sorted by size and without duplicates.
    witness: &'a [SignedTreeHead],
    next_witness: usize,
    tree: RootBuilder,
    chain: Hash,
    /// Entries before this were pruned; the tree and chain start from the checkpoint.
    base: u64,
    /// The size of the last signed head whose root was recomputed, or `base`.
    verified: u64,
    last_head: Option<SignedTreeHead>,
    heads: u64,
    old_heads: u64,
    witnessed: u64,
    /// When set, every node the tree completes is recorded for comparison with stored nodes.
    nodes: Option<Vec<(NodeId, Hash)>>,
}

/// What a [`Checker`] established.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    pub first_seq: u64,
    pub size: u64,
    pub chain: Hash,
    pub root: Hash,
    pub heads: u64,
    pub latest_head: Option<SignedTreeHead>,
    pub witnessed: u64,
}

impl<'a> Checker<'a> {
    /// A checker that verifies signatures with `key` (when given) and compares the tree with the
    /// witnessed heads (sorted by size, deduplicated: see [`sort_witness`]).
    pub(crate) fn new(key: Option<&'a dyn HeadVerifier>, witness: &'a [SignedTreeHead]) -> Self {
        Self {
            key,
            witness,
            next_witness: 0,
            tree: RootBuilder::new(),
            chain: crate::chain::GENESIS,
            base: 0,
            verified: 0,
            last_head: None,
            heads: 0,
            old_heads: 0,
            witnessed: 0,
            nodes: None,
        }
    }

    /// Records completed tree nodes from now on, for [`Checker::take_nodes`].
    pub(crate) fn collect_nodes(&mut self) {
        self.nodes = Some(Vec::new());
    }

    /// The nodes completed since the last call.
    pub(crate) fn take_nodes(&mut self) -> Vec<(NodeId, Hash)> {
        self.nodes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The number of entries checked so far, counting pruned ones.
    pub(crate) fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The chain hash after the last entry.
    pub(crate) fn chain(&self) -> Hash {
        self.chain
    }

    /// Starts after a retention checkpoint: entries `1..=head.size` are gone, `chain` is the chain
    /// hash after the last of them and `frontier` the stored roots of [`merkle::subtrees`]`(0,
    /// head.size)`, which must fold to the signed root.
    pub(crate) fn checkpoint(
        &mut self,
        head: &SignedTreeHead,
        chain: Hash,
        frontier: &[Hash],
    ) -> Result<(), LedgerError> {
        if let Some(key) = self.key {
            key.verify_head(head)?;
        }
        let tree = RootBuilder::from_frontier(head.size, frontier).ok_or_else(|| {
            LedgerError::broken(
                head.size,
                None,
                Problem::Malformed {
                    what: "checkpoint frontier",
                },
            )
        })?;
        if tree.root() != head.root {
            return Err(LedgerError::broken(
                head.size,
                None,
                Problem::RootMismatch {
                    signed_size: head.size,
                },
            ));
        }
        self.tree = tree;
        self.chain = chain;
        self.base = head.size;
        self.verified = head.size;
        self.last_head = Some(*head);
        self.heads += 1;
        // Witnessed heads inside the pruned range cannot be recomputed; the one at the
        // checkpoint can.
        while let Some(witnessed) = self.witness.get(self.next_witness) {
            if witnessed.size > head.size {
                break;
            }
            if witnessed.size == head.size {
                self.compare_witness(witnessed)?;
            }
            self.next_witness += 1;
        }
        Ok(())
    }

    /// Checks the next entry.
    pub(crate) fn entry(
        &mut self,
        seq: u64,
        entry_id: &str,
        body: &[u8],
        stored_leaf: &Hash,
        stored_chain: &Hash,
    ) -> Result<(), LedgerError> {
        let expected = self.tree.size() + 1;
        if seq != expected {
            let problem = if seq > expected {
                Problem::SequenceGap { next: seq }
            } else {
                Problem::OutOfSequence { found: seq }
            };
            return Err(LedgerError::broken(expected, None, problem));
        }
        let broken = |problem| LedgerError::broken(seq, Some(entry_id), problem);
        let leaf = merkle::leaf_hash(body);
        if leaf != *stored_leaf {
            return Err(broken(Problem::LeafHashMismatch));
        }
        self.chain = chain_hash(&self.chain, &leaf);
        if self.chain != *stored_chain {
            return Err(broken(Problem::ChainMismatch));
        }
        match &mut self.nodes {
            Some(nodes) => self
                .tree
                .push_with(leaf, |node, hash| nodes.push((node, *hash))),
            None => self.tree.push(leaf),
        }
        while let Some(witnessed) = self.witness.get(self.next_witness) {
            if witnessed.size != seq {
                break;
            }
            self.compare_witness(witnessed)?;
            self.next_witness += 1;
        }
        Ok(())
    }

    /// Checks a signed head that comes right after the entry at its size (or, when entries are
    /// missing, after the last entry there is).
    pub(crate) fn head(&mut self, head: &SignedTreeHead) -> Result<(), LedgerError> {
        if let Some(key) = self.key {
            key.verify_head(head)?;
        }
        let at = |seq, problem| Err(LedgerError::broken(seq, None, problem));
        if let Some(last) = self.last_head {
            if head.size == last.size {
                if head.root != last.root {
                    return at(head.size, Problem::ForkedHeads { size: head.size });
                }
                return Ok(());
            }
            if head.size < last.size || head.timestamp < last.timestamp {
                return at(
                    head.size,
                    Problem::InconsistentHeads {
                        first: last.size,
                        second: head.size,
                    },
                );
            }
        }
        let size = self.tree.size();
        if head.size > size {
            return at(
                size + 1,
                Problem::HeadBeyondEnd {
                    signed_size: head.size,
                },
            );
        }
        if head.size < size {
            return at(
                head.size,
                Problem::MisplacedHead {
                    signed_size: head.size,
                },
            );
        }
        if self.tree.root() != head.root {
            return at(
                self.verified + 1,
                Problem::RootMismatch {
                    signed_size: head.size,
                },
            );
        }
        self.verified = head.size;
        self.last_head = Some(*head);
        self.heads += 1;
        Ok(())
    }

    /// Checks a signed head of a size whose entries were pruned: only its signature can be
    /// checked.
    pub(crate) fn pruned_head(&mut self, head: &SignedTreeHead) -> Result<(), LedgerError> {
        if let Some(key) = self.key {
            key.verify_head(head)?;
        }
        self.old_heads += 1;
        Ok(())
    }

    /// Ends the check: a witnessed head beyond the last entry means entries are missing.
    pub(crate) fn finish(self) -> Result<Checked, LedgerError> {
        let size = self.tree.size();
        if let Some(witnessed) = self.witness.get(self.next_witness) {
            return Err(LedgerError::broken(
                size + 1,
                None,
                Problem::RolledBack {
                    witnessed_size: witnessed.size,
                },
            ));
        }
        Ok(Checked {
            first_seq: self.base + 1,
            size,
            chain: self.chain,
            root: self.tree.root(),
            heads: self.heads + self.old_heads,
            latest_head: self.last_head,
            witnessed: self.witnessed,
        })
    }

    fn compare_witness(&mut self, witnessed: &SignedTreeHead) -> Result<(), LedgerError> {
        if self.tree.root() != witnessed.root {
            return Err(LedgerError::broken(
                witnessed.size,
                None,
                Problem::ForkedHeads {
                    size: witnessed.size,
                },
            ));
        }
        self.witnessed += 1;
        Ok(())
    }
}

/// Sorts witnessed heads by size and drops repeats. Two different roots at one size are a fork
/// the witness itself proves.
pub(crate) fn sort_witness(
    mut heads: Vec<SignedTreeHead>,
) -> Result<Vec<SignedTreeHead>, LedgerError> {
    heads.sort_by_key(|head| head.size);
    let mut out: Vec<SignedTreeHead> = Vec::with_capacity(heads.len());
    for head in heads {
        match out.last() {
            Some(last) if last.size == head.size => {
                if last.root != head.root {
                    return Err(LedgerError::broken(
                        head.size,
                        None,
                        Problem::ForkedHeads { size: head.size },
                    ));
                }
            }
            _ => out.push(head),
        }
    }
    Ok(out)
}
