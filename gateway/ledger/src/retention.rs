//! Retention: removing old entries without losing the ability to verify the rest.
//!
//! # Policy
//!
//! The ledger never edits an entry. It may *remove the oldest entries*, as a prefix, once they are
//! past the retention period the sharing partners' information sharing agreements set for audit
//! logs (DPA 2018 s.62 requires the logs, not their keeping forever; a period such as six years
//! is typical). Entries are removed only up to a **signed checkpoint**: a tree head the sealer
//! signed, whose size is the last entry removed. The procedure, which a scheduled job (or the
//! operator) runs:
//!
//! 1. choose the checkpoint: [`Ledger::retention_checkpoint`]`(now - period)` gives the largest
//!    signed head signed before the cut-off, so every entry it covers was appended before it;
//! 2. archive the entries being removed: [`Ledger::export_file`] (verifiable offline with the
//!    public key, and by itself evidence of what is removed), kept for as long as the agreements
//!    require the archive;
//! 3. [`Ledger::prune_before`]`(checkpoint.size + 1, &checkpoint)`.
//!
//! # What is kept
//!
//! - every signed tree head, including the checkpoint's, so heads given to outsiders stay
//!   checkable;
//! - every stored Merkle node, leaves included (64 bytes or so per removed entry), so inclusion
//!   proofs for the remaining entries, and consistency proofs between any two signed heads,
//!   still work;
//! - a one-row `ledger_checkpoint` with the checkpoint's size and the chain hash after it, where
//!   [`Ledger::verify`] and exports resume. Verification then starts from the stored frontier of
//!   the checkpoint (the O(log n) nodes that fold to its signed root, checked against it) and the
//!   chain hash, so the remaining entries are checked exactly as before, and the signed heads
//!   after the checkpoint are recomputed from them.
//!
//! What goes: the bodies, search columns and subject rows of entries `1..=checkpoint.size`. The
//! database triggers still refuse any other deletion. The last entry is always kept (appends
//! check the head row against it). An entry id of a removed entry could be recorded again; the
//! gateway's ids are UUIDv7 and never repeat.
//!
//! Removal happens in one transaction. A checkpoint at or below the current one removes nothing.

use sqlx::Row;
use time::OffsetDateTime;

use crate::LedgerError;
use crate::db::dispatch;
use crate::merkle;
use crate::seal::HeadRow;
use crate::sign::SignedTreeHead;
use crate::store::Ledger;
use crate::tree::{NODES_PER_SELECT, NodeRow, node_query, nodes_from_rows};
use crate::writer::to_hash;

/// What [`Ledger::prune_before`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Entries up to and including this one are now gone.
    pub pruned_through: u64,
    /// Entries removed by this call.
    pub removed: u64,
}

impl Ledger {
    /// Removes entries `1..seq` under the signed `checkpoint` of size `seq - 1`, which must be a
    /// head this ledger's sealer signed. See the [module docs](self) for the policy and what is
    /// kept.
    pub async fn prune_before(
        &self,
        seq: u64,
        checkpoint: &SignedTreeHead,
    ) -> Result<PruneReport, LedgerError> {
        let invalid = |reason| Err(LedgerError::InvalidCheckpoint { reason });
        if seq < 2 || checkpoint.size != seq - 1 {
            return invalid("the checkpoint's size must be one less than the first entry kept");
        }
        let size = i64::try_from(checkpoint.size).unwrap_or(i64::MAX);
        dispatch!(&self.inner.db, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            if let Some(lock) = dialect.seal_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let ledger_size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
            if size >= ledger_size {
                return invalid("the last entry is always kept");
            }
            let stored: Option<HeadRow> = sqlx::query_as(
                "SELECT size, timestamp, root, key_id, signature FROM tree_heads WHERE size = $1",
            )
            .bind(size)
            .fetch_optional(&mut *tx)
            .await?;
            if stored.map(HeadRow::into_head).transpose()? != Some(*checkpoint) {
                return invalid("it is not a signed head of this ledger");
            }
            let current: Option<i64> =
                sqlx::query_scalar("SELECT size FROM ledger_checkpoint WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(current) = current
                && current >= size
            {
                tx.rollback().await?;
                return Ok(PruneReport {
                    pruned_through: u64::try_from(current).unwrap_or(0),
                    removed: 0,
                });
            }

            // The frontier verification will start from must be stored and match the signature.
            let ids = merkle::subtrees(0, checkpoint.size)?;
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
            let frontier: Option<Vec<merkle::Hash>> =
                ids.iter().map(|id| stored.get(id).copied()).collect();
            if frontier.as_deref().map(merkle::fold) != Some(checkpoint.root) {
                return invalid("the tree nodes under it are not stored");
            }
            let chain = sqlx::query("SELECT chain_hash FROM audit_entries WHERE seq = $1")
                .bind(size)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get::<Vec<u8>, _>("chain_hash"))
                .transpose()?
                .and_then(to_hash);
            let Some(chain) = chain else {
                return invalid("its last entry is missing");
            };

            sqlx::query(
                "INSERT INTO ledger_checkpoint (id, size, chain_hash) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET size = excluded.size, \
                 chain_hash = excluded.chain_hash",
            )
            .bind(size)
            .bind(chain.to_vec())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM audit_subjects WHERE seq <= $1")
                .bind(size)
                .execute(&mut *tx)
                .await?;
            let removed = sqlx::query("DELETE FROM audit_entries WHERE seq <= $1")
                .bind(size)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            tracing::info!(pruned_through = size, removed, "ledger entries pruned");
            Ok(PruneReport {
                pruned_through: checkpoint.size,
                removed,
            })
        })
    }

    /// The checkpoint retention would use for the cut-off `signed_before`: the largest signed
    /// head signed before it that is not the whole ledger. `None` if there is none.
    pub async fn retention_checkpoint(
        &self,
        signed_before: OffsetDateTime,
    ) -> Result<Option<SignedTreeHead>, LedgerError> {
        let millis = i64::try_from(signed_before.unix_timestamp_nanos() / 1_000_000).unwrap_or(
            if signed_before.year() < 1970 {
                0
            } else {
                i64::MAX
            },
        );
        let row: Option<HeadRow> = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query_as(
                "SELECT size, timestamp, root, key_id, signature FROM tree_heads \
                 WHERE timestamp < $1 AND size < (SELECT size FROM ledger_head WHERE id = 1) \
                 ORDER BY size DESC LIMIT 1",
            )
            .bind(millis)
            .fetch_optional(pool)
            .await?
        });
        row.map(HeadRow::into_head).transpose()
    }
}
