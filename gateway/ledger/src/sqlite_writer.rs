//! The SQLite ledger's appends, on a thread that owns its own connection.
//!
//! Through sqlx every statement is a hand-over to the connection's worker thread and back, and
//! on a quiet gateway each hand-over wakes two threads: a batch of four statements costs about
//! 0.35 ms of wake-ups on top of its commit, and sqlx copies every argument on the way. Here a
//! batch is one hand-over: the group-commit task sends it to this thread, which runs the whole
//! transaction with statements prepared once and kept, and sends it back with its answers.
//!
//! The thread's connection is opened on the same file as the pool (after the pool has brought
//! the schema up to date), with the same durability: WAL, `synchronous=FULL`, foreign keys on,
//! and the pool's busy timeout, since the sealer and other gateways write to the same file.
//!
//! It does not checkpoint automatically. SQLite's automatic checkpoint runs in whichever
//! connection's commit takes the WAL past 1,000 pages, and copying those pages into the database
//! and syncing it would then delay that batch's callers by milliseconds. [`checkpoint`] does the
//! copying instead, from the pool, while the writer goes on appending (a `PASSIVE` checkpoint
//! takes no lock a writer waits for). But SQLite starts the WAL over from its beginning only in a
//! write transaction that begins with every frame already copied, and under steady appends the
//! pool's checkpoint always ends a few commits behind the writer: the WAL would grow by every
//! page ever written. So once the WAL is past [`RESTART_FRAMES`], the pool's checkpoint asks
//! the writer to finish the job: after answering its batch, the writer copies the few frames
//! written since, and its next transaction starts the WAL over.
//!
//! The sealer's writes come here too ([`crate::seal`]): the thread makes them between two
//! batches, so the sealer never competes with it for the database's write lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::LedgerError;
use crate::chain::chain_hash;
use crate::entry::Receipt;
use crate::error::Problem;
use crate::seal::SealJob;
use crate::sqlite_seal;
use crate::writer::{
    ExistingRow, Request, Stats, TailRow, Written, check_head, stored_answer, to_hash,
};

/// How often [`checkpoint`] copies the WAL back into the database while entries are appended.
/// A checkpoint's writes and `fsync` slow the commits made meanwhile, and a page every commit
/// rewrites (an index's last leaf, the head) is copied once per checkpoint however often it was
/// written, so a few large checkpoints cost the writer less than many small ones. At the
/// writer's peak the WAL grows by some 15,000 frames in this time.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1000);

/// WAL frames (4 KiB pages, so 16 MiB) past which the writer is asked to finish a checkpoint
/// so the WAL starts over. Finishing costs the writer a few milliseconds; a smaller WAL is left
/// to start over by itself, which it does after the first checkpoint the writer does not
/// outrun (any pause in appends).
const RESTART_FRAMES: i64 = 4_096;

/// What a checkpoint pass may leave for the writer to copy: a few milliseconds of its time.
const LEFT_FOR_WRITER: i64 = 256;

/// Checkpoint passes per interval, each copying what was appended during the one before; after
/// the last the writer finishes whatever is left, so the WAL never goes without starting over.
const MAX_PASSES: usize = 4;

/// Statements the writer keeps prepared: the head, the look-up, three writes, and the seal's
/// two reads and two writes.
const STATEMENT_CACHE: usize = 12;

/// The head row and the first two entries from its size on (entry columns `NULL` when there are
/// none): the head check in one indexed look-up.
const HEAD: &str = "SELECT h.size, h.chain_hash, e.seq, e.entry_id, e.chain_hash \
     FROM ledger_head h LEFT JOIN audit_entries e ON e.seq >= max(h.size, 1) \
     WHERE h.id = 1 ORDER BY e.seq LIMIT 2";

const LOOK_UP: &str = "SELECT seq, entry_id, recorded_at, leaf_hash, chain_hash \
     FROM audit_entries WHERE entry_id = ?1";

const INSERT_ENTRY: &str = "INSERT INTO audit_entries (seq, entry_id, recorded_at, body, \
     leaf_hash, chain_hash, agency, subject, recipient, action, purpose, isa_id, outcome, \
     provider, break_glass) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

const INSERT_SUBJECT: &str = "INSERT INTO audit_subjects (seq, subject_ref) VALUES (?1, ?2)";

const UPDATE_HEAD: &str = "UPDATE ledger_head SET size = ?1, chain_hash = ?2 WHERE id = 1";

/// What the thread is given to do.
enum Job {
    /// A batch of appends, and where to send it back with its answers.
    Append {
        batch: Vec<Request>,
        reply: oneshot::Sender<(Vec<Request>, Result<Written, LedgerError>)>,
    },
    /// A seal's writes; the sealer waits for the answer.
    Seal(Box<SealJob>),
}

/// The writer thread, started at the first batch and again after it stops. Dropping this (or
/// [`SqliteWriter::release`]) ends the thread once its current batch is done, which closes its
/// connection.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    path: PathBuf,
    busy_timeout: Duration,
    /// Set by [`checkpoint`] when the writer should finish a checkpoint (see the module docs).
    restart_wal: Arc<AtomicBool>,
    jobs: Option<mpsc::Sender<Job>>,
}

impl SqliteWriter {
    /// A writer for the database file at `path`; nothing is started yet. [`checkpoint`] is
    /// given the same `restart_wal`.
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, restart_wal: Arc<AtomicBool>) -> Self {
        Self {
            path,
            busy_timeout,
            restart_wal,
            jobs: None,
        }
    }

    /// Whether the thread is running (and so holds, or will hold, a connection).
    pub(crate) fn is_running(&self) -> bool {
        self.jobs.is_some()
    }

    /// Ends the thread, closing its connection; the next batch starts another.
    pub(crate) fn release(&mut self) {
        self.jobs = None;
    }

    /// Starts the thread. Its connection is opened at the first batch, and again after a batch
    /// that failed for want of the database.
    fn spawn(&self) -> Result<mpsc::Sender<Job>, LedgerError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (path, busy_timeout) = (self.path.clone(), self.busy_timeout);
        let restart_wal = Arc::clone(&self.restart_wal);
        thread::Builder::new()
            .name("ledger-writer".to_owned())
            .spawn(move || {
                let mut conn: Option<Connection> = None;
                while let Ok(job) = queue.recv() {
                    let connected = match &mut conn {
                        Some(conn) => Ok(conn),
                        None => open(&path, busy_timeout).map(|opened| conn.insert(opened)),
                    };
                    let unavailable = match job {
                        Job::Append { batch, reply } => {
                            let written = connected.and_then(|conn| write_batch(conn, &batch));
                            let unavailable =
                                matches!(written, Err(LedgerError::Unavailable { .. }));
                            // The writer task may have stopped waiting; the batch's fate is
                            // then moot.
                            let _ = reply.send((batch, written));
                            unavailable
                        }
                        Job::Seal(job) => {
                            let SealJob { write, reply } = *job;
                            let written =
                                connected.and_then(|conn| sqlite_seal::write(conn, &write));
                            let unavailable =
                                matches!(written, Err(LedgerError::Unavailable { .. }));
                            let _ = reply.send(written);
                            unavailable
                        }
                    };
                    if unavailable {
                        conn = None;
                    }
                    if let Some(conn) = &conn
                        && restart_wal.swap(false, Ordering::Relaxed)
                    {
                        finish_checkpoint(conn);
                    }
                }
            })
            .map_err(|err| LedgerError::Unavailable {
                reason: format!("cannot start the ledger writer thread: {err}"),
            })?;
        Ok(jobs)
    }

    /// Writes `batch` in one transaction and gives it back with one answer per request, in
    /// order, and how many entries were new.
    pub(crate) async fn write(
        &mut self,
        batch: Vec<Request>,
    ) -> (Vec<Request>, Result<Written, LedgerError>) {
        let stopped = || LedgerError::Unavailable {
            reason: "the ledger writer thread stopped".to_owned(),
        };
        let jobs = match &self.jobs {
            Some(jobs) => jobs,
            None => match self.spawn() {
                Ok(jobs) => self.jobs.insert(jobs),
                Err(err) => return (batch, Err(err)),
            },
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::SendError(job)) = jobs.send(Job::Append { batch, reply }) {
            self.jobs = None;
            let batch = match job {
                Job::Append { batch, .. } => batch,
                Job::Seal(_) => Vec::new(),
            };
            return (batch, Err(stopped()));
        }
        // The thread answers every job it takes, with the batch; it can only drop one by
        // panicking, and then the batch's callers are answered by their own dropped senders.
        match answer.await {
            Ok(answered) => answered,
            Err(_) => {
                // Start another next time.
                self.jobs = None;
                (Vec::new(), Err(stopped()))
            }
        }
    }

    /// Queues a seal's writes after any batch already handed over; the thread answers the
    /// sealer. Does not wait.
    pub(crate) fn seal(&mut self, job: SealJob) {
        let jobs = match &self.jobs {
            Some(jobs) => jobs,
            None => match self.spawn() {
                Ok(jobs) => self.jobs.insert(jobs),
                Err(err) => {
                    let _ = job.reply.send(Err(err));
                    return;
                }
            },
        };
        if let Err(mpsc::SendError(job)) = jobs.send(Job::Seal(Box::new(job))) {
            self.jobs = None;
            if let Job::Seal(job) = job {
                let _ = job.reply.send(Err(LedgerError::Unavailable {
                    reason: "the ledger writer thread stopped".to_owned(),
                }));
            }
        }
    }
}

fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    // `journal_mode` is kept in the file (the pool set WAL); these two are per connection.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // See the module documentation: [`checkpoint`] does this off the append path.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Copies the WAL back into the database every [`CHECKPOINT_INTERVAL`] in which entries were
/// appended, on a pool connection, until the pool closes. A checkpoint that cannot finish (a
/// reader still using old pages) is simply tried again next time.
pub(crate) async fn checkpoint(
    pool: sqlx::SqlitePool,
    stats: Arc<Stats>,
    restart_wal: Arc<AtomicBool>,
) {
    let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = stats.entries();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = pool.close_event() => return,
        }
        let entries = stats.entries();
        if entries == seen {
            continue;
        }
        seen = entries;
        // Each pass copies what was appended during the one before; the writer is asked to
        // finish only once what is left is small, since its part delays its next batch.
        let mut last_frames = None;
        for pass in 1..=MAX_PASSES {
            let started = std::time::Instant::now();
            // One row: whether it was blocked, the WAL's frames, and how many of them are now
            // in the database.
            let (wal_frames, copied) =
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&pool)
                    .await
                {
                    Ok((_, wal_frames, copied)) => (wal_frames, copied),
                    Err(err) => {
                        tracing::debug!(
                            error = %err,
                            "ledger WAL checkpoint failed; trying again later"
                        );
                        break;
                    }
                };
            tracing::debug!(
                wal_frames,
                copied,
                took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "ledger WAL checkpointed"
            );
            if wal_frames < RESTART_FRAMES || copied < wal_frames {
                // Small enough to leave, or a reader holds old pages: next time.
                break;
            }
            let appended_meanwhile = last_frames.map_or(wal_frames, |last| wal_frames - last);
            if appended_meanwhile <= LEFT_FOR_WRITER || pass == MAX_PASSES {
                restart_wal.store(true, Ordering::Relaxed);
                break;
            }
            last_frames = Some(wal_frames);
        }
    }
}

/// On the writer's connection, between batches: copies what the pool's checkpoint left (the
/// frames of the last few commits), so that the next write transaction starts the WAL over.
fn finish_checkpoint(conn: &Connection) {
    let started = std::time::Instant::now();
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    }) {
        Ok((wal_frames, copied)) => tracing::debug!(
            wal_frames,
            copied,
            took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "ledger WAL checkpoint finished by the writer"
        ),
        Err(err) => tracing::debug!(error = %err, "ledger WAL checkpoint by the writer failed"),
    }
}

/// Entry ids are fresh in all but a retried append, so the batch is first written assuming none
/// is stored yet; only if one turns out to be is that transaction rolled back and the batch
/// written again after looking its ids up.
fn write_batch(conn: &mut Connection, batch: &[Request]) -> Result<Written, LedgerError> {
    if let Some(written) = attempt(conn, batch, false)? {
        return Ok(written);
    }
    attempt(conn, batch, true)?.ok_or_else(|| LedgerError::Unavailable {
        reason: "an entry id was stored while its batch was being written".to_owned(),
    })
}

/// One attempt of [`write_batch`]: with `look_up`, the batch's ids are looked up first and
/// stored ones answered with their receipts; without, `None` (and nothing committed) if any is
/// stored.
fn attempt(
    conn: &mut Connection,
    batch: &[Request],
    look_up: bool,
) -> Result<Option<Written>, LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;

    // INVARIANT: from here to commit this transaction holds the database write lock, so
    // nobody else can assign a seq.
    //
    // Extending a chain whose head does not match its last entry would bury the damage under
    // new entries, so appends stop until an operator has run verify.
    let malformed = |what| LedgerError::broken(0, None, Problem::Malformed { what });
    let (mut size, chain, tail) = {
        let mut head = tx.prepare_cached(HEAD)?;
        let mut rows = head.query([])?;
        let mut first: Option<(i64, Vec<u8>)> = None;
        let mut tail = Vec::with_capacity(2);
        while let Some(row) = rows.next()? {
            if first.is_none() {
                first = Some((row.get(0)?, row.get(1)?));
            }
            let entry: (Option<i64>, Option<String>, Option<Vec<u8>>) =
                (row.get(2)?, row.get(3)?, row.get(4)?);
            if let (Some(seq), Some(entry_id), Some(chain_hash)) = entry {
                tail.push(TailRow {
                    seq,
                    entry_id,
                    chain_hash,
                });
            }
        }
        let (size, chain) = first.ok_or_else(|| malformed("ledger head"))?;
        (
            size,
            to_hash(chain).ok_or_else(|| malformed("head chain hash"))?,
            tail,
        )
    };
    check_head(size, &chain, &tail)?;

    let mut known: HashMap<String, Receipt> = HashMap::with_capacity(batch.len());
    if look_up {
        let mut find = tx.prepare_cached(LOOK_UP)?;
        for request in batch {
            let row = find
                .query_row([request.entry.entry_id.as_str()], |row| {
                    Ok(ExistingRow {
                        seq: row.get(0)?,
                        entry_id: row.get(1)?,
                        recorded_at: row.get(2)?,
                        leaf_hash: row.get(3)?,
                        chain_hash: row.get(4)?,
                    })
                })
                .optional()?;
            if let Some(row) = row {
                known.insert(row.entry_id.clone(), row.into_receipt()?);
            }
        }
    }

    let mut answers = Vec::with_capacity(batch.len());
    let mut chain = chain;
    let mut new_entries = 0u64;
    {
        let mut insert = tx.prepare_cached(INSERT_ENTRY)?;
        let mut subject = tx.prepare_cached(INSERT_SUBJECT)?;
        for request in batch {
            let entry = &request.entry;
            if let Some(receipt) = known.get(&entry.entry_id) {
                answers.push(stored_answer(receipt, entry));
                continue;
            }
            size += 1;
            chain = chain_hash(&chain, &entry.leaf_hash);
            let index = &entry.index;
            let inserted = insert.execute(params![
                size,
                entry.entry_id,
                entry.recorded_at_nanos,
                entry.body,
                entry.leaf_hash.as_slice(),
                chain.as_slice(),
                index.agency,
                index.subject,
                index.recipient,
                index.action,
                index.purpose,
                index.isa_id,
                index.outcome,
                index.provider,
                index.break_glass,
            ]);
            match inserted {
                Ok(_) => {}
                // A stored entry id: nothing is committed (dropping `tx` rolls back), and the
                // batch is written again with its ids looked up.
                Err(err) if !look_up && is_unique_violation(&err) => return Ok(None),
                Err(err) => return Err(err.into()),
            }
            for subject_ref in &index.subjects {
                subject.execute(params![size, subject_ref])?;
            }
            let receipt = Receipt {
                // `size` is at least 1 here: the head passed `check_head` and was incremented.
                seq: u64::try_from(size).unwrap_or(0),
                entry_id: entry.entry_id.clone(),
                leaf_hash: entry.leaf_hash,
                chain_hash: chain,
                recorded_at: entry.recorded_at,
            };
            known.insert(entry.entry_id.clone(), receipt.clone());
            answers.push(Ok(receipt));
            new_entries += 1;
        }
        if new_entries > 0 {
            tx.prepare_cached(UPDATE_HEAD)?
                .execute(params![size, chain.as_slice()])?;
        }
    }
    tx.commit()?;
    Ok(Some((answers, new_entries)))
}

/// A `UNIQUE` or primary-key constraint failed: here, an entry id already stored.
fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == ErrorCode::ConstraintViolation
                && matches!(
                    e.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
    )
}
