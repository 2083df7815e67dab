//! s.45 restrictions and the search columns filled in for entries older than them.
//!
//! Neither changes what an entry says. A restriction is a row beside the ledger, named by the id
//! of the ledger entry that recorded it (the caller appends that entry); the backfill writes two
//! search columns that the schema lets be written once, for entries recorded before the
//! columns existed.

use std::collections::HashMap;

use sqlx::Row;
use time::OffsetDateTime;

use crate::db::dispatch;
use crate::entry::{from_nanos, to_nanos};
use crate::error::Problem;
use crate::{Ledger, LedgerError};

/// Entries read and written per backfill transaction, so appends wait at most for one batch.
const BACKFILL_BATCH: i64 = 1000;

/// A disclosure withheld from subject access reports until a date (DPA 2018 s.45(4)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    /// The id of the ledger entry that recorded the restriction.
    pub id: String,
    /// The entry restricted.
    pub seq: u64,
    /// Withheld until this time; disclosed again from it.
    pub until: OffsetDateTime,
    /// Why: the investigation it protects, in the restricting DPO's words.
    pub reason: String,
    /// The agency of the DPO who restricted it.
    pub agency: String,
    /// That DPO's subject id.
    pub restricted_by: String,
    /// When.
    pub recorded_at: OffsetDateTime,
}

/// The search columns an entry's body implies, from [`Ledger::backfill_index`]'s caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexUpdate {
    /// See [`EntryIndex::provider`](crate::EntryIndex::provider).
    pub provider: String,
    /// See [`EntryIndex::break_glass`](crate::EntryIndex::break_glass).
    pub break_glass: bool,
}

impl Restriction {
    /// Whether the restriction still withholds its entry at `now`.
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        now < self.until
    }
}

impl Ledger {
    /// Stores `restriction` without honouring it: call before appending the ledger entry that
    /// records it, then [`commit_restriction`](Self::commit_restriction) once that entry is
    /// durable, or [`abandon_restriction`](Self::abandon_restriction) if the append failed.
    pub async fn reserve_restriction(&self, r: &Restriction) -> Result<(), LedgerError> {
        let invalid = |reason: &'static str| LedgerError::InvalidEntry {
            entry_id: r.id.clone(),
            reason,
        };
        let seq = i64::try_from(r.seq).map_err(|_| invalid("sequence out of range"))?;
        let until = to_nanos(r.until).ok_or_else(|| invalid("restriction end out of range"))?;
        let at = to_nanos(r.recorded_at).ok_or_else(|| invalid("restriction time out of range"))?;
        dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query(
                "INSERT INTO entry_restrictions (restriction_id, seq, until_at, reason, agency, \
                 restricted_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&r.id)
            .bind(seq)
            .bind(until)
            .bind(&r.reason)
            .bind(&r.agency)
            .bind(&r.restricted_by)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Puts a reserved restriction in force.
    pub async fn commit_restriction(&self, id: &str) -> Result<(), LedgerError> {
        dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query("UPDATE entry_restrictions SET committed = TRUE WHERE restriction_id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes a reserved restriction whose ledger entry could not be appended.
    pub async fn abandon_restriction(&self, id: &str) -> Result<(), LedgerError> {
        dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query(
                "DELETE FROM entry_restrictions WHERE restriction_id = $1 AND NOT committed",
            )
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Lifts every restriction of entry `seq`, naming the ledger entry that recorded the lift
    /// (append it first: a lift whose record failed must not take effect). Returns how many
    /// were in force or pending.
    pub async fn lift_restrictions(&self, seq: u64, lifted_by: &str) -> Result<u64, LedgerError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(0);
        };
        let lifted = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query(
                "UPDATE entry_restrictions SET lifted_by = $1 \
                 WHERE seq = $2 AND committed AND lifted_by IS NULL",
            )
            .bind(lifted_by)
            .bind(seq)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(lifted)
    }

    /// The restriction of each of `seqs` that is committed and not lifted, the newest where
    /// there are several, whether or not its date has passed (see [`Restriction::in_force`]).
    pub async fn restrictions(
        &self,
        seqs: &[u64],
    ) -> Result<HashMap<u64, Restriction>, LedgerError> {
        let mut found: HashMap<u64, Restriction> = HashMap::new();
        let seqs: Vec<i64> = seqs.iter().filter_map(|s| i64::try_from(*s).ok()).collect();
        for chunk in seqs.chunks(500) {
            let rows = dispatch!(&self.inner.db, |pool, dialect| {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT restriction_id, seq, until_at, reason, agency, restricted_by, \
                     recorded_at FROM entry_restrictions \
                     WHERE committed AND lifted_by IS NULL AND seq IN (",
                );
                let mut list = query.separated(", ");
                for seq in chunk {
                    list.push_bind(*seq);
                }
                list.push_unseparated(")");
                let mut rows = Vec::new();
                for row in query.build().fetch_all(pool).await? {
                    rows.push((
                        row.try_get::<String, _>("restriction_id")?,
                        row.try_get::<i64, _>("seq")?,
                        row.try_get::<i64, _>("until_at")?,
                        row.try_get::<String, _>("reason")?,
                        row.try_get::<String, _>("agency")?,
                        row.try_get::<String, _>("restricted_by")?,
                        row.try_get::<i64, _>("recorded_at")?,
                    ));
                }
                rows
            });
            for (id, seq, until, reason, agency, restricted_by, at) in rows {
                let seq = u64::try_from(seq).unwrap_or(0);
                let malformed = |what| LedgerError::broken(seq, None, Problem::Malformed { what });
                let r = Restriction {
                    id,
                    seq,
                    until: from_nanos(until).ok_or_else(|| malformed("restriction end"))?,
                    reason,
                    agency,
                    restricted_by,
                    recorded_at: from_nanos(at).ok_or_else(|| malformed("restriction time"))?,
                };
                match found.get(&seq) {
                    Some(known) if known.recorded_at >= r.recorded_at => {}
                    _ => {
                        found.insert(seq, r);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether [`backfill_index`](Self::backfill_index) has entries left to read.
    pub async fn index_backfill_pending(&self) -> Result<bool, LedgerError> {
        let pending = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query("SELECT next_seq, end_seq FROM ledger_index_backfill WHERE id = 1")
                .fetch_optional(pool)
                .await?
                .map(|row| -> Result<bool, sqlx::Error> {
                    Ok(row.try_get::<i64, _>("next_seq")? <= row.try_get::<i64, _>("end_seq")?)
                })
                .transpose()?
                .unwrap_or(false)
        });
        Ok(pending)
    }

    /// Fills in the providing agency and break-glass columns of entries recorded before the
    /// ledger had them, `derive`d from each body; `None` (a body the caller cannot read) leaves
    /// the defaults. Resumable and safe to run from several processes at once: progress is a
    /// row locked by each batch. Returns how many entries this call read; zero once done.
    pub async fn backfill_index<F>(&self, derive: F) -> Result<u64, LedgerError>
    where
        F: Fn(&[u8]) -> Option<IndexUpdate>,
    {
        let mut read = 0u64;
        loop {
            let done = dispatch!(&self.inner.db, |pool, dialect| {
                let mut tx = pool.begin_with(dialect.begin_write).await?;
                let lock = if dialect.seal_lock.is_some() {
                    "SELECT next_seq, end_seq FROM ledger_index_backfill WHERE id = 1 FOR UPDATE"
                } else {
                    "SELECT next_seq, end_seq FROM ledger_index_backfill WHERE id = 1"
                };
                let row = sqlx::query(lock).fetch_optional(&mut *tx).await?;
                let Some(row) = row else {
                    return Ok(read);
                };
                let next: i64 = row.try_get("next_seq")?;
                let end: i64 = row.try_get("end_seq")?;
                if next > end {
                    tx.commit().await?;
                    true
                } else {
                    let last = end.min(next.saturating_add(BACKFILL_BATCH - 1));
                    let rows = sqlx::query(
                        "SELECT seq, body FROM audit_entries WHERE seq >= $1 AND seq <= $2",
                    )
                    .bind(next)
                    .bind(last)
                    .fetch_all(&mut *tx)
                    .await?;
                    for row in rows {
                        let seq: i64 = row.try_get("seq")?;
                        let body: Vec<u8> = row.try_get("body")?;
                        read += 1;
                        let Some(update) = derive(&body) else {
                            continue;
                        };
                        if update == IndexUpdate::default() {
                            continue;
                        }
                        sqlx::query(
                            "UPDATE audit_entries SET provider = $1, break_glass = $2 \
                             WHERE seq = $3",
                        )
                        .bind(&update.provider)
                        .bind(update.break_glass)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("UPDATE ledger_index_backfill SET next_seq = $1 WHERE id = 1")
                        .bind(last + 1)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    false
                }
            });
            if done {
                return Ok(read);
            }
        }
    }
}
