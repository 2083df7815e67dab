//! Tree heads and proofs from stored nodes, in O(log n) reads.
//!
//! The sealer stores every perfect subtree ([`NodeId`]) that is complete within the size it
//! signs, in `tree_nodes`. Any MTH the RFC 9162 algorithms need is a fold over a few of those
//! ([`merkle::subtrees`]), so a tree head or a proof for a sealed size is one primary-key read of
//! at most ~2·log₂(n) rows. Beyond the sealed size (entries appended since the last seal), the
//! nodes that straddle the sealed boundary are split into their children until each part is
//! either stored or made only of unsealed leaves, whose hashes are read from `audit_entries`; that
//! tail is bounded by what is appended between two seals.

use std::collections::{BTreeSet, HashMap};

use sqlx::{QueryBuilder, Row};

use crate::LedgerError;
use crate::db::{Db, dispatch};
use crate::entry::TreeHead;
use crate::error::Problem;
use crate::merkle::{self, Hash, NodeId};
use crate::store::Ledger;
use crate::writer::to_hash;

/// The size of the ledger and of its largest signed head, read together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeView {
    pub size: u64,
    pub sealed: u64,
}

/// What must be read to compute some nodes: stored nodes, and a range of unsealed leaves.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub stored: BTreeSet<NodeId>,
    /// Leaf indices `[lo, hi)` to read from the entries.
    pub tail: Option<(u64, u64)>,
}

/// Hashes read for a [`Plan`].
#[derive(Debug, Default)]
pub(crate) struct Values {
    pub sealed: u64,
    pub stored: HashMap<NodeId, Hash>,
    /// Leaf index of `tail[0]`.
    pub tail_start: u64,
    pub tail: Vec<Hash>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct NodeRow {
    pub level: i16,
    pub idx: i64,
    pub hash: Vec<u8>,
}

/// The sizes and one (possibly absent) stored node, as [`Ledger::view_and_nodes`] reads them.
#[derive(sqlx::FromRow)]
struct ViewNodeRow {
    size: i64,
    sealed: Option<i64>,
    level: Option<i16>,
    idx: Option<i64>,
    hash: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct LeafRow {
    seq: i64,
    leaf_hash: Vec<u8>,
}

impl Plan {
    /// Adds what computing `node` needs when the first `sealed` leaves are stored as nodes.
    pub(crate) fn add(&mut self, node: NodeId, sealed: u64) {
        if node.end() <= sealed {
            self.stored.insert(node);
        } else if node.start() >= sealed {
            let (lo, hi) = self.tail.unwrap_or((node.start(), node.end()));
            self.tail = Some((lo.min(node.start()), hi.max(node.end())));
        } else if let Some((left, right)) = node.children() {
            self.add(left, sealed);
            self.add(right, sealed);
        }
    }
}

impl Values {
    /// The hash of `node`, from the stored nodes and the tail leaves read for a plan that
    /// included it.
    pub(crate) fn hash(&self, node: NodeId) -> Result<Hash, LedgerError> {
        let missing = || {
            LedgerError::broken(
                node.start().saturating_add(1),
                None,
                Problem::NodeMismatch {
                    level: node.level,
                    index: node.index,
                },
            )
        };
        if node.end() <= self.sealed {
            return self.stored.get(&node).copied().ok_or_else(missing);
        }
        if node.level == 0 {
            let offset = node
                .index
                .checked_sub(self.tail_start)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(missing)?;
            return self.tail.get(offset).copied().ok_or_else(missing);
        }
        let (left, right) = node.children().ok_or_else(missing)?;
        Ok(merkle::node_hash(&self.hash(left)?, &self.hash(right)?))
    }

    /// MTH of the leaves `[start, end)`.
    pub(crate) fn range_root(&self, start: u64, end: u64) -> Result<Hash, LedgerError> {
        let hashes = merkle::subtrees(start, end)?
            .into_iter()
            .map(|node| self.hash(node))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(merkle::fold(&hashes))
    }
}

impl Ledger {
    /// The Merkle root of the first `size` entries: O(log size) stored-node reads up to the
    /// sealed size, plus the leaf hashes of entries appended since the last seal.
    pub async fn tree_head(&self, size: u64) -> Result<TreeHead, LedgerError> {
        let roots = self.range_roots(&[(0, size)], size).await?;
        Ok(TreeHead {
            size,
            root: roots.first().copied().unwrap_or_else(merkle::empty_root),
        })
    }

    /// The inclusion proof of entry `seq` (leaf index `seq - 1`) in the tree of the first
    /// `tree_size` entries, deepest sibling first. Costs what [`Ledger::tree_head`] costs.
    pub async fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        if seq == 0 || seq > tree_size {
            return Err(LedgerError::SeqOutOfRange { seq, tree_size });
        }
        let ranges = merkle::inclusion_ranges(seq - 1, tree_size)?;
        self.range_roots(&ranges, tree_size).await
    }

    /// The consistency proof between the trees of the first `old_size` and `new_size` entries.
    /// Costs what [`Ledger::tree_head`] costs.
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        let ranges = merkle::consistency_ranges(old_size, new_size)?;
        if ranges.is_empty() {
            // Still refuse sizes the ledger does not have.
            self.tree_view_for(new_size).await?;
        }
        self.range_roots(&ranges, new_size).await
    }

    /// The MTH of each leaf range, all within the first `tree_size` entries.
    ///
    /// Assumes first that `tree_size` is sealed, as it is for any signed head, and reads the
    /// ledger's sizes and all the nodes that needs in one statement; only if it is not sealed
    /// does it go back for the nodes and leaves of the unsealed part.
    async fn range_roots(
        &self,
        ranges: &[(u64, u64)],
        tree_size: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        let mut subtrees = Vec::new();
        for &(start, end) in ranges {
            subtrees.extend(merkle::subtrees(start, end)?);
        }
        let mut plan = Plan::default();
        for node in &subtrees {
            plan.add(*node, tree_size);
        }
        let (view, stored) = self.view_and_nodes(&plan.stored).await?;
        if tree_size > view.size {
            return Err(LedgerError::TreeTooLarge {
                requested: tree_size,
                size: view.size,
            });
        }
        let values = if view.sealed >= tree_size {
            Values {
                sealed: tree_size,
                stored,
                ..Values::default()
            }
        } else {
            let mut plan = Plan::default();
            for node in &subtrees {
                plan.add(*node, view.sealed);
            }
            self.read_plan(&plan, view.sealed).await?
        };
        ranges
            .iter()
            .map(|&(start, end)| values.range_root(start, end))
            .collect()
    }

    /// The tree view and the stored `nodes` that exist, in one statement on PostgreSQL (and on
    /// one connection on SQLite, where statements cost no round trip).
    async fn view_and_nodes(
        &self,
        nodes: &BTreeSet<NodeId>,
    ) -> Result<(TreeView, HashMap<NodeId, Hash>), LedgerError> {
        let nodes: Vec<NodeId> = nodes.iter().copied().collect();
        let (size, sealed, rows) = match &self.inner.db {
            Db::Postgres(pool) => {
                let (levels, indexes) = node_arrays(&nodes);
                let rows: Vec<ViewNodeRow> = sqlx::query_as(
                    "SELECT h.size AS size, (SELECT MAX(t.size) FROM tree_heads t) AS sealed, \
                            n.level AS level, n.idx AS idx, n.hash AS hash \
                     FROM ledger_head h LEFT JOIN ( \
                         tree_nodes n JOIN unnest($1::SMALLINT[], $2::BIGINT[]) AS w(level, idx) \
                         ON n.level = w.level AND n.idx = w.idx) ON TRUE \
                     WHERE h.id = 1",
                )
                .bind(levels)
                .bind(indexes)
                .fetch_all(pool)
                .await?;
                split_view_rows(rows)?
            }
            Db::Sqlite(pool) => {
                // The ids as a JSON array of [level, index] pairs, joined through `json_each`.
                let wanted = format!(
                    "[{}]",
                    nodes
                        .iter()
                        .map(|node| format!("[{},{}]", node.level, node.index))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let rows: Vec<ViewNodeRow> = sqlx::query_as(
                    "SELECT h.size AS size, (SELECT MAX(t.size) FROM tree_heads t) AS sealed, \
                            n.level AS level, n.idx AS idx, n.hash AS hash \
                     FROM ledger_head h LEFT JOIN ( \
                         SELECT n.level, n.idx, n.hash FROM json_each($1) AS w \
                         JOIN tree_nodes n ON n.level = w.value ->> 0 AND n.idx = w.value ->> 1 \
                     ) AS n ON 1 = 1 \
                     WHERE h.id = 1",
                )
                .bind(wanted)
                .fetch_all(pool)
                .await?;
                split_view_rows(rows)?
            }
        };
        Ok((view_from(size, sealed)?, nodes_from_rows(rows)?))
    }

    /// The tree view, checking that `tree_size` is not larger than the ledger.
    async fn tree_view_for(&self, tree_size: u64) -> Result<TreeView, LedgerError> {
        let view = self.tree_view().await?;
        if tree_size > view.size {
            return Err(LedgerError::TreeTooLarge {
                requested: tree_size,
                size: view.size,
            });
        }
        Ok(view)
    }

    /// The ledger size and sealed size, in one statement.
    pub(crate) async fn tree_view(&self) -> Result<TreeView, LedgerError> {
        let (size, sealed): (i64, Option<i64>) = dispatch!(&self.inner.db, |pool, dialect| {
            let row = sqlx::query(
                "SELECT h.size AS size, (SELECT MAX(t.size) FROM tree_heads t) AS sealed \
                 FROM ledger_head h WHERE h.id = 1",
            )
            .fetch_one(pool)
            .await?;
            (row.try_get("size")?, row.try_get("sealed")?)
        });
        view_from(size, sealed)
    }

    /// Reads the stored nodes and tail leaves `plan` needs.
    pub(crate) async fn read_plan(&self, plan: &Plan, sealed: u64) -> Result<Values, LedgerError> {
        let nodes: Vec<NodeId> = plan.stored.iter().copied().collect();
        let (node_rows, leaf_rows) = dispatch!(&self.inner.db, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            let mut node_rows: Vec<NodeRow> = Vec::new();
            for chunk in nodes.chunks(NODES_PER_SELECT) {
                node_rows.extend(
                    node_query(chunk)
                        .build_query_as::<NodeRow>()
                        .fetch_all(&mut *conn)
                        .await?,
                );
            }
            let mut leaf_rows: Vec<LeafRow> = Vec::new();
            if let Some((lo, hi)) = plan.tail {
                leaf_rows = sqlx::query_as(
                    "SELECT seq, leaf_hash FROM audit_entries \
                     WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(i64::try_from(lo).unwrap_or(i64::MAX))
                .bind(i64::try_from(hi).unwrap_or(i64::MAX))
                .fetch_all(&mut *conn)
                .await?;
            }
            (node_rows, leaf_rows)
        });
        let mut values = Values {
            sealed,
            stored: nodes_from_rows(node_rows)?,
            ..Values::default()
        };
        if let Some((lo, hi)) = plan.tail {
            values.tail_start = lo;
            values.tail = dense_leaves(lo, hi, leaf_rows)?;
        }
        Ok(values)
    }
}

/// A [`TreeView`] from the stored sizes.
fn view_from(size: i64, sealed: Option<i64>) -> Result<TreeView, LedgerError> {
    let malformed = |what| LedgerError::broken(0, None, Problem::Malformed { what });
    let size = u64::try_from(size).map_err(|_| malformed("head size"))?;
    let sealed = u64::try_from(sealed.unwrap_or(0)).map_err(|_| malformed("tree head size"))?;
    // A sealed size beyond the ledger means entries were removed; the nodes still describe
    // the signed tree, so proofs for sizes the ledger has stay correct. Verify reports it.
    Ok(TreeView {
        size,
        sealed: sealed.min(size),
    })
}

/// The sizes, and the node rows, from [`Ledger::view_and_nodes`]'s result.
fn split_view_rows(
    rows: Vec<ViewNodeRow>,
) -> Result<(i64, Option<i64>, Vec<NodeRow>), LedgerError> {
    let first = rows.first().ok_or(LedgerError::broken(
        0,
        None,
        Problem::Malformed { what: "head row" },
    ))?;
    let (size, sealed) = (first.size, first.sealed);
    let nodes = rows
        .into_iter()
        .filter_map(|row| {
            Some(NodeRow {
                level: row.level?,
                idx: row.idx?,
                hash: row.hash?,
            })
        })
        .collect();
    Ok((size, sealed, nodes))
}

/// Node ids as the two arrays PostgreSQL's `unnest` takes.
fn node_arrays(nodes: &[NodeId]) -> (Vec<i16>, Vec<i64>) {
    nodes
        .iter()
        .map(|node| {
            (
                i16::from(node.level),
                i64::try_from(node.index).unwrap_or(i64::MAX),
            )
        })
        .unzip()
}

/// Stored nodes per `SELECT`: two bind parameters each, far below both backends' limits.
pub(crate) const NODES_PER_SELECT: usize = 500;

/// `SELECT level, idx, hash FROM tree_nodes WHERE (level = … AND idx = …) OR …`.
pub(crate) fn node_query<DB>(nodes: &[NodeId]) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    DB::Arguments: Default,
    for<'q> i16: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT level, idx, hash FROM tree_nodes WHERE ");
    if nodes.is_empty() {
        query.push("1 = 0");
    }
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query
            .push("(level = ")
            .push_bind(i16::from(node.level))
            .push(" AND idx = ")
            .push_bind(i64::try_from(node.index).unwrap_or(i64::MAX))
            .push(")");
    }
    query
}

/// Turns node rows into a map, refusing malformed ones.
pub(crate) fn nodes_from_rows(rows: Vec<NodeRow>) -> Result<HashMap<NodeId, Hash>, LedgerError> {
    rows.into_iter()
        .map(|row| {
            let node = NodeId {
                level: u8::try_from(row.level).unwrap_or(u8::MAX),
                index: u64::try_from(row.idx).unwrap_or(u64::MAX),
            };
            let hash = to_hash(row.hash).ok_or_else(|| {
                LedgerError::broken(
                    node.start().saturating_add(1),
                    None,
                    Problem::Malformed { what: "tree node" },
                )
            })?;
            Ok((node, hash))
        })
        .collect()
}

/// The leaf hashes of leaf indices `[lo, hi)` (seqs `lo + 1 ..= hi`), checked to be dense.
fn dense_leaves(lo: u64, hi: u64, rows: Vec<LeafRow>) -> Result<Vec<Hash>, LedgerError> {
    let mut leaves = Vec::with_capacity(rows.len());
    let mut expected = lo + 1;
    for row in rows {
        let seq = u64::try_from(row.seq).unwrap_or(0);
        if seq != expected {
            return Err(LedgerError::broken(
                expected,
                None,
                Problem::SequenceGap { next: seq },
            ));
        }
        leaves.push(to_hash(row.leaf_hash).ok_or(LedgerError::broken(
            seq,
            None,
            Problem::Malformed { what: "leaf hash" },
        ))?);
        expected += 1;
    }
    if expected <= hi {
        return Err(LedgerError::broken(
            expected,
            None,
            Problem::HeadSizeMismatch { head_size: hi },
        ));
    }
    Ok(leaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    /// The nodes a sealer would have stored for the first `sealed` of `leaves`.
    fn sealed_values(leaves: &[Hash], sealed: u64, plan: &Plan) -> Values {
        let mut builder = merkle::RootBuilder::new();
        let mut all = HashMap::new();
        for leaf in leaves.iter().take(sealed as usize) {
            builder.push_with(*leaf, |node, hash| {
                all.insert(node, *hash);
            });
        }
        let stored = plan.stored.iter().map(|node| (*node, all[node])).collect();
        let (tail_start, tail) = match plan.tail {
            Some((lo, hi)) => (lo, leaves[lo as usize..hi as usize].to_vec()),
            None => (0, Vec::new()),
        };
        Values {
            sealed,
            stored,
            tail_start,
            tail,
        }
    }

    fn from_nodes(ranges: &[(u64, u64)], leaves: &[Hash], sealed: u64) -> Vec<Hash> {
        let mut plan = Plan::default();
        for &(start, end) in ranges {
            for node in merkle::subtrees(start, end).unwrap() {
                plan.add(node, sealed);
            }
        }
        let values = sealed_values(leaves, sealed, &plan);
        ranges
            .iter()
            .map(|&(s, e)| values.range_root(s, e).unwrap())
            .collect()
    }

    #[test]
    fn proofs_from_nodes_equal_proofs_from_leaves_for_every_seal_point() {
        let all = leaves(40);
        for size in 1..=40u64 {
            let tree = &all[..size as usize];
            for sealed in [0, 1, size / 3, size / 2, size - 1, size] {
                assert_eq!(
                    from_nodes(&[(0, size)], tree, sealed),
                    vec![merkle::root(tree)],
                    "root of {size} sealed at {sealed}"
                );
                for index in 0..size {
                    let ranges = merkle::inclusion_ranges(index, size).unwrap();
                    assert_eq!(
                        from_nodes(&ranges, tree, sealed),
                        merkle::inclusion_proof(index, tree).unwrap(),
                        "inclusion {index} in {size} sealed at {sealed}"
                    );
                }
                for old in 0..=size {
                    let ranges = merkle::consistency_ranges(old, size).unwrap();
                    assert_eq!(
                        from_nodes(&ranges, tree, sealed),
                        merkle::consistency_proof(old, tree).unwrap(),
                        "consistency {old}..{size} sealed at {sealed}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_sealed_proof_reads_only_logarithmically_many_nodes() {
        let size = 1_000_000u64;
        for index in [0, 1, 499_999, 524_288, size - 1] {
            let mut plan = Plan::default();
            for (start, end) in merkle::inclusion_ranges(index, size).unwrap() {
                for node in merkle::subtrees(start, end).unwrap() {
                    plan.add(node, size);
                }
            }
            assert!(plan.tail.is_none());
            assert!(plan.stored.len() <= 40, "{} nodes", plan.stored.len());
        }
        // With 1000 unsealed entries, the tail read is bounded by them.
        let mut plan = Plan::default();
        for node in merkle::subtrees(0, size).unwrap() {
            plan.add(node, size - 1000);
        }
        let (lo, hi) = plan.tail.unwrap();
        assert!(lo >= size - 1000 && hi == size, "{lo}..{hi}");
        assert!(plan.stored.len() <= 40);
    }

    #[test]
    fn missing_nodes_are_reported_not_panics() {
        let values = Values {
            sealed: 8,
            ..Values::default()
        };
        assert_eq!(
            values.range_root(0, 8).unwrap_err(),
            LedgerError::broken(1, None, Problem::NodeMismatch { level: 3, index: 0 })
        );
        let values = Values {
            sealed: 0,
            tail_start: 4,
            tail: leaves(2),
            ..Values::default()
        };
        assert!(values.range_root(0, 8).is_err());
    }
}
