//! [`Ledger`]: the durable, append-only store over SQLite or PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot};

use crate::LedgerError;
use crate::db::{self, Db, PoolSettings, dispatch};
use crate::entry::{
    EntryFilter, EntryIndex, LedgerStats, NewEntry, Order, Receipt, StoredEntry, from_nanos,
    to_nanos,
};
use crate::error::Problem;
use crate::merkle::Hash;
use crate::seal::SqliteSealing;
use crate::sqlite_writer::{self, SqliteWriter};
use crate::writer::{self, Prepared, Request, Sink, Stats, to_hash};

/// The most entries [`Ledger::list`] returns in one page.
pub const MAX_PAGE: u32 = 1000;

/// The columns of `audit_entries` that make a [`StoredEntry`], in `SELECT` form.
const ENTRY_COLUMNS: &str = "e.seq, e.entry_id, e.recorded_at, e.body, e.leaf_hash, \
    e.chain_hash, e.agency, e.subject, e.recipient, e.action, e.purpose, e.isa_id, e.outcome, \
    e.provider, e.break_glass";

/// The audit ledger.
///
/// Cheap to clone: clones share one connection pool and one writer task. Every entry is
/// appended with a dense sequence number and chained to its predecessor; [`Ledger::verify`]
/// recomputes everything from the stored bodies.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) inner: Arc<Inner>,
}

/// Tuning for [`Ledger::connect_with`]. The defaults suit a gateway; tests shorten the timeouts.
/// Start from `LedgerOptions::default()` and set fields: the struct may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerOptions {
    /// Connections in the pool, shared by the writer and readers.
    pub max_connections: u32,
    /// How long an operation waits for a connection before failing `Unavailable`. Also bounds
    /// how long appends hang while the database is down.
    pub acquire_timeout: Duration,
    /// SQLite only: how long to wait for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// Appends that may wait for the writer; beyond this `append` fails `Busy` at once, so a
    /// slow database sheds load instead of growing memory.
    pub queue_capacity: usize,
    /// The most appends written in one transaction (at most 1000).
    pub max_batch: usize,
    /// The longest the writer waits, after a commit, for the appenders it just answered to come
    /// back, so batches hold all the concurrent appenders rather than about half of them. It
    /// waits at most a quarter of the last transaction's time, and not at all without
    /// concurrency; zero disables it.
    pub max_linger: Duration,
}

/// Which database a ledger uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server, possibly shared by several gateway processes.
    Postgres,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: Db,
    queue: mpsc::Sender<Request>,
    queue_capacity: usize,
    /// How seals read and write on SQLite; `None` on PostgreSQL (see [`crate::seal`]).
    pub(crate) sqlite_sealing: Option<SqliteSealing>,
    stats: Arc<Stats>,
    closed: AtomicBool,
    /// Where an in-memory ledger's file lives, removed when the last handle is dropped.
    _scratch: Option<tempfile::TempDir>,
}

/// One row of `audit_entries`.
#[derive(sqlx::FromRow)]
struct EntryRow {
    seq: i64,
    entry_id: String,
    recorded_at: i64,
    body: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
    agency: String,
    subject: String,
    recipient: String,
    action: String,
    purpose: String,
    isa_id: String,
    outcome: String,
    provider: String,
    break_glass: bool,
}

#[derive(sqlx::FromRow)]
struct SubjectRow {
    seq: i64,
    subject_ref: String,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            queue_capacity: 1024,
            max_batch: 256,
            max_linger: Duration::from_millis(1),
        }
    }
}

impl Ledger {
    /// Opens the ledger at `url` with default options: `sqlite://path/to/ledger.db` (created if
    /// missing), `sqlite::memory:` (tests only: a scratch file, removed with the ledger) or
    /// `postgres://…`. Creates or upgrades the schema.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        Self::connect_with(url, LedgerOptions::default()).await
    }

    /// Opens the ledger at `url` with the given options.
    pub async fn connect_with(url: &str, options: LedgerOptions) -> Result<Self, LedgerError> {
        let settings = PoolSettings {
            max_connections: options.max_connections.max(2),
            acquire_timeout: options.acquire_timeout,
            busy_timeout: options.busy_timeout,
        };
        // An in-memory database would be reachable only through the pool's one connection,
        // not by the writer thread's own: it becomes a file in a directory of its own, removed
        // with the ledger.
        let scratch = if db::is_sqlite_memory(url) {
            Some(tempfile::tempdir().map_err(|err| LedgerError::Io {
                reason: format!("cannot create a scratch directory: {err}"),
            })?)
        } else {
            None
        };
        let scratch_url;
        let url = match &scratch {
            Some(dir) => {
                scratch_url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                scratch_url.as_str()
            }
            None => url,
        };
        let db = Db::open(url, settings).await?;
        let queue_capacity = options.queue_capacity.max(1);
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let (seals, seal_receiver) = mpsc::channel(1);
        let stats = Arc::new(Stats::default());
        let sqlite_sealing = match &db {
            Db::Sqlite(pool) => Some(SqliteSealing {
                path: pool.connect_options().get_filename().to_owned(),
                busy_timeout: settings.busy_timeout,
                writes: seals,
            }),
            Db::Postgres(_) => None,
        };
        let sink = match &db {
            Db::Sqlite(pool) => {
                let restart_wal = Arc::new(AtomicBool::new(false));
                tokio::spawn(sqlite_writer::checkpoint(
                    pool.clone(),
                    Arc::clone(&stats),
                    Arc::clone(&restart_wal),
                ));
                Sink::Sqlite {
                    pool: pool.clone(),
                    writer: SqliteWriter::new(
                        pool.connect_options().get_filename().to_owned(),
                        settings.busy_timeout,
                        restart_wal,
                    ),
                }
            }
            Db::Postgres(pool) => Sink::Postgres {
                pool: pool.clone(),
                held: None,
            },
        };
        tokio::spawn(writer::run(
            sink,
            receiver,
            seal_receiver,
            options.max_batch.clamp(1, 1000),
            options.max_linger,
            Arc::clone(&stats),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                queue,
                queue_capacity,
                sqlite_sealing,
                stats,
                closed: AtomicBool::new(false),
                _scratch: scratch,
            }),
        })
    }

    /// Which database this ledger uses.
    pub fn backend(&self) -> Backend {
        match self.inner.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Durably records `entry`.
    ///
    /// `Ok` means the entry is committed and fsynced: the gateway may now release the data.
    /// Concurrent appends share a transaction (group commit). Errors:
    /// [`LedgerError::Busy`] at once if the queue is full; [`LedgerError::Unavailable`] if the
    /// transaction failed, in which case the caller must disclose nothing;
    /// [`LedgerError::Duplicate`] if `entry_id` is recorded with another body;
    /// [`LedgerError::InvalidEntry`] for input no database could store;
    /// [`LedgerError::Broken`] if the head row does not match the last entry, because extending
    /// a damaged chain would hide the damage (run [`Ledger::verify`]).
    ///
    /// If the future is dropped after the entry was queued, the entry is still recorded.
    pub async fn append(&self, entry: NewEntry) -> Result<Receipt, LedgerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(LedgerError::Closed);
        }
        let entry = Prepared::new(entry)?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .try_send(Request { entry, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => LedgerError::Busy {
                    capacity: self.inner.queue_capacity,
                },
                mpsc::error::TrySendError::Closed(_) => LedgerError::Closed,
            })?;
        answer.await.unwrap_or_else(|_| {
            Err(LedgerError::Unavailable {
                reason: "the ledger writer stopped".to_owned(),
            })
        })
    }

    /// Counters of the group-commit writer.
    pub fn stats(&self) -> LedgerStats {
        self.inner.stats.snapshot()
    }

    /// Refuses further appends and closes the pool. Appends already queued fail `Unavailable`;
    /// a gateway should stop taking requests and let in-flight ones finish first.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.db.close().await;
    }

    /// The number of entries, from the head row.
    pub async fn size(&self) -> Result<u64, LedgerError> {
        let (size, _) = self.head().await?;
        Ok(size)
    }

    /// The entry with this id.
    pub async fn get(&self, entry_id: &str) -> Result<Option<StoredEntry>, LedgerError> {
        Ok(self.fetch_entries(&Lookup::Id(entry_id)).await?.pop())
    }

    /// The entry at position `seq` (the first is 1).
    pub async fn get_by_seq(&self, seq: u64) -> Result<Option<StoredEntry>, LedgerError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        Ok(self.fetch_entries(&Lookup::Seq(seq)).await?.pop())
    }

    /// A page of at most `limit` (capped at [`MAX_PAGE`]) entries matching `filter`, in
    /// `filter.order`. To get the next page pass the last entry's `seq` as `after_seq`: keyset
    /// pagination stays fast and stable however deep the page and however many entries are
    /// appended meanwhile.
    pub async fn list(
        &self,
        filter: &EntryFilter,
        limit: u32,
        after_seq: Option<u64>,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let limit = limit.min(MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.fetch_entries(&Lookup::Page {
            filter,
            limit,
            after_seq,
        })
        .await
    }

    /// The head row: (size, chain hash).
    pub(crate) async fn head(&self) -> Result<(u64, Hash), LedgerError> {
        let row = dispatch!(&self.inner.db, |pool, dialect| {
            let row = sqlx::query("SELECT size, chain_hash FROM ledger_head WHERE id = 1")
                .fetch_one(pool)
                .await?;
            (
                row.try_get::<i64, _>("size")?,
                row.try_get::<Vec<u8>, _>("chain_hash")?,
            )
        });
        let (size, chain) = row;
        let malformed = |what| LedgerError::broken(0, None, Problem::Malformed { what });
        let size = u64::try_from(size).map_err(|_| malformed("head size"))?;
        let chain = to_hash(chain).ok_or_else(|| malformed("head chain hash"))?;
        Ok((size, chain))
    }

    /// Runs an entry query and attaches each entry's subject references.
    async fn fetch_entries(&self, lookup: &Lookup<'_>) -> Result<Vec<StoredEntry>, LedgerError> {
        let (rows, subject_rows) = dispatch!(&self.inner.db, |pool, dialect| {
            let mut query = entry_query(lookup);
            let rows: Vec<EntryRow> = query.build_query_as().fetch_all(pool).await?;
            let mut subject_rows: Vec<SubjectRow> = Vec::new();
            if !rows.is_empty() {
                // Subjects are inserted in the entry's own transaction and never change, so a
                // second statement sees exactly the entry's set.
                let mut query =
                    QueryBuilder::new("SELECT seq, subject_ref FROM audit_subjects WHERE seq IN (");
                let mut seqs = query.separated(", ");
                for row in &rows {
                    seqs.push_bind(row.seq);
                }
                seqs.push_unseparated(") ORDER BY seq, subject_ref");
                subject_rows = query.build_query_as().fetch_all(pool).await?;
            }
            (rows, subject_rows)
        });
        let mut subjects: HashMap<i64, Vec<String>> = HashMap::new();
        for row in subject_rows {
            subjects.entry(row.seq).or_default().push(row.subject_ref);
        }
        rows.into_iter()
            .map(|row| {
                let refs = subjects.remove(&row.seq).unwrap_or_default();
                stored_entry(row, refs)
            })
            .collect()
    }
}

/// Which entries [`Ledger::fetch_entries`] reads.
enum Lookup<'a> {
    Id(&'a str),
    Seq(i64),
    Page {
        filter: &'a EntryFilter,
        limit: u32,
        after_seq: Option<u64>,
    },
}

/// Builds the `SELECT` for `lookup`. Generic so both backends share it; the placeholders are
/// written by the builder in each backend's syntax.
///
/// A page is one ordered index walk that stops after `limit` matches, never a sort of
/// everything that matches:
///
/// - a party filter is two walks, one per side (the agency's own requests; shares of its data
///   others made), each limited, merged by a `UNION ALL` of at most twice `limit` rows, because
///   an `OR` across two columns would make the planner read both sides in full and sort;
/// - a person filter walks that person's subject rows and joins each entry, rather than walking
///   every entry and probing for the person;
/// - a date range pages in (time, seq) order along `(party, recorded_at, seq)`, so a week a year
///   back reads that week only; other pages are in seq order.
fn entry_query<DB>(lookup: &Lookup<'_>) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    DB::Arguments: Default,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let (filter, limit, after_seq) = match lookup {
        Lookup::Id(id) => {
            let mut query =
                QueryBuilder::new(format!("SELECT {ENTRY_COLUMNS} FROM audit_entries e"));
            query
                .push(" WHERE e.entry_id = ")
                .push_bind((*id).to_owned());
            return query;
        }
        Lookup::Seq(seq) => {
            let mut query =
                QueryBuilder::new(format!("SELECT {ENTRY_COLUMNS} FROM audit_entries e"));
            query.push(" WHERE e.seq = ").push_bind(*seq);
            return query;
        }
        Lookup::Page {
            filter,
            limit,
            after_seq,
        } => (*filter, *limit, *after_seq),
    };
    let page = Page::of(filter, limit, after_seq);
    let Some(party) = &filter.party else {
        let mut query = QueryBuilder::new("");
        page.arm(&mut query, Side::Any);
        return query;
    };
    let mut query = QueryBuilder::new(format!("SELECT {ENTRY_COLUMNS} FROM (SELECT * FROM ("));
    page.arm(&mut query, Side::Requester(party));
    query.push(") a UNION ALL SELECT * FROM (");
    page.arm(&mut query, Side::Provider(party));
    query
        .push(") b) e ORDER BY ")
        .push(page.order_by("e.seq"))
        .push(" LIMIT ")
        .push_bind(i64::from(limit));
    query
}

/// Which of an agency's entries one walk reads.
#[derive(Clone, Copy)]
enum Side<'a> {
    /// No party filter.
    Any,
    /// Entries its principals made.
    Requester(&'a str),
    /// Shares of its data that other agencies' principals made.
    Provider(&'a str),
}

/// One page's shape, shared by its walks.
struct Page<'a> {
    filter: &'a EntryFilter,
    limit: u32,
    after_seq: Option<i64>,
    by_time: bool,
}

impl<'a> Page<'a> {
    fn of(filter: &'a EntryFilter, limit: u32, after_seq: Option<u64>) -> Self {
        Self {
            filter,
            limit,
            after_seq: after_seq.map(|a| i64::try_from(a).unwrap_or(i64::MAX)),
            by_time: filter.from.is_some() || filter.until.is_some(),
        }
    }

    fn descending(&self) -> bool {
        self.filter.order == Order::NewestFirst
    }

    /// `ORDER BY` terms; `seq` names the sequence column of the walk.
    fn order_by(&self, seq: &str) -> String {
        let dir = if self.descending() { "DESC" } else { "ASC" };
        if self.by_time {
            format!("e.recorded_at {dir}, {seq} {dir}")
        } else {
            format!("{seq} {dir}")
        }
    }

    /// One ordered, limited walk.
    fn arm<DB>(&self, query: &mut QueryBuilder<DB>, side: Side<'_>)
    where
        DB: sqlx::Database,
        DB::Arguments: Default,
        for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let filter = self.filter;
        // Walking a person's subject rows gives their entries in seq order from the
        // (subject_ref, seq) index; CROSS JOIN keeps SQLite from choosing the other way round.
        let seq = if let Some(subject_ref) = &filter.subject_ref {
            query
                .push(format!(
                    "SELECT {ENTRY_COLUMNS} FROM audit_subjects s CROSS JOIN audit_entries e \
                     WHERE e.seq = s.seq AND s.subject_ref = "
                ))
                .push_bind(subject_ref.clone());
            "s.seq"
        } else {
            query.push(format!(
                "SELECT {ENTRY_COLUMNS} FROM audit_entries e WHERE 1 = 1"
            ));
            "e.seq"
        };
        match side {
            Side::Any => {}
            Side::Requester(party) => {
                query.push(" AND e.agency = ").push_bind(party.to_owned());
            }
            Side::Provider(party) => {
                // `provider <> agency` as written in the partial indexes, so they apply.
                query
                    .push(" AND e.provider = ")
                    .push_bind(party.to_owned())
                    .push(" AND e.provider <> e.agency");
            }
        }
        let columns = [
            ("agency", &filter.agency),
            ("provider", &filter.provider),
            ("subject", &filter.subject),
            ("recipient", &filter.recipient),
            ("action", &filter.action),
            ("purpose", &filter.purpose),
            ("isa_id", &filter.isa_id),
            ("outcome", &filter.outcome),
        ];
        for (column, value) in columns {
            if let Some(value) = value {
                // `column` comes from the fixed list above, never from the caller.
                query
                    .push(format!(" AND e.{column} = "))
                    .push_bind(value.clone());
            }
        }
        match filter.break_glass {
            // Bare, as in the partial indexes' predicates.
            Some(true) => {
                query.push(" AND e.break_glass");
            }
            Some(false) => {
                query.push(" AND NOT e.break_glass");
            }
            None => {}
        }
        if let Some(from) = filter.from {
            query
                .push(" AND e.recorded_at >= ")
                .push_bind(clamped_nanos(from));
        }
        if let Some(until) = filter.until {
            query
                .push(" AND e.recorded_at < ")
                .push_bind(clamped_nanos(until));
        }
        if let Some(after) = self.after_seq {
            let op = if self.descending() { "<" } else { ">" };
            if self.by_time {
                // The cursor is the last entry shown; its time is one primary-key probe.
                query
                    .push(format!(" AND (e.recorded_at, {seq}) {op} ("))
                    .push("(SELECT c.recorded_at FROM audit_entries c WHERE c.seq = ")
                    .push_bind(after)
                    .push("), ")
                    .push_bind(after)
                    .push(")");
            } else {
                query.push(format!(" AND {seq} {op} ")).push_bind(after);
            }
        }
        query
            .push(" ORDER BY ")
            .push(self.order_by(seq))
            .push(" LIMIT ")
            .push_bind(i64::from(self.limit));
    }
}

/// A time as stored nanoseconds; times outside the storable range clamp to its ends, so a
/// filter bound far in the past or future still means "everything from" or "everything before".
fn clamped_nanos(at: time::OffsetDateTime) -> i64 {
    to_nanos(at).unwrap_or(if at.year() < 1970 { i64::MIN } else { i64::MAX })
}

/// Turns a row and its subject references into a [`StoredEntry`].
fn stored_entry(row: EntryRow, subjects: Vec<String>) -> Result<StoredEntry, LedgerError> {
    let seq = u64::try_from(row.seq).unwrap_or(0);
    let malformed =
        |what| LedgerError::broken(seq, Some(&row.entry_id), Problem::Malformed { what });
    let recorded_at = from_nanos(row.recorded_at).ok_or_else(|| malformed("recorded_at"))?;
    let leaf_hash = to_hash(row.leaf_hash.clone()).ok_or_else(|| malformed("leaf hash"))?;
    let chain_hash = to_hash(row.chain_hash.clone()).ok_or_else(|| malformed("chain hash"))?;
    Ok(StoredEntry {
        seq,
        recorded_at,
        leaf_hash,
        chain_hash,
        index: EntryIndex {
            agency: row.agency,
            subject: row.subject,
            recipient: row.recipient,
            provider: row.provider,
            break_glass: row.break_glass,
            action: row.action,
            purpose: row.purpose,
            isa_id: row.isa_id,
            outcome: row.outcome,
            subjects,
        },
        entry_id: row.entry_id,
        body: row.body,
    })
}
