//! Group commit: one task writes every append, many appends per transaction.
//!
//! Each commit costs an fsync (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`),
//! which dominates the cost of an append. Appends that arrive while a transaction is committing
//! wait in a bounded queue and all go into the next transaction, so throughput grows with load
//! while each caller still gets its answer only after its own entry is on disk. A lone append is
//! written at once.
//!
//! Left alone, batches settle at about half the concurrent appenders: those answered by one
//! commit come back just after the next batch has left. So after a commit the writer *lingers*
//! briefly for them: it waits until the queue holds as many appends as the last batch plus those
//! that queued meanwhile, for at most a quarter of the last transaction's time and never longer
//! than [`LedgerOptions::max_linger`](crate::LedgerOptions::max_linger). A writer that saw no
//! concurrency (a batch of one) does not wait.
//!
//! On PostgreSQL a batch is one call of the `ledger_append` function (schema 2), one round trip;
//! on SQLite one hand-over to the writer thread, which runs it as a `BEGIN IMMEDIATE`
//! transaction ([`crate::sqlite_writer`]). Both do the same thing in the same order.
//!
//! The single writer also orders appends within the process; across processes, the head row's
//! lock (`SELECT … FOR UPDATE` in `ledger_append`) does on PostgreSQL and the database write lock
//! taken by `BEGIN IMMEDIATE` on SQLite.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::LedgerError;
use crate::chain::GENESIS;
use crate::entry::{EntryIndex, LedgerStats, NewEntry, Receipt, from_nanos, to_nanos};
use crate::error::Problem;
use crate::merkle::{Hash, leaf_hash};
use crate::seal::SealJob;
use crate::sqlite_writer::SqliteWriter;

/// Longest accepted entry id, in bytes.
const MAX_ENTRY_ID_LEN: usize = 256;

/// One queued append and where to send its answer.
#[derive(Debug)]
pub(crate) struct Request {
    pub entry: Prepared,
    pub reply: oneshot::Sender<Result<Receipt, LedgerError>>,
}

/// An entry that has been validated and hashed by its caller's task, so the writer only writes.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) entry_id: String,
    pub(crate) recorded_at: OffsetDateTime,
    pub(crate) recorded_at_nanos: i64,
    pub(crate) body: Vec<u8>,
    pub(crate) leaf_hash: Hash,
    pub(crate) index: EntryIndex,
}

/// A batch's answers, one per request in order, and how many entries were new.
pub(crate) type Written = (Vec<Result<Receipt, LedgerError>>, u64);

/// The writer's counters, shared with [`crate::Ledger::stats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    transactions: AtomicU64,
    failed_transactions: AtomicU64,
    entries: AtomicU64,
    largest_batch: AtomicU64,
}

/// A row of `audit_entries` as the writer needs it to answer a repeated entry id.
pub(crate) struct ExistingRow {
    pub(crate) seq: i64,
    pub(crate) entry_id: String,
    pub(crate) recorded_at: i64,
    pub(crate) leaf_hash: Vec<u8>,
    pub(crate) chain_hash: Vec<u8>,
}

/// The last entry and whatever follows it, to check the head against.
pub(crate) struct TailRow {
    pub(crate) seq: i64,
    pub(crate) entry_id: String,
    pub(crate) chain_hash: Vec<u8>,
}

/// A row of `ledger_append`'s result (see schema 2 for the statuses).
#[derive(sqlx::FromRow)]
struct AppendRow {
    r_status: i16,
    r_pos: Option<i32>,
    r_seq: Option<i64>,
    r_entry_id: Option<String>,
    r_recorded_at: Option<i64>,
    r_leaf_hash: Option<Vec<u8>>,
    r_chain_hash: Option<Vec<u8>>,
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
    /// Entries appended so far.
    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> LedgerStats {
        LedgerStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            failed_transactions: self.failed_transactions.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// Where the writer's batches go, and what it holds between them: it keeps its connection
/// while it works, so a batch costs no pool checkout (and on PostgreSQL no ping round trip);
/// after a failure the connection is dropped and a fresh one taken.
#[derive(Debug)]
pub(crate) enum Sink {
    /// The SQLite file the pool opened, written by a thread of its own.
    Sqlite {
        pool: sqlx::SqlitePool,
        writer: SqliteWriter,
    },
    /// The pool itself: each batch is one call on a connection the writer keeps.
    Postgres {
        pool: sqlx::PgPool,
        held: Option<PoolConnection<sqlx::Postgres>>,
    },
}

impl Sink {
    /// Whether a connection is held (or the thread that holds one is running).
    fn holds(&self) -> bool {
        match self {
            Self::Sqlite { writer, .. } => writer.is_running(),
            Self::Postgres { held, .. } => held.is_some(),
        }
    }

    /// Gives the held connection back, or closes it.
    fn release(&mut self) {
        match self {
            Self::Sqlite { writer, .. } => writer.release(),
            Self::Postgres { held, .. } => *held = None,
        }
    }

    /// Hands a seal's writes to the SQLite writer thread, which answers the sealer itself.
    fn seal(&mut self, job: SealJob) {
        match self {
            Self::Sqlite { pool, writer } => {
                if pool.is_closed() {
                    writer.release();
                    let _ = job
                        .reply
                        .send(Err(LedgerError::unavailable(&sqlx::Error::PoolClosed)));
                    return;
                }
                writer.seal(job);
            }
            // The PostgreSQL sealer writes on its own connection and sends none.
            Self::Postgres { .. } => {
                let _ = job.reply.send(Err(LedgerError::Unavailable {
                    reason: "PostgreSQL seals are not written by the ledger writer".to_owned(),
                }));
            }
        }
    }

    /// Resolves when the ledger's pool closes.
    async fn closed(&self) {
        match self {
            Self::Sqlite { pool, .. } => pool.close_event().await,
            Self::Postgres { pool, .. } => pool.close_event().await,
        }
    }
}

/// Runs until every sender is dropped. A failed transaction answers its batch and the loop goes
/// on: broken connections are replaced, so the next batch succeeds once the database is back,
/// without a restart.
pub(crate) async fn run(
    mut sink: Sink,
    mut queue: mpsc::Receiver<Request>,
    mut seals: mpsc::Receiver<SealJob>,
    max_batch: usize,
    max_linger: Duration,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // How many appends the next batch can expect, and how long the last transaction took.
    let mut expected = 0usize;
    let mut last_transaction = Duration::ZERO;
    loop {
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, max_batch) => received,
            // A seal is handed to the thread between two batches and the loop goes on at once:
            // the next batch waits behind it in the thread's queue, the sealer for its answer.
            Some(job) = seals.recv() => {
                sink.seal(job);
                continue;
            }
            // Closing the ledger closes the pool, which waits for checked-out connections: give
            // ours back (or close the thread's) when it closes.
            () = sink.closed(), if sink.holds() => {
                sink.release();
                queue.recv_many(&mut batch, max_batch).await
            }
        };
        if received == 0 {
            break;
        }
        let target = expected.min(max_batch);
        let linger = max_linger.min(last_transaction / 4);
        if batch.len() < target && !linger.is_zero() {
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < target {
                let room = max_batch - batch.len();
                match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                    Ok(received) if received > 0 => {}
                    _ => break,
                }
            }
        }
        let size = batch.len() as u64;
        let started = Instant::now();
        let written = write_batch(&mut sink, &mut batch).await;
        last_transaction = started.elapsed();
        // Those answered now may append again at once; those queued meanwhile are waiting.
        expected = if size > 1 {
            batch.len() + queue.len()
        } else {
            0
        };
        match written {
            Ok((answers, new_entries)) => {
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats.entries.fetch_add(new_entries, Ordering::Relaxed);
                stats.largest_batch.fetch_max(size, Ordering::Relaxed);
                tracing::debug!(
                    batch = size,
                    new_entries,
                    took_us = u64::try_from(last_transaction.as_micros()).unwrap_or(u64::MAX),
                    "ledger batch committed"
                );
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

/// Appends `batch` in one transaction on the held connection (taking one if none is held).
/// Returns one answer per request, in order, and how many entries were new. Any error fails the
/// whole batch and commits nothing, and drops the connection.
async fn write_batch(sink: &mut Sink, batch: &mut Vec<Request>) -> Result<Written, LedgerError> {
    match sink {
        Sink::Sqlite { pool, writer } => {
            // Appends queued when the ledger closed fail, as they would for want of a
            // connection from the closed pool.
            if pool.is_closed() {
                writer.release();
                return Err(LedgerError::unavailable(&sqlx::Error::PoolClosed));
            }
            let (back, written) = writer.write(std::mem::take(batch)).await;
            *batch = back;
            written
        }
        Sink::Postgres { pool, held } => {
            let reused = held.is_some();
            let result = write_on_postgres(pool, held, batch).await;
            if reused && matches!(result, Err(LedgerError::Unavailable { .. })) {
                // The kept connection may have died while idle (a server restart, a failover,
                // an idle timeout). A batch is idempotent by entry id, even if it was committed
                // before the connection failed, so it is tried once more on a fresh, checked
                // connection.
                return write_on_postgres(pool, held, batch).await;
            }
            result
        }
    }
}

/// [`write_batch_postgres`] on the held connection, taking one if none is held and dropping it
/// after a failure.
async fn write_on_postgres(
    pool: &sqlx::PgPool,
    held: &mut Option<PoolConnection<sqlx::Postgres>>,
    batch: &[Request],
) -> Result<Written, LedgerError> {
    let conn = match held {
        Some(conn) => conn,
        None => held.insert(pool.acquire().await?),
    };
    let result = write_batch_postgres(conn, batch).await;
    if result.is_err() {
        *held = None;
    }
    result
}

/// [`write_batch`] on PostgreSQL: one call of `ledger_append`, which runs as its own
/// transaction and is durable when it returns (`synchronous_commit=on`).
async fn write_batch_postgres(
    conn: &mut sqlx::PgConnection,
    batch: &[Request],
) -> Result<Written, LedgerError> {
    let entries = || batch.iter().map(|request| &request.entry);
    let texts = |field: fn(&Prepared) -> &str| -> Vec<&str> { entries().map(field).collect() };
    let mut ref_pos: Vec<i32> = Vec::new();
    let mut refs: Vec<&str> = Vec::new();
    for (pos, entry) in (1i32..).zip(entries()) {
        for subject in &entry.index.subjects {
            ref_pos.push(pos);
            refs.push(subject);
        }
    }
    let rows: Vec<AppendRow> = sqlx::query_as(
        "SELECT r_status, r_pos, r_seq, r_entry_id, r_recorded_at, r_leaf_hash, r_chain_hash \
         FROM ledger_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(texts(|e| &e.entry_id))
    .bind(entries().map(|e| e.recorded_at_nanos).collect::<Vec<i64>>())
    .bind(entries().map(|e| e.body.as_slice()).collect::<Vec<&[u8]>>())
    .bind(
        entries()
            .map(|e| e.leaf_hash.as_slice())
            .collect::<Vec<&[u8]>>(),
    )
    .bind(texts(|e| &e.index.agency))
    .bind(texts(|e| &e.index.subject))
    .bind(texts(|e| &e.index.recipient))
    .bind(texts(|e| &e.index.action))
    .bind(texts(|e| &e.index.purpose))
    .bind(texts(|e| &e.index.isa_id))
    .bind(texts(|e| &e.index.outcome))
    .bind(ref_pos)
    .bind(refs)
    .bind(texts(|e| &e.index.provider))
    .bind(
        entries()
            .map(|e| e.index.break_glass)
            .collect::<Vec<bool>>(),
    )
    .fetch_all(&mut *conn)
    .await?;

    let malformed = || {
        LedgerError::broken(
            0,
            None,
            Problem::Malformed {
                what: "append result",
            },
        )
    };
    let mut known: HashMap<String, Receipt> = HashMap::new();
    let mut assigned: HashMap<usize, (i64, Hash)> = HashMap::new();
    let mut head: Option<(i64, Hash)> = None;
    let mut tail: Vec<TailRow> = Vec::new();
    for row in rows {
        let seq = row.r_seq.ok_or_else(malformed)?;
        let chain = row.r_chain_hash.and_then(to_hash).ok_or_else(malformed)?;
        match row.r_status {
            0 => {
                let pos = row
                    .r_pos
                    .and_then(|p| usize::try_from(p).ok())
                    .and_then(|p| p.checked_sub(1))
                    .ok_or_else(malformed)?;
                assigned.insert(pos, (seq, chain));
            }
            1 => {
                let entry_id = row.r_entry_id.ok_or_else(malformed)?;
                let receipt = ExistingRow {
                    seq,
                    entry_id: entry_id.clone(),
                    recorded_at: row.r_recorded_at.ok_or_else(malformed)?,
                    leaf_hash: row.r_leaf_hash.ok_or_else(malformed)?,
                    chain_hash: chain.to_vec(),
                }
                .into_receipt()?;
                known.insert(entry_id, receipt);
            }
            9 => head = Some((seq, chain)),
            8 => tail.push(TailRow {
                seq,
                entry_id: row.r_entry_id.ok_or_else(malformed)?,
                chain_hash: chain.to_vec(),
            }),
            _ => return Err(malformed()),
        }
    }
    if let Some((size, chain)) = head {
        // Nothing was written; name the damage as the SQLite path does.
        check_head(size, &chain, &tail)?;
        return Err(malformed());
    }

    let mut answers = Vec::with_capacity(batch.len());
    let mut new_entries = 0;
    for (pos, request) in batch.iter().enumerate() {
        let entry = &request.entry;
        if let Some(receipt) = known.get(&entry.entry_id) {
            answers.push(stored_answer(receipt, entry));
            continue;
        }
        let Some(&(seq, chain_hash)) = assigned.get(&pos) else {
            // The batch committed but its answer is incomplete: the callers must treat their
            // appends as unknown and retry, which returns the stored receipts.
            return Err(LedgerError::Unavailable {
                reason: "the append function returned an incomplete answer".to_owned(),
            });
        };
        let receipt = Receipt {
            seq: u64::try_from(seq).map_err(|_| malformed())?,
            entry_id: entry.entry_id.clone(),
            leaf_hash: entry.leaf_hash,
            chain_hash,
            recorded_at: entry.recorded_at,
        };
        known.insert(entry.entry_id.clone(), receipt.clone());
        answers.push(Ok(receipt));
        new_entries += 1;
    }
    Ok((answers, new_entries))
}

/// The answer to appending `entry` under an id already stored (or earlier in the batch) with
/// `receipt`: a retry of an append whose answer was lost gets the original receipt; a different
/// body under the same id is refused.
pub(crate) fn stored_answer(receipt: &Receipt, entry: &Prepared) -> Result<Receipt, LedgerError> {
    if receipt.leaf_hash == entry.leaf_hash {
        Ok(receipt.clone())
    } else {
        Err(LedgerError::Duplicate {
            entry_id: entry.entry_id.clone(),
        })
    }
}

impl ExistingRow {
    pub(crate) fn into_receipt(self) -> Result<Receipt, LedgerError> {
        let seq = u64::try_from(self.seq).unwrap_or(0);
        let malformed =
            |what| LedgerError::broken(seq, Some(&self.entry_id), Problem::Malformed { what });
        Ok(Receipt {
            seq,
            leaf_hash: to_hash(self.leaf_hash.clone()).ok_or_else(|| malformed("leaf hash"))?,
            chain_hash: to_hash(self.chain_hash.clone()).ok_or_else(|| malformed("chain hash"))?,
            recorded_at: from_nanos(self.recorded_at).ok_or_else(|| malformed("recorded_at"))?,
            entry_id: self.entry_id,
        })
    }
}

/// Checks that the head row describes the last entry: `tail` holds the entries from seq
/// `max(size, 1)` on.
pub(crate) fn check_head(size: i64, chain: &Hash, tail: &[TailRow]) -> Result<(), LedgerError> {
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
