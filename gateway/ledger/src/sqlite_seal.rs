//! The SQLite side of sealing ([`crate::seal`]): reading the entries to seal on a connection of
//! the seal's own, and the seal's write transaction, which the ledger writer thread makes
//! between two batches of appends ([`crate::sqlite_writer`]).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::LedgerError;
use crate::error::Problem;
use crate::seal::{
    CHAIN_AT, Checking, HeadRow, INSERT_HEAD, LATEST_HEAD, SEAL_ROWS, SealWrite, SealWritten,
};
use crate::writer::to_hash;

const INSERT_NODE: &str = "INSERT INTO tree_nodes (level, idx, hash) VALUES (?1, ?2, ?3)";

/// Reads the entries from `checking.next` to `target` and checks each in turn, in one read
/// transaction, so on one snapshot of the file. Blocking: run it off the runtime.
///
/// The connection is opened for one seal step (one an interval, a few when a busy ledger is
/// sealed in several heads) and only reads; a read never waits for the writer in WAL mode, so
/// the busy timeout matters only while another process recovers the WAL.
pub(crate) fn read(
    path: &Path,
    busy_timeout: Duration,
    mut checking: Checking,
    target: u64,
) -> Result<Checking, LedgerError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "query_only", true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    {
        let mut rows = tx.prepare(SEAL_ROWS)?;
        let mut rows = rows.query(params![
            i64::try_from(checking.next).unwrap_or(i64::MAX),
            i64::try_from(target).unwrap_or(i64::MAX),
            i64::MAX,
        ])?;
        while let Some(row) = rows.next()? {
            let (seq, entry_id, body, leaf_hash, chain_hash) = fields(row)?;
            checking.check(seq, entry_id, body, leaf_hash, chain_hash)?;
        }
    }
    tx.commit()?;
    Ok(checking)
}

/// A row of [`SEAL_ROWS`]: seq, entry id, body, leaf hash, chain hash.
type SealRow<'r> = (i64, &'r str, &'r [u8], &'r [u8], &'r [u8]);

/// A row of [`SEAL_ROWS`], borrowed from SQLite's row buffer rather than copied.
fn fields<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<SealRow<'r>> {
    Ok((
        row.get(0)?,
        row.get_ref(1)?.as_str()?,
        row.get_ref(2)?.as_blob()?,
        row.get_ref(3)?.as_blob()?,
        row.get_ref(4)?.as_blob()?,
    ))
}

/// Makes a seal's writes in one transaction, if the latest signed head is still the one the
/// sealer read before it. On the writer thread's connection, between two batches.
pub(crate) fn write(conn: &mut Connection, seal: &SealWrite) -> Result<SealWritten, LedgerError> {
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let latest = tx
        .prepare_cached(LATEST_HEAD)?
        .query_row([], |row| {
            Ok(HeadRow {
                size: row.get(0)?,
                timestamp: row.get(1)?,
                root: row.get(2)?,
                key_id: row.get(3)?,
                signature: row.get(4)?,
            })
        })
        .optional()?
        .map(HeadRow::into_head)
        .transpose()?;
    if latest != seal.expected {
        // Dropping `tx` rolls back; nothing was written.
        return Ok(SealWritten::Superseded(latest));
    }
    let last: Option<Vec<u8>> = tx
        .prepare_cached(CHAIN_AT)?
        .query_row([seal.last_seq], |row| row.get(0))
        .optional()?;
    if last.and_then(to_hash) != Some(seal.last_chain) {
        return Err(LedgerError::broken(
            u64::try_from(seal.last_seq).unwrap_or(0),
            None,
            Problem::ChainMismatch,
        ));
    }
    {
        let mut insert = tx.prepare_cached(INSERT_NODE)?;
        for (node, hash) in &seal.nodes {
            insert.execute(params![
                i16::from(node.level),
                i64::try_from(node.index).unwrap_or(i64::MAX),
                hash.as_slice(),
            ])?;
        }
    }
    let head = &seal.head;
    tx.prepare_cached(INSERT_HEAD)?.execute(params![
        i64::try_from(head.size).unwrap_or(i64::MAX),
        i64::try_from(head.timestamp).unwrap_or(i64::MAX),
        head.root.as_slice(),
        head.key_id.0.as_slice(),
        head.signature.as_slice(),
    ])?;
    tx.commit()?;
    // The time appends waited for the seal (the sealer's own log line also counts its waits).
    tracing::debug!(
        size = head.size,
        nodes = seal.nodes.len(),
        took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "ledger seal written by the writer"
    );
    Ok(SealWritten::Stored)
}
