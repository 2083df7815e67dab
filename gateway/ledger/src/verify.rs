//! [`Ledger::verify`]: recompute the whole ledger from its bodies, in one database snapshot.

use std::collections::{BTreeMap, VecDeque};

use sqlx::{QueryBuilder, Row};

use crate::LedgerError;
use crate::check::{Checker, sort_witness};
use crate::db::dispatch;
use crate::entry::VerifyReport;
use crate::error::Problem;
use crate::merkle::{self, Hash, NodeId};
use crate::seal::HeadRow;
use crate::sign::{HeadVerifier, SignedTreeHead};
use crate::store::Ledger;
use crate::tree::{NODES_PER_SELECT, NodeRow, node_query, nodes_from_rows};
use crate::writer::to_hash;

/// Entries [`Ledger::verify`] reads per query: bounds its memory whatever the ledger's size.
const VERIFY_PAGE: i64 = 1000;

/// What verify needs of a row.
#[derive(sqlx::FromRow)]
struct ChainRow {
    seq: i64,
    entry_id: String,
    body: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

impl Ledger {
    /// Recomputes every leaf hash from its body, the whole chain and the Merkle tree, in one
    /// database snapshot, reading a page at a time so memory stays bounded. Returns the first
    /// problem as [`LedgerError::Broken`] naming the entry. Checks, in order: dense sequence
    /// numbers, leaf hash, chain hash, the root of each signed head as its size is reached, the
    /// stored tree nodes, then that no signed head is beyond the last entry and that the head row
    /// matches the last entry.
    ///
    /// Signatures are not checked (that needs the public key: [`Ledger::verify_signed`]).
    pub async fn verify(&self) -> Result<VerifyReport, LedgerError> {
        self.verify_inner(None, &[]).await
    }

    /// [`Ledger::verify`], also checking every signed head's signature with `public_key`, and
    /// the ledger against `witness`, heads published outside the database
    /// ([`crate::read_witness_file`]; pass `&[]` for none). Only this catches a database rewritten
    /// by someone who also re-signed it with their own key, or restored from an older backup.
    pub async fn verify_signed(
        &self,
        public_key: &impl HeadVerifier,
        witness: &[SignedTreeHead],
    ) -> Result<VerifyReport, LedgerError> {
        let witness = sort_witness(witness.to_vec())?;
        self.verify_inner(Some(public_key), &witness).await
    }

    async fn verify_inner(
        &self,
        key: Option<&dyn HeadVerifier>,
        witness: &[SignedTreeHead],
    ) -> Result<VerifyReport, LedgerError> {
        let mut checker = Checker::new(key, witness);
        let (head_size, head_chain, last) = dispatch!(&self.inner.db, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_snapshot).await?;
            let head = sqlx::query("SELECT size, chain_hash FROM ledger_head WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
            let head_size: i64 = head.try_get("size")?;
            let head_chain = to_hash(head.try_get("chain_hash")?).ok_or(LedgerError::broken(
                0,
                None,
                Problem::Malformed {
                    what: "head chain hash",
                },
            ))?;
            let sealed: Option<i64> = sqlx::query_scalar("SELECT MAX(size) FROM tree_heads")
                .fetch_one(&mut *tx)
                .await?;
            let sealed = u64::try_from(sealed.unwrap_or(0)).unwrap_or(0);
            let checkpoint: Option<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT size, chain_hash FROM ledger_checkpoint WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;

            let mut base = 0u64;
            if let Some((size, chain)) = checkpoint {
                let malformed = || {
                    LedgerError::broken(
                        0,
                        None,
                        Problem::Malformed {
                            what: "retention checkpoint",
                        },
                    )
                };
                base = u64::try_from(size).map_err(|_| malformed())?;
                let chain = to_hash(chain).ok_or_else(malformed)?;
                let head: Option<HeadRow> = sqlx::query_as(
                    "SELECT size, timestamp, root, key_id, signature FROM tree_heads \
                     WHERE size = $1",
                )
                .bind(size)
                .fetch_optional(&mut *tx)
                .await?;
                let head = head.ok_or_else(malformed)?.into_head()?;
                let ids = merkle::subtrees(0, base)?;
                let mut rows: Vec<NodeRow> = Vec::new();
                for chunk in ids.chunks(NODES_PER_SELECT) {
                    rows.extend(
                        node_query(chunk)
                            .build_query_as::<NodeRow>()
                            .fetch_all(&mut *tx)
                            .await?,
                    );
                }
                let stored = nodes_from_rows(rows)?;
                let frontier = ids
                    .iter()
                    .map(|node| stored.get(node).copied().ok_or_else(|| missing_node(*node)))
                    .collect::<Result<Vec<Hash>, _>>()?;
                checker.checkpoint(&head, chain, &frontier)?;
                // Heads of pruned sizes: only their signatures can still be checked.
                let mut after = 0i64;
                loop {
                    let rows: Vec<HeadRow> = sqlx::query_as(
                        "SELECT size, timestamp, root, key_id, signature FROM tree_heads \
                         WHERE size > $1 AND size < $2 ORDER BY size LIMIT $3",
                    )
                    .bind(after)
                    .bind(size)
                    .bind(VERIFY_PAGE)
                    .fetch_all(&mut *tx)
                    .await?;
                    let Some(last) = rows.last() else { break };
                    after = last.size;
                    for row in rows {
                        checker.pruned_head(&row.into_head()?)?;
                    }
                }
            }
            if sealed > base {
                checker.collect_nodes();
            }

            let mut heads: VecDeque<SignedTreeHead> = VecDeque::new();
            let mut heads_after = i64::try_from(base).unwrap_or(i64::MAX);
            let mut heads_done = false;
            let mut last: Option<(u64, String)> = None;
            loop {
                let after = last.as_ref().map_or(base, |(seq, _)| *seq);
                let rows: Vec<ChainRow> = sqlx::query_as(
                    "SELECT seq, entry_id, body, leaf_hash, chain_hash FROM audit_entries \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .bind(VERIFY_PAGE)
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    let seq = u64::try_from(row.seq).unwrap_or(0);
                    let malformed = |what| {
                        LedgerError::broken(seq, Some(&row.entry_id), Problem::Malformed { what })
                    };
                    let stored_leaf =
                        to_hash(row.leaf_hash).ok_or_else(|| malformed("leaf hash"))?;
                    let stored_chain =
                        to_hash(row.chain_hash).ok_or_else(|| malformed("chain hash"))?;
                    checker.entry(seq, &row.entry_id, &row.body, &stored_leaf, &stored_chain)?;
                    loop {
                        if heads.is_empty() && !heads_done {
                            let rows: Vec<HeadRow> = sqlx::query_as(
                                "SELECT size, timestamp, root, key_id, signature FROM tree_heads \
                                 WHERE size > $1 ORDER BY size LIMIT $2",
                            )
                            .bind(heads_after)
                            .bind(VERIFY_PAGE)
                            .fetch_all(&mut *tx)
                            .await?;
                            heads_done = rows.is_empty();
                            if let Some(last) = rows.last() {
                                heads_after = last.size;
                            }
                            for row in rows {
                                heads.push_back(row.into_head()?);
                            }
                        }
                        match heads.front() {
                            Some(head) if head.size <= seq => {
                                checker.head(head)?;
                                heads.pop_front();
                            }
                            _ => break,
                        }
                    }
                    last = Some((seq, row.entry_id));
                }
                let nodes: Vec<(NodeId, Hash)> = checker
                    .take_nodes()
                    .into_iter()
                    .filter(|(node, _)| node.end() <= sealed)
                    .collect();
                if !nodes.is_empty() {
                    let rows: Vec<NodeRow> = node_range_query(&nodes)
                        .build_query_as::<NodeRow>()
                        .fetch_all(&mut *tx)
                        .await?;
                    compare_nodes(&nodes, rows)?;
                }
            }
            // Signed heads beyond the last entry: the entries they cover are gone.
            loop {
                for head in heads.drain(..) {
                    checker.head(&head)?;
                }
                if heads_done {
                    break;
                }
                let rows: Vec<HeadRow> = sqlx::query_as(
                    "SELECT size, timestamp, root, key_id, signature FROM tree_heads \
                     WHERE size > $1 ORDER BY size LIMIT $2",
                )
                .bind(heads_after)
                .bind(VERIFY_PAGE)
                .fetch_all(&mut *tx)
                .await?;
                heads_done = rows.is_empty();
                if let Some(last) = rows.last() {
                    heads_after = last.size;
                }
                for row in rows {
                    heads.push_back(row.into_head()?);
                }
            }
            // Ends the read transaction; a read-only snapshot has nothing to commit.
            tx.rollback().await?;
            (head_size, head_chain, last)
        });

        let entries = checker.size();
        let (last_seq, last_id) = match &last {
            Some((seq, id)) => (*seq, Some(id.as_str())),
            None => (entries, None),
        };
        if u64::try_from(head_size).ok() != Some(entries) {
            return Err(LedgerError::broken(
                last_seq,
                last_id,
                Problem::HeadSizeMismatch {
                    head_size: u64::try_from(head_size).unwrap_or(0),
                },
            ));
        }
        if head_chain != checker.chain() {
            return Err(LedgerError::broken(
                last_seq,
                last_id,
                Problem::HeadChainMismatch,
            ));
        }
        let checked = checker.finish()?;
        Ok(VerifyReport {
            entries: checked.size + 1 - checked.first_seq,
            head: checked.chain,
            root: checked.root,
            first_seq: checked.first_seq,
            heads: checked.heads,
            latest_head: checked.latest_head,
            witnessed: checked.witnessed,
        })
    }
}

fn missing_node(node: NodeId) -> LedgerError {
    LedgerError::broken(
        node.start().saturating_add(1),
        None,
        Problem::NodeMismatch {
            level: node.level,
            index: node.index,
        },
    )
}

/// Reads the stored nodes in the index range of each level that `nodes` spans.
fn node_range_query<DB>(nodes: &[(NodeId, Hash)]) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    DB::Arguments: Default,
    for<'q> i16: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut ranges: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
    for (node, _) in nodes {
        let range = ranges.entry(node.level).or_insert((node.index, node.index));
        range.0 = range.0.min(node.index);
        range.1 = range.1.max(node.index);
    }
    let mut query = QueryBuilder::new("SELECT level, idx, hash FROM tree_nodes WHERE ");
    for (i, (level, (lo, hi))) in ranges.into_iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query
            .push("(level = ")
            .push_bind(i16::from(level))
            .push(" AND idx >= ")
            .push_bind(i64::try_from(lo).unwrap_or(i64::MAX))
            .push(" AND idx <= ")
            .push_bind(i64::try_from(hi).unwrap_or(i64::MAX))
            .push(")");
    }
    query
}

/// The first of `nodes` (in the order the tree completed them) whose stored copy is missing or
/// different.
fn compare_nodes(nodes: &[(NodeId, Hash)], rows: Vec<NodeRow>) -> Result<(), LedgerError> {
    let stored = nodes_from_rows(rows)?;
    for (node, hash) in nodes {
        if stored.get(node) != Some(hash) {
            return Err(missing_node(*node));
        }
    }
    Ok(())
}
