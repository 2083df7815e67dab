//! Group commit: one task writes every append, many appends per transaction.
//!
//! Each commit costs an fsync (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`),
//! which dominates the cost of an append. Appends that arrive while a transaction is committing
//! wait in a bounded queue and all go into the next transaction, so throughput grows with load
//! while each caller still gets its answer only after its own entry is on disk. There is no timer:
//! a lone append is written at once.
//!
//! The single writer also orders appends within the process; the head-row lock orders them
//! across processes (see [`crate::db::Dialect`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{QueryBuilder, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::LedgerError;
use crate::chain::{GENESIS, chain_hash};
use crate::db::{Db, dispatch};
use crate::entry::{EntryIndex, LedgerStats, NewEntry, Receipt, from_nanos, to_nanos};
use crate::error::Problem;
use crate::merkle::{Hash, leaf_hash};

/// Longest accepted entry id, in bytes.
const MAX_ENTRY_ID_LEN: usize = 256;

/// Rows per `INSERT` into `audit_subjects`, well under both backends' bind-parameter limits.
const SUBJECT_ROWS_PER_INSERT: usize = 1000;

/// One queued append and where to send its answer.
#[derive(Debug)]
pub(crate) struct Request {
    pub entry: Prepared,
    pub reply: oneshot::Sender<Result<Receipt, LedgerError>>,
}

/// An entry that has been validated and hashed by its caller's task, so the writer only writes.
#[derive(Debug)]
pub(crate) struct Prepared {
    entry_id: String,
    recorded_at: OffsetDateTime,
    recorded_at_nanos: i64,
    body: Vec<u8>,
    leaf_hash: Hash,
    index: EntryIndex,
}

/// The writer's counters, shared with [`crate::Ledger::stats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    transactions: AtomicU64,
    failed_transactions: AtomicU64,
    entries: AtomicU64,
    largest_batch: AtomicU64,
}

/// A row of `audit_entries` as the writer needs it to answer a repeated entry id.
#[derive(sqlx::FromRow)]
struct ExistingRow {
    seq: i64,
    entry_id: String,
    recorded_at: i64,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

/// The last entry and whatever follows it, to check the head against.
#[derive(sqlx::FromRow)]
struct TailRow {
    seq: i64,
    entry_id: String,
    chain_hash: Vec<u8>,
}

/// An entry this batch will insert.
struct NewRow<'a> {
    seq: i64,
    chain_hash: Hash,
    entry: &'a Prepared,
}

impl Prepared {
    /// Validates `entry` and computes its leaf hash.
    ///
    /// Everything that could make the database reject one row is checked here, because a
    /// rejected row would fail the whole batch and with it other callers' appends.
    pub(crate) fn new(entry: NewEntry) -> Result<Self, LedgerError> {
        let NewEntry {
            entry_id,
            recorded_at,
            body,
            mut index,
        } = entry;
        let invalid = |reason| LedgerError::InvalidEntry {
            entry_id: entry_id.clone(),
            reason,
        };
        if entry_id.is_empty() {
            return Err(invalid("the entry id is empty"));
        }
        if entry_id.len() > MAX_ENTRY_ID_LEN {
            return Err(invalid("the entry id is longer than 256 bytes"));
        }
        // PostgreSQL cannot store NUL in TEXT; refusing it on both backends keeps them alike.
        let texts = [
            &entry_id,
            &index.agency,
            &index.subject,
            &index.recipient,
            &index.action,
            &index.purpose,
            &index.isa_id,
            &index.outcome,
        ];
        if texts
            .into_iter()
            .chain(&index.subjects)
            .any(|t| t.contains('\0'))
        {
            return Err(invalid("a text field contains a NUL character"));
        }
        let recorded_at = recorded_at.to_offset(time::UtcOffset::UTC);
        let recorded_at_nanos = to_nanos(recorded_at)
            .ok_or_else(|| invalid("the time is outside the years 1677 to 2262"))?;
        index.subjects.sort_unstable();
        index.subjects.dedup();
        Ok(Self {
            leaf_hash: leaf_hash(&body),
            entry_id,
            recorded_at,
            recorded_at_nanos,
            body,
            index,
        })
    }
}

impl Stats {
    pub(crate) fn snapshot(&self) -> LedgerStats {
        LedgerStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            failed_transactions: self.failed_transactions.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// Runs until every sender is dropped. A failed transaction answers its batch and the loop goes
/// on: the pool replaces broken connections, so the next batch succeeds once the database is
/// back, without a restart.
pub(crate) async fn run(
    db: Db,
    mut queue: mpsc::Receiver<Request>,
    max_batch: usize,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let size = batch.len() as u64;
        match write_batch(&db, &batch).await {
            Ok((answers, new_entries)) => {
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats.entries.fetch_add(new_entries, Ordering::Relaxed);
                stats.largest_batch.fetch_max(size, Ordering::Relaxed);
                tracing::debug!(batch = size, new_entries, "ledger batch committed");
                for (request, answer) in batch.drain(..).zip(answers) {
                    // The caller may have given up waiting; its entry is recorded regardless.
                    let _ = request.reply.send(answer);
                }
            }
            Err(err) => {
                stats.failed_transactions.fetch_add(1, Ordering::Relaxed);
                if matches!(err, LedgerError::Broken { .. }) {
                    tracing::error!(error = %err, batch = size, "ledger refuses to append");
                } else {
                    tracing::warn!(error = %err, batch = size, "ledger batch failed");
                }
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Appends `batch` in one transaction. Returns one answer per request, in order, and how many
/// entries were new. Any error fails the whole batch and commits nothing.
async fn write_batch(
    db: &Db,
    batch: &[Request],
) -> Result<(Vec<Result<Receipt, LedgerError>>, u64), LedgerError> {
    dispatch!(db, |pool, dialect| {
        let mut tx = pool.begin_with(dialect.begin_write).await?;

        // INVARIANT: from here to commit this transaction holds the head row (PostgreSQL) or
        // the database write lock (SQLite), so nobody else can assign a seq.
        let head = sqlx::query(dialect.lock_head).fetch_one(&mut *tx).await?;
        let mut size: i64 = head.try_get("size")?;
        let mut chain = to_hash(head.try_get("chain_hash")?).ok_or(LedgerError::broken(
            0,
            None,
            Problem::Malformed {
                what: "head chain hash",
            },
        ))?;

        // Extending a chain whose head does not match its last entry would bury the damage
        // under new entries, so appends stop until an operator has run verify. One indexed
        // lookup per batch.
        let tail: Vec<TailRow> = sqlx::query_as(
            "SELECT seq, entry_id, chain_hash FROM audit_entries \
             WHERE seq >= $1 ORDER BY seq LIMIT 2",
        )
        .bind(size.max(1))
        .fetch_all(&mut *tx)
        .await?;
        check_head(size, &chain, &tail)?;

        let mut query = QueryBuilder::new(
            "SELECT seq, entry_id, recorded_at, leaf_hash, chain_hash \
             FROM audit_entries WHERE entry_id IN (",
        );
        let mut ids = query.separated(", ");
        for request in batch {
            ids.push_bind(request.entry.entry_id.as_str());
        }
        ids.push_unseparated(")");
        let existing: Vec<ExistingRow> = query.build_query_as().fetch_all(&mut *tx).await?;
        let mut known: HashMap<String, Receipt> = HashMap::with_capacity(existing.len());
        for row in existing {
            let seq = u64::try_from(row.seq).unwrap_or(0);
            let malformed =
                |what| LedgerError::broken(seq, Some(&row.entry_id), Problem::Malformed { what });
            let receipt = Receipt {
                seq,
                leaf_hash: to_hash(row.leaf_hash).ok_or_else(|| malformed("leaf hash"))?,
                chain_hash: to_hash(row.chain_hash).ok_or_else(|| malformed("chain hash"))?,
                recorded_at: from_nanos(row.recorded_at).ok_or_else(|| malformed("recorded_at"))?,
                entry_id: row.entry_id.clone(),
            };
            known.insert(row.entry_id, receipt);
        }

        let mut answers = Vec::with_capacity(batch.len());
        let mut rows: Vec<NewRow<'_>> = Vec::new();
        for request in batch {
            let entry = &request.entry;
            if let Some(receipt) = known.get(&entry.entry_id) {
                // A retry of an append whose answer was lost gets the original receipt; a
                // different body under the same id is refused.
                answers.push(if receipt.leaf_hash == entry.leaf_hash {
                    Ok(receipt.clone())
                } else {
                    Err(LedgerError::Duplicate {
                        entry_id: entry.entry_id.clone(),
                    })
                });
                continue;
            }
            size += 1;
            chain = chain_hash(&chain, &entry.leaf_hash);
            let receipt = Receipt {
                // `size` is at least 1 here: the head passed `check_head` and was incremented.
                seq: u64::try_from(size).unwrap_or(0),
                entry_id: entry.entry_id.clone(),
                leaf_hash: entry.leaf_hash,
                chain_hash: chain,
                recorded_at: entry.recorded_at,
            };
            known.insert(entry.entry_id.clone(), receipt.clone());
            rows.push(NewRow {
                seq: size,
                chain_hash: chain,
                entry,
            });
            answers.push(Ok(receipt));
        }

        if !rows.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO audit_entries (seq, entry_id, recorded_at, body, leaf_hash, \
                 chain_hash, agency, subject, recipient, action, purpose, isa_id, outcome) ",
            );
            insert.push_values(&rows, |mut values, row| {
                let e = row.entry;
                values
                    .push_bind(row.seq)
                    .push_bind(e.entry_id.as_str())
                    .push_bind(e.recorded_at_nanos)
                    .push_bind(e.body.as_slice())
                    .push_bind(e.leaf_hash.as_slice())
                    .push_bind(row.chain_hash.as_slice())
                    .push_bind(e.index.agency.as_str())
                    .push_bind(e.index.subject.as_str())
                    .push_bind(e.index.recipient.as_str())
                    .push_bind(e.index.action.as_str())
                    .push_bind(e.index.purpose.as_str())
                    .push_bind(e.index.isa_id.as_str())
                    .push_bind(e.index.outcome.as_str());
            });
            insert.build().execute(&mut *tx).await?;

            let subjects: Vec<(i64, &str)> = rows
                .iter()
                .flat_map(|row| {
                    let seq = row.seq;
                    row.entry
                        .index
                        .subjects
                        .iter()
                        .map(move |s| (seq, s.as_str()))
                })
                .collect();
            for chunk in subjects.chunks(SUBJECT_ROWS_PER_INSERT) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO audit_subjects (seq, subject_ref) ");
                insert.push_values(chunk, |mut values, (seq, subject_ref)| {
                    values.push_bind(*seq).push_bind(*subject_ref);
                });
                insert.build().execute(&mut *tx).await?;
            }

            sqlx::query("UPDATE ledger_head SET size = $1, chain_hash = $2 WHERE id = 1")
                .bind(size)
                .bind(chain.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((answers, rows.len() as u64))
    })
}

/// Checks that the head row describes the last entry: `tail` holds the entries from seq
/// `max(size, 1)` on.
fn check_head(size: i64, chain: &Hash, tail: &[TailRow]) -> Result<(), LedgerError> {
    let head_size = u64::try_from(size).unwrap_or(0);
    let size_mismatch = |seq: i64, entry_id: Option<&str>| {
        LedgerError::broken(
            u64::try_from(seq).unwrap_or(0),
            entry_id,
            Problem::HeadSizeMismatch { head_size },
        )
    };
    match tail {
        [] if size == 0 => {
            if *chain == GENESIS {
                Ok(())
            } else {
                Err(LedgerError::broken(0, None, Problem::HeadChainMismatch))
            }
        }
        [last] if last.seq == size => {
            if last.chain_hash.as_slice() == chain.as_slice() {
                Ok(())
            } else {
                Err(LedgerError::broken(
                    head_size,
                    Some(&last.entry_id),
                    Problem::HeadChainMismatch,
                ))
            }
        }
        [last, next, ..] if last.seq == size => Err(size_mismatch(next.seq, Some(&next.entry_id))),
        [first, ..] if size == 0 => Err(size_mismatch(first.seq, Some(&first.entry_id))),
        _ => Err(size_mismatch(size, None)),
    }
}

pub(crate) fn to_hash(bytes: Vec<u8>) -> Option<Hash> {
    bytes.try_into().ok()
}
