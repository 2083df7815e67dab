//! Sealing: storing the Merkle tree's nodes and signing tree heads.
//!
//! Appends only write entries and chain them; they never wait for the tree. The sealer comes
//! after them: every [`SealerOptions::interval`] it reads the entries appended since the last
//! signed head and re-checks each one's leaf and chain hash (it signs only what it has checked),
//! then, in one short write transaction, stores every perfect subtree they complete in
//! `tree_nodes` and signs the new root. The reading and hashing happen outside that transaction,
//! since on SQLite it holds the lock every append needs. The largest signed size is the *sealed
//! size*; proofs up to it are read from the stored nodes ([`Ledger::inclusion_proof`]), a few
//! primary-key reads.
//!
//! # One sealer among replicas
//!
//! Several gateway processes may share one PostgreSQL database, and each may run a sealer. Exactly
//! one is active: the one holding a session-level advisory lock (`pg_try_advisory_lock`, key
//! `"ledglead"` in ASCII) on a connection it opens for this and keeps for as long as it leads.
//! Everything the active sealer does goes through that connection, so it cannot seal after losing
//! the lock. When the process dies or its connection drops, the server ends the session, which
//! releases the lock, and a standby (retrying every interval on its own connection) takes over.
//! Each seal transaction also takes a transaction-level advisory lock (`"ledgseal"`) and re-reads
//! the latest head inside it, so even a manual [`Ledger::seal`] racing the sealer cannot sign two
//! heads of one size. On SQLite the process's own sealer is the sealer, and `BEGIN IMMEDIATE`
//! serialises it with any other writer.
//!
//! A head is signed only when there are new entries, so an idle ledger adds no rows. Each seal
//! covers at most [`SealerOptions::max_entries`] entries, so catching up after an upgrade (or a
//! long outage) is a series of bounded transactions rather than one long lock.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::LedgerError;
use crate::chain::{GENESIS, chain_hash};
use crate::db::{Conn, Db, LEADER_LOCK_KEY, dispatch, dispatch_conn};
use crate::error::Problem;
use crate::merkle::{self, Hash, NodeId, RootBuilder};
use crate::sign::{KeyId, SignedTreeHead, SigningKey};
use crate::sqlite_seal;
use crate::store::Ledger;
use crate::tree::{NODES_PER_SELECT, NodeRow, node_query, nodes_from_rows};
use crate::witness::WitnessFile;
use crate::writer::to_hash;

/// Entries read per query while sealing, on PostgreSQL.
const SEAL_PAGE: i64 = 2048;

/// The entries a seal reads, from `$1` to `$2`, at most `$3` of them.
pub(crate) const SEAL_ROWS: &str = "SELECT seq, entry_id, body, leaf_hash, chain_hash \
                                    FROM audit_entries WHERE seq >= $1 AND seq <= $2 \
                                    ORDER BY seq LIMIT $3";

/// The signed head with the largest size.
pub(crate) const LATEST_HEAD: &str = "SELECT size, timestamp, root, key_id, signature \
                                      FROM tree_heads ORDER BY size DESC LIMIT 1";

/// The chain hash of the entry at a given seq.
pub(crate) const CHAIN_AT: &str = "SELECT chain_hash FROM audit_entries WHERE seq = $1";

/// Stores a signed head.
pub(crate) const INSERT_HEAD: &str = "INSERT INTO tree_heads (size, timestamp, root, key_id, \
                                      signature) VALUES ($1, $2, $3, $4, $5)";

/// Tree nodes per `INSERT`: three bind parameters each, well below both backends' limits.
const NODE_ROWS_PER_INSERT: usize = 3000;

/// Starts sealers. See the [module docs](self).
#[derive(Debug)]
pub struct Sealer;

/// How a sealer runs. Start from `SealerOptions::default()` and set fields: the struct may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealerOptions {
    /// How often to seal new entries, and how often a standby retries for leadership (so also
    /// the longest failover takes, plus a connection). Entries appended since the last seal are
    /// proved from their leaf hashes, which is cheap for a few seconds' worth.
    pub interval: Duration,
    /// The most entries one signed head adds to the previous one. On SQLite a seal's write
    /// holds up appends while it stores two tree nodes per entry (about 3 µs an entry), so a
    /// busy ledger is sealed in several small heads rather than one large one: at 2,048 entries
    /// a seal's write takes a few milliseconds.
    pub max_entries: u64,
    /// A file to which every signed head is appended as a JSON line and fsynced: a record
    /// outside the database, against which a rewritten or restored database is caught (see
    /// [`crate::read_witness_file`]). Best kept on storage the database administrators cannot
    /// write.
    pub witness: Option<PathBuf>,
}

/// A running sealer. Dropping it stops the sealer at once; [`SealerHandle::shutdown`] stops it
/// between seals and releases leadership cleanly.
#[derive(Debug)]
pub struct SealerHandle {
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
    status: watch::Receiver<SealerStatus>,
}

/// What a sealer is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealerStatus {
    /// Whether this sealer is the active one (always, on SQLite, once it has run).
    pub active: bool,
    /// The latest head it signed or found.
    pub latest: Option<SignedTreeHead>,
    /// Heads this sealer has signed.
    pub signed: u64,
    /// The error of its last attempt, if it failed; cleared by the next success.
    pub last_error: Option<LedgerError>,
}

/// One row of `tree_heads`.
#[derive(sqlx::FromRow)]
pub(crate) struct HeadRow {
    pub size: i64,
    pub timestamp: i64,
    pub root: Vec<u8>,
    pub key_id: Vec<u8>,
    pub signature: Vec<u8>,
}

/// What one seal transaction did.
#[derive(Debug)]
struct Step {
    latest: Option<SignedTreeHead>,
    signed: bool,
    caught_up: bool,
}

/// How seals work on SQLite (see [`seal_step`]): where they open a connection to read entries
/// on, and the writer their writes go to.
#[derive(Debug)]
pub(crate) struct SqliteSealing {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub writes: mpsc::Sender<SealJob>,
}

/// A seal's writes on SQLite, which the ledger writer thread makes between two batches of
/// appends (see [`seal_step`]).
#[derive(Debug)]
pub(crate) struct SealWrite {
    /// The latest signed head when the entries were read; the seal is stored only if it still is.
    pub expected: Option<SignedTreeHead>,
    /// The last entry sealed, and the chain hash the seal computed for it.
    pub last_seq: i64,
    pub last_chain: Hash,
    /// The tree nodes the sealed entries complete.
    pub nodes: Vec<(NodeId, Hash)>,
    /// The new head, already signed.
    pub head: SignedTreeHead,
}

/// What became of a [`SealWrite`].
#[derive(Debug)]
pub(crate) enum SealWritten {
    /// Nodes and head are stored.
    Stored,
    /// Another sealer signed this head meanwhile; nothing was written.
    Superseded(Option<SignedTreeHead>),
}

/// A [`SealWrite`] and where its answer goes.
#[derive(Debug)]
pub(crate) struct SealJob {
    pub write: SealWrite,
    pub reply: oneshot::Sender<Result<SealWritten, LedgerError>>,
}

/// The re-check of the entries a seal reads, in order, and the tree they extend.
#[derive(Debug)]
pub(crate) struct Checking {
    /// The seq the next entry must have.
    pub next: u64,
    /// The chain hash up to the last entry checked.
    pub chain: Hash,
    pub tree: RootBuilder,
    /// The nodes the entries checked so far complete.
    pub nodes: Vec<(NodeId, Hash)>,
}

impl Checking {
    /// Checks the next entry, read from the database: its seq follows on, its leaf hash is its
    /// body's and its chain hash follows from the one before.
    pub(crate) fn check(
        &mut self,
        seq: i64,
        entry_id: &str,
        body: &[u8],
        leaf_hash: &[u8],
        chain_hash_stored: &[u8],
    ) -> Result<(), LedgerError> {
        let next = self.next;
        let seq = u64::try_from(seq).unwrap_or(0);
        if seq != next {
            return Err(LedgerError::broken(
                next,
                None,
                Problem::SequenceGap { next: seq },
            ));
        }
        let broken = |problem| LedgerError::broken(seq, Some(entry_id), problem);
        let leaf = merkle::leaf_hash(body);
        if leaf_hash != leaf.as_slice() {
            return Err(broken(Problem::LeafHashMismatch));
        }
        self.chain = chain_hash(&self.chain, &leaf);
        if chain_hash_stored != self.chain.as_slice() {
            return Err(broken(Problem::ChainMismatch));
        }
        let nodes = &mut self.nodes;
        self.tree
            .push_with(leaf, |node, hash| nodes.push((node, *hash)));
        self.next += 1;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct SealRow {
    seq: i64,
    entry_id: String,
    body: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

impl Default for SealerOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            max_entries: 2_048,
            witness: None,
        }
    }
}

impl Sealer {
    /// Starts sealing `ledger` every `interval` with `key`.
    pub fn spawn(ledger: Ledger, key: SigningKey, interval: Duration) -> SealerHandle {
        Self::spawn_with(
            ledger,
            key,
            SealerOptions {
                interval,
                ..SealerOptions::default()
            },
        )
    }

    /// Starts sealing `ledger` with `key` as `options` say.
    pub fn spawn_with(ledger: Ledger, key: SigningKey, options: SealerOptions) -> SealerHandle {
        let (status_tx, status) = watch::channel(SealerStatus::default());
        let (stop_tx, stop) = oneshot::channel();
        let task = tokio::spawn(run(ledger, key, options, status_tx, stop));
        SealerHandle {
            task: Some(task),
            stop: Some(stop_tx),
            status,
        }
    }
}

impl SealerHandle {
    /// The sealer's current status.
    pub fn status(&self) -> SealerStatus {
        self.status.borrow().clone()
    }

    /// Whether this sealer is the active one.
    pub fn is_active(&self) -> bool {
        self.status.borrow().active
    }

    /// Waits until the status satisfies `condition` (or the sealer stops, then returns the last
    /// status). Wrap it in a timeout.
    pub async fn wait_for(
        &mut self,
        mut condition: impl FnMut(&SealerStatus) -> bool,
    ) -> SealerStatus {
        let reached = self
            .status
            .wait_for(|status| condition(status))
            .await
            .map(|status| status.clone());
        reached.unwrap_or_else(|_| self.status.borrow().clone())
    }

    /// Stops the sealer after its current seal, closing its connection so a standby can lead.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SealerHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Ledger {
    /// Seals everything appended so far with `key`, a bounded batch per transaction, and returns
    /// the latest signed head (`None` while the ledger is empty). Safe to call while a sealer
    /// runs, from any process: seals are serialised in the database. For tests, command-line
    /// tools and single-process deployments that seal on their own schedule.
    pub async fn seal(&self, key: &SigningKey) -> Result<Option<SignedTreeHead>, LedgerError> {
        let max = SealerOptions::default().max_entries;
        let sqlite = self.inner.sqlite_sealing.as_ref();
        dispatch!(&self.inner.db, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            seal_all(Conn::from(&mut *conn), sqlite, key, max, None)
                .await
                .map(|(latest, _)| latest)
        })
    }

    /// The signed head with the largest size.
    pub async fn latest_signed_head(&self) -> Result<Option<SignedTreeHead>, LedgerError> {
        let row: Option<HeadRow> = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query_as(LATEST_HEAD).fetch_optional(pool).await?
        });
        row.map(HeadRow::into_head).transpose()
    }

    /// The signed head of exactly `size` entries, if the sealer signed one.
    pub async fn signed_head(&self, size: u64) -> Result<Option<SignedTreeHead>, LedgerError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        let row: Option<HeadRow> = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query_as(
                "SELECT size, timestamp, root, key_id, signature FROM tree_heads WHERE size = $1",
            )
            .bind(size)
            .fetch_optional(pool)
            .await?
        });
        row.map(HeadRow::into_head).transpose()
    }

    /// Up to `limit` (capped at [`crate::MAX_PAGE`]) signed heads larger than `after_size`,
    /// smallest first: page through them by passing the last size.
    pub async fn signed_heads(
        &self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>, LedgerError> {
        let after = i64::try_from(after_size).unwrap_or(i64::MAX);
        let limit = i64::from(limit.min(crate::MAX_PAGE));
        let rows: Vec<HeadRow> = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query_as(
                "SELECT size, timestamp, root, key_id, signature FROM tree_heads \
                 WHERE size > $1 ORDER BY size LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(HeadRow::into_head).collect()
    }
}

impl HeadRow {
    pub(crate) fn into_head(self) -> Result<SignedTreeHead, LedgerError> {
        let size = u64::try_from(self.size).unwrap_or(0);
        let malformed = || {
            LedgerError::broken(
                size,
                None,
                Problem::Malformed {
                    what: "signed tree head",
                },
            )
        };
        Ok(SignedTreeHead {
            size,
            root: to_hash(self.root).ok_or_else(malformed)?,
            timestamp: u64::try_from(self.timestamp).map_err(|_| malformed())?,
            key_id: KeyId(self.key_id.try_into().map_err(|_| malformed())?),
            signature: self.signature.try_into().map_err(|_| malformed())?,
        })
    }
}

impl<'a> From<&'a mut sqlx::SqliteConnection> for Conn<'a> {
    fn from(conn: &'a mut sqlx::SqliteConnection) -> Self {
        Self::Sqlite(conn)
    }
}

impl<'a> From<&'a mut PgConnection> for Conn<'a> {
    fn from(conn: &'a mut PgConnection) -> Self {
        Self::Postgres(conn)
    }
}

/// Seals until caught up. Returns the latest head and how many heads were signed.
async fn seal_all(
    mut conn: Conn<'_>,
    sqlite: Option<&SqliteSealing>,
    key: &SigningKey,
    max_entries: u64,
    witness: Option<&WitnessFile>,
) -> Result<(Option<SignedTreeHead>, u64), LedgerError> {
    let mut signed = 0;
    loop {
        let step = seal_step(reborrow(&mut conn), sqlite, key, max_entries).await?;
        if step.signed {
            signed += 1;
            if let (Some(witness), Some(head)) = (witness, &step.latest) {
                witness.publish(head).await?;
            }
        }
        if step.caught_up {
            return Ok((step.latest, signed));
        }
    }
}

fn reborrow<'b>(conn: &'b mut Conn<'_>) -> Conn<'b> {
    match conn {
        Conn::Sqlite(c) => Conn::Sqlite(c),
        Conn::Postgres(c) => Conn::Postgres(c),
    }
}

/// One seal: extends the stored tree by at most `max_entries` entries and signs it.
///
/// The entries are read and re-checked first, outside any write transaction: on SQLite a write
/// transaction is the database's one write lock, and the appender waits for it, so a seal that
/// read and hashed thousands of entries inside one stalled every share for as long. Entries never
/// change once appended, so what was read stays true; the write transaction then only re-reads
/// the latest head (another sealer may have signed meanwhile, and then this one starts over from
/// it), checks that the last entry read still ends the chain as computed, and stores the nodes
/// and the new head.
///
/// On SQLite (`sqlite` given) the entries are read on a connection of the seal's own, and the
/// transaction is made by the ledger writer thread, between two batches of appends: taken on
/// another connection it would wait for the lock the writer holds nearly all the time under
/// load, polling under SQLite's busy handler, whose sleeps (1, 2, 5, 10 … ms) then also delay
/// the writer's next batch after the seal has committed.
async fn seal_step(
    conn: Conn<'_>,
    sqlite: Option<&SqliteSealing>,
    key: &SigningKey,
    max_entries: u64,
) -> Result<Step, LedgerError> {
    dispatch_conn!(conn, |conn, dialect| {
        let started = Instant::now();
        let latest: Option<HeadRow> = sqlx::query_as(LATEST_HEAD)
            .fetch_optional(&mut *conn)
            .await?;
        let latest = latest.map(HeadRow::into_head).transpose()?;
        let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        let size = u64::try_from(size)
            .map_err(|_| LedgerError::broken(0, None, Problem::Malformed { what: "head size" }))?;
        let sealed = latest.map_or(0, |head| head.size);
        if size < sealed {
            // Entries a head was signed over are gone: never sign over a truncated ledger.
            return Err(LedgerError::broken(
                size + 1,
                None,
                Problem::HeadBeyondEnd {
                    signed_size: sealed,
                },
            ));
        }
        let target = size.min(sealed.saturating_add(max_entries.max(1)));
        if target == sealed {
            return Ok(Step {
                latest,
                signed: false,
                caught_up: true,
            });
        }

        // Resume the tree from the stored frontier, and check it is the signed one.
        let frontier_ids = merkle::subtrees(0, sealed)?;
        let mut rows: Vec<NodeRow> = Vec::new();
        for chunk in frontier_ids.chunks(NODES_PER_SELECT) {
            rows.extend(
                node_query(chunk)
                    .build_query_as::<NodeRow>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        let stored = nodes_from_rows(rows)?;
        let frontier = frontier_ids
            .iter()
            .map(|node| {
                stored.get(node).copied().ok_or_else(|| {
                    LedgerError::broken(
                        node.start() + 1,
                        None,
                        Problem::NodeMismatch {
                            level: node.level,
                            index: node.index,
                        },
                    )
                })
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        let tree = RootBuilder::from_frontier(sealed, &frontier).ok_or(LedgerError::broken(
            sealed,
            None,
            Problem::Malformed {
                what: "tree frontier",
            },
        ))?;
        if let Some(head) = &latest
            && tree.root() != head.root
        {
            return Err(LedgerError::broken(
                sealed,
                None,
                Problem::RootMismatch {
                    signed_size: sealed,
                },
            ));
        }

        // The chain hash after the last sealed entry: from the entry, or from the retention
        // checkpoint when that entry was pruned.
        let mut chain = GENESIS;
        if sealed > 0 {
            let bound = i64::try_from(sealed).unwrap_or(i64::MAX);
            let stored: Option<Vec<u8>> = sqlx::query_scalar(CHAIN_AT)
                .bind(bound)
                .fetch_optional(&mut *conn)
                .await?;
            let stored = match stored {
                Some(hash) => Some(hash),
                None => {
                    sqlx::query_scalar("SELECT chain_hash FROM ledger_checkpoint WHERE size = $1")
                        .bind(bound)
                        .fetch_optional(&mut *conn)
                        .await?
                }
            };
            chain = stored.and_then(to_hash).ok_or(LedgerError::broken(
                sealed,
                None,
                Problem::SequenceGap { next: sealed + 1 },
            ))?;
        }

        let mut checking = Checking {
            next: sealed + 1,
            chain,
            tree,
            nodes: Vec::new(),
        };
        if let Some(sqlite) = sqlite {
            // Read on a connection of its own, off the runtime: through sqlx every row is a
            // message from the connection's thread with its body copied, which cost a sealing
            // gateway some 30 µs of CPU per entry.
            let (path, busy_timeout) = (sqlite.path.clone(), sqlite.busy_timeout);
            checking = tokio::task::spawn_blocking(move || {
                sqlite_seal::read(&path, busy_timeout, checking, target)
            })
            .await
            .map_err(|err| LedgerError::Unavailable {
                reason: format!("the seal's reader stopped: {err}"),
            })??;
        } else {
            while checking.next <= target {
                let page: Vec<SealRow> = sqlx::query_as(SEAL_ROWS)
                    .bind(i64::try_from(checking.next).unwrap_or(i64::MAX))
                    .bind(i64::try_from(target).unwrap_or(i64::MAX))
                    .bind(SEAL_PAGE)
                    .fetch_all(&mut *conn)
                    .await?;
                if page.is_empty() {
                    break;
                }
                for row in page {
                    checking.check(
                        row.seq,
                        &row.entry_id,
                        &row.body,
                        &row.leaf_hash,
                        &row.chain_hash,
                    )?;
                }
            }
        }
        if checking.next <= target {
            return Err(LedgerError::broken(
                checking.next,
                None,
                Problem::HeadSizeMismatch { head_size: size },
            ));
        }
        let Checking {
            chain, tree, nodes, ..
        } = checking;

        // Only now the write transaction, and only writes in it. Timestamps never go backwards,
        // even if this host's clock is behind the last sealer's; the head is signed first, since
        // the transaction checks that `latest` is still the latest head.
        let read = started.elapsed();
        let timestamp = now_millis().max(latest.map_or(0, |head| head.timestamp));
        let head = key.sign_head(target, tree.root(), timestamp)?;
        let last_seq = i64::try_from(target).unwrap_or(i64::MAX);
        let node_count = nodes.len();
        if let Some(sqlite) = sqlite {
            let write = SealWrite {
                expected: latest,
                last_seq,
                last_chain: chain,
                nodes,
                head,
            };
            match write_on_writer(&sqlite.writes, write).await? {
                SealWritten::Stored => {}
                SealWritten::Superseded(now_latest) => {
                    return Ok(Step {
                        latest: now_latest,
                        signed: false,
                        caught_up: false,
                    });
                }
            }
        } else {
            let mut tx = conn.begin_with(dialect.begin_write).await?;
            if let Some(lock) = dialect.seal_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let now_latest: Option<HeadRow> =
                sqlx::query_as(LATEST_HEAD).fetch_optional(&mut *tx).await?;
            let now_latest = now_latest.map(HeadRow::into_head).transpose()?;
            if now_latest != latest {
                // Another sealer signed while these entries were read: go on from its head.
                tx.rollback().await?;
                return Ok(Step {
                    latest: now_latest,
                    signed: false,
                    caught_up: false,
                });
            }
            let last: Option<Vec<u8>> = sqlx::query_scalar(CHAIN_AT)
                .bind(last_seq)
                .fetch_optional(&mut *tx)
                .await?;
            if last.and_then(to_hash) != Some(chain) {
                return Err(LedgerError::broken(target, None, Problem::ChainMismatch));
            }
            for chunk in nodes.chunks(NODE_ROWS_PER_INSERT) {
                let mut insert = QueryBuilder::new("INSERT INTO tree_nodes (level, idx, hash) ");
                insert.push_values(chunk, |mut values, (node, hash)| {
                    values
                        .push_bind(i16::from(node.level))
                        .push_bind(i64::try_from(node.index).unwrap_or(i64::MAX))
                        .push_bind(hash.to_vec());
                });
                insert.build().execute(&mut *tx).await?;
            }
            sqlx::query(INSERT_HEAD)
                .bind(i64::try_from(head.size).unwrap_or(i64::MAX))
                .bind(i64::try_from(head.timestamp).unwrap_or(i64::MAX))
                .bind(head.root.to_vec())
                .bind(head.key_id.0.to_vec())
                .bind(head.signature.to_vec())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        // How long the seal read and checked entries, and how long its write took from then to
        // its answer: on PostgreSQL `BEGIN` (so waiting for the lock) to `COMMIT`; on SQLite
        // the hand-over to the writer, its wait for the batch before, the transaction, and this
        // task's wait for a worker to read the answer (the writer logs the transaction alone).
        tracing::debug!(
            size = head.size,
            entries = target - sealed,
            nodes = node_count,
            read_us = read.as_micros(),
            write_us = started.elapsed().saturating_sub(read).as_micros(),
            "ledger tree head signed"
        );
        Ok(Step {
            latest: Some(head),
            signed: true,
            caught_up: target == size,
        })
    })
}

/// Hands `write` to the ledger writer thread and waits for its answer.
async fn write_on_writer(
    writer: &mpsc::Sender<SealJob>,
    write: SealWrite,
) -> Result<SealWritten, LedgerError> {
    let stopped = || LedgerError::Unavailable {
        reason: "the ledger writer stopped".to_owned(),
    };
    let (reply, answer) = oneshot::channel();
    writer
        .send(SealJob { write, reply })
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// Milliseconds since the Unix epoch, now.
fn now_millis() -> u64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

/// The sealer task.
async fn run(
    ledger: Ledger,
    key: SigningKey,
    options: SealerOptions,
    status: watch::Sender<SealerStatus>,
    mut stop: oneshot::Receiver<()>,
) {
    let witness = options.witness.clone().map(WitnessFile::new);
    let mut ticker = tokio::time::interval(options.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // PostgreSQL only: the connection holding (or trying for) leadership.
    let mut session: Option<PgConnection> = None;
    let mut leading = false;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let outcome = match &ledger.inner.db {
            Db::Sqlite(pool) => {
                leading = true;
                match pool.acquire().await {
                    Ok(mut conn) => {
                        seal_all(
                            Conn::from(&mut *conn),
                            ledger.inner.sqlite_sealing.as_ref(),
                            &key,
                            options.max_entries,
                            witness.as_ref(),
                        )
                        .await
                    }
                    Err(err) => Err(LedgerError::from(err)),
                }
            }
            Db::Postgres(pool) => {
                match lead(pool, &mut session, &mut leading).await {
                    Ok(true) => {}
                    Ok(false) => {
                        status.send_modify(|s| {
                            s.active = false;
                            s.last_error = None;
                        });
                        continue;
                    }
                    Err(err) => {
                        status.send_modify(|s| {
                            s.active = false;
                            s.last_error = Some(err);
                        });
                        continue;
                    }
                }
                match session.as_mut() {
                    Some(conn) => {
                        let result = seal_all(
                            Conn::from(conn),
                            None,
                            &key,
                            options.max_entries,
                            witness.as_ref(),
                        )
                        .await;
                        if matches!(result, Err(LedgerError::Unavailable { .. })) {
                            // The session may be gone, and the lock with it: stand down and
                            // compete again next tick.
                            if let Some(conn) = session.take() {
                                let _ = conn.close_hard().await;
                            }
                            leading = false;
                        }
                        result
                    }
                    None => continue,
                }
            }
        };
        match outcome {
            Ok((latest, signed)) => status.send_modify(|s| {
                s.active = leading;
                s.latest = latest.or(s.latest);
                s.signed += signed;
                s.last_error = None;
            }),
            Err(err) => {
                tracing::warn!(error = %err, "ledger sealer failed");
                status.send_modify(|s| {
                    s.active = leading;
                    s.last_error = Some(err);
                });
            }
        }
    }
    if let Some(conn) = session.take() {
        // Closing ends the session, which releases the leadership lock at once.
        let _ = conn.close().await;
    }
    status.send_modify(|s| s.active = false);
}

/// Makes sure `session` is open and tries for leadership on it; true when this sealer leads.
async fn lead(
    pool: &sqlx::PgPool,
    session: &mut Option<PgConnection>,
    leading: &mut bool,
) -> Result<bool, LedgerError> {
    if *leading && session.is_some() {
        return Ok(true);
    }
    let conn = match session {
        Some(conn) => conn,
        None => {
            let options = (*pool.connect_options())
                .clone()
                .application_name("liaison-ledger-sealer");
            session.insert(PgConnection::connect_with(&options).await?)
        }
    };
    let acquired: Result<bool, sqlx::Error> = sqlx::query("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0));
    match acquired {
        Ok(acquired) => {
            if acquired {
                tracing::info!("ledger sealer is now active");
            }
            *leading = acquired;
            Ok(acquired)
        }
        Err(err) => {
            if let Some(conn) = session.take() {
                let _ = conn.close_hard().await;
            }
            *leading = false;
            Err(err.into())
        }
    }
}
