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
//! on SQLite four round trips to the connection's worker thread in a `BEGIN IMMEDIATE`
//! transaction. Both do the same thing in the same order.
//!
//! The single writer also orders appends within the process; across processes, the head row's
//! lock (`SELECT … FOR UPDATE` in `ledger_append`) does on PostgreSQL and the database write lock
//! taken by `BEGIN IMMEDIATE` on SQLite.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, QueryBuilder};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::LedgerError;
use crate::chain::{GENESIS, chain_hash};
use crate::db::Db;
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

/// The head row and the first two entries from its size on, in one row each (entry columns
/// `NULL` when there are none).
#[derive(sqlx::FromRow)]
struct HeadRow {
    size: i64,
    chain_hash: Vec<u8>,
    seq: Option<i64>,
    entry_id: Option<String>,
    entry_chain_hash: Option<Vec<u8>>,
}

/// The connection the writer keeps between batches.
enum Held {
    Sqlite(PoolConnection<sqlx::Sqlite>),
    Postgres(PoolConnection<sqlx::Postgres>),
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
    max_linger: Duration,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // On PostgreSQL the writer keeps one connection while it works, so a batch costs no pool
    // checkout (and its ping round trip); after a failure the connection is dropped and a fresh
    // one taken.
    let mut held: Option<Held> = None;
    // How many appends the next batch can expect, and how long the last transaction took.
    let mut expected = 0usize;
    let mut last_transaction = Duration::ZERO;
    loop {
        let received = match held {
            // Closing the pool waits for checked-out connections: give ours back when it closes.
            Some(_) => tokio::select! {
                received = queue.recv_many(&mut batch, max_batch) => received,
                () = db.closed() => {
                    held = None;
                    queue.recv_many(&mut batch, max_batch).await
                }
            },
            None => queue.recv_many(&mut batch, max_batch).await,
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
        let written = write_batch(&db, &mut held, &batch).await;
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

/// Appends `batch` in one transaction on the held connection (taking one if none is held).
/// Returns one answer per request, in order, and how many entries were new. Any error fails the
/// whole batch and commits nothing, and drops the connection.
async fn write_batch(
    db: &Db,
    held: &mut Option<Held>,
    batch: &[Request],
) -> Result<(Vec<Result<Receipt, LedgerError>>, u64), LedgerError> {
    let reused = held.is_some();
    let result = write_on(db, held, batch).await;
    // SQLite connections are in-process and cheap to check out, and an in-memory database has
    // only one, which readers need too: only PostgreSQL connections are kept.
    if result.is_err() || matches!(db, Db::Sqlite(_)) {
        *held = None;
    }
    if reused
        && matches!(
            (db, &result),
            (Db::Postgres(_), Err(LedgerError::Unavailable { .. }))
        )
    {
        // The kept connection may have died while idle (a server restart, a failover, an idle
        // timeout). A batch is idempotent by entry id, even if it was committed before the
        // connection failed, so it is tried once more on a fresh, checked connection.
        let result = write_on(db, held, batch).await;
        if result.is_err() {
            *held = None;
        }
        return result;
    }
    result
}

async fn write_on(
    db: &Db,
    held: &mut Option<Held>,
    batch: &[Request],
) -> Result<(Vec<Result<Receipt, LedgerError>>, u64), LedgerError> {
    let conn = match held {
        Some(conn) => conn,
        None => held.insert(match db {
            Db::Sqlite(pool) => Held::Sqlite(pool.acquire().await?),
            Db::Postgres(pool) => Held::Postgres(pool.acquire().await?),
        }),
    };
    match conn {
        Held::Sqlite(conn) => write_batch_sqlite(conn, batch).await,
        Held::Postgres(conn) => write_batch_postgres(conn, batch).await,
    }
}

/// [`write_batch`] on PostgreSQL: one call of `ledger_append`, which runs as its own
/// transaction and is durable when it returns (`synchronous_commit=on`).
async fn write_batch_postgres(
    conn: &mut sqlx::PgConnection,
    batch: &[Request],
) -> Result<(Vec<Result<Receipt, LedgerError>>, u64), LedgerError> {
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

/// [`write_batch`] on SQLite.
///
/// Every statement is a hand-over to the connection's worker thread and back, and a wake-up
/// of each when the gateway is not busy, so a batch takes four: begin, read the head, write,
/// commit. Entry ids are fresh in all but a retried append, so the batch is first written
/// assuming none is stored yet; only if one turns out to be is that transaction rolled back
/// and the batch written again after looking its ids up.
async fn write_batch_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &[Request],
) -> Result<(Vec<Result<Receipt, LedgerError>>, u64), LedgerError> {
    if let Some(written) = write_sqlite(conn, batch, false).await? {
        return Ok(written);
    }
    write_sqlite(conn, batch, true)
        .await?
        .ok_or_else(|| LedgerError::Unavailable {
            reason: "an entry id was stored while its batch was being written".to_owned(),
        })
}

/// One attempt of [`write_batch_sqlite`]: with `look_up`, the batch's ids are looked up first
/// and stored ones answered with their receipts; without, `None` (and nothing committed) if
/// any is stored.
async fn write_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &[Request],
    look_up: bool,
) -> Result<Option<(Vec<Result<Receipt, LedgerError>>, u64)>, LedgerError> {
    let dialect = &crate::db::SQLITE;
    let mut tx = conn.begin_with(dialect.begin_write).await?;

    // INVARIANT: from here to commit this transaction holds the database write lock, so
    // nobody else can assign a seq.
    //
    // Extending a chain whose head does not match its last entry would bury the damage under
    // new entries, so appends stop until an operator has run verify. The head and the entries
    // from its size on come in one statement: an indexed lookup per batch.
    let head: Vec<HeadRow> = sqlx::query_as(
        "SELECT h.size, h.chain_hash, e.seq, e.entry_id, e.chain_hash AS entry_chain_hash \
         FROM ledger_head h LEFT JOIN audit_entries e ON e.seq >= max(h.size, 1) \
         WHERE h.id = 1 ORDER BY e.seq LIMIT 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    let malformed = |what| LedgerError::broken(0, None, Problem::Malformed { what });
    let first = head.first().ok_or_else(|| malformed("ledger head"))?;
    let mut size = first.size;
    let mut chain =
        to_hash(first.chain_hash.clone()).ok_or_else(|| malformed("head chain hash"))?;
    let tail: Vec<TailRow> = head
        .into_iter()
        .filter_map(|row| {
            Some(TailRow {
                seq: row.seq?,
                entry_id: row.entry_id?,
                chain_hash: row.entry_chain_hash?,
            })
        })
        .collect();
    check_head(size, &chain, &tail)?;

    let mut known: HashMap<String, Receipt> = HashMap::with_capacity(batch.len());
    if look_up {
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
        for row in existing {
            let entry_id = row.entry_id.clone();
            known.insert(entry_id, row.into_receipt()?);
        }
    }

    let mut answers = Vec::with_capacity(batch.len());
    let mut rows: Vec<NewRow<'_>> = Vec::with_capacity(batch.len());
    for request in batch {
        let entry = &request.entry;
        if let Some(receipt) = known.get(&entry.entry_id) {
            answers.push(stored_answer(receipt, entry));
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
        // The entries, their subjects and the new head go in one hand-over: SQLite runs the
        // statements of one text in order, each taking its own `?` parameters.
        let mut write = QueryBuilder::new(
            "INSERT INTO audit_entries (seq, entry_id, recorded_at, body, leaf_hash, \
             chain_hash, agency, subject, recipient, action, purpose, isa_id, outcome, \
             provider, break_glass) ",
        );
        write.push_values(&rows, |mut values, row| {
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
                .push_bind(e.index.outcome.as_str())
                .push_bind(e.index.provider.as_str())
                .push_bind(e.index.break_glass);
        });
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
            write.push("; INSERT INTO audit_subjects (seq, subject_ref) ");
            write.push_values(chunk, |mut values, (seq, subject_ref)| {
                values.push_bind(*seq).push_bind(*subject_ref);
            });
        }
        write.push("; UPDATE ledger_head SET size = ");
        write.push_bind(size);
        write.push(", chain_hash = ");
        write.push_bind(chain.as_slice());
        write.push(" WHERE id = 1");
        // Its text differs with the batch's shape, so it is not kept prepared: a cache of
        // statements for every shape seen held tens of megabytes of SQLite's memory.
        match write.build().persistent(false).execute(&mut *tx).await {
            Ok(_) => {}
            // A stored entry id: nothing is committed (dropping `tx` rolls back), and the
            // batch is written again with its ids looked up.
            Err(sqlx::Error::Database(e)) if !look_up && e.is_unique_violation() => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    Ok(Some((answers, rows.len() as u64)))
}

/// The answer to appending `entry` under an id already stored (or earlier in the batch) with
/// `receipt`: a retry of an append whose answer was lost gets the original receipt; a different
/// body under the same id is refused.
fn stored_answer(receipt: &Receipt, entry: &Prepared) -> Result<Receipt, LedgerError> {
    if receipt.leaf_hash == entry.leaf_hash {
        Ok(receipt.clone())
    } else {
        Err(LedgerError::Duplicate {
            entry_id: entry.entry_id.clone(),
        })
    }
}

impl ExistingRow {
    fn into_receipt(self) -> Result<Receipt, LedgerError> {
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
