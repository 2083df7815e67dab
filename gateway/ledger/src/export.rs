//! Exporting the ledger as JSON Lines, for archives and for verification away from the database.
//!
//! The format is described in [`crate::format`]'s docs and checked by [`crate::verify_export`].
//! An export is written in sequence order a page at a time, so memory stays bounded, and it can
//! be resumed: `export(w, k + 1)` writes exactly the lines that follow entry `k` in a complete
//! export, so an interrupted export, cut back to the end of its last complete entry line, and
//! continued from the next sequence number, is byte-for-byte the export that was not interrupted.
//! [`Ledger::export_file`] does that cutting for a file.
//!
//! The export writes what is stored, without checking it: damage shows when the export is
//! verified, which names the first bad entry exactly as [`Ledger::verify`] would.

use std::collections::VecDeque;
use std::io::{BufRead as _, Seek as _};
use std::path::Path;

use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::LedgerError;
use crate::db::dispatch;
use crate::entry::from_nanos;
use crate::error::Problem;
use crate::format::{self, HeadLine, Line, LineKind};
use crate::merkle;
use crate::sign::SignedTreeHead;
use crate::store::Ledger;
use crate::tree::Plan;

/// Entries read per query while exporting.
const EXPORT_PAGE: i64 = 1000;

/// What [`Ledger::export`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSummary {
    /// The first entry written.
    pub first_seq: u64,
    /// The ledger's size when the export started: the last entry written, and the `end` line.
    pub size: u64,
    /// Entry lines written.
    pub entries: u64,
    /// Signed head lines written.
    pub heads: u64,
    /// Whether this continued an earlier export rather than starting one (no header written).
    pub resumed: bool,
}

/// One row of `audit_entries` as the export writes it.
#[derive(sqlx::FromRow)]
struct ExportRow {
    seq: i64,
    entry_id: String,
    recorded_at: i64,
    body: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

impl Ledger {
    /// Writes the ledger from entry `from_seq` to its current end to `writer`, as JSON Lines
    /// (see [`crate::format`]), and flushes it.
    ///
    /// With `from_seq` 0 or 1 (or anything up to the first entry kept after retention) this
    /// writes a complete export: a header, the retention checkpoint if entries were pruned, every
    /// entry each followed by the signed heads of its size, and an end line. With a larger
    /// `from_seq` it writes the continuation of an export cut after entry `from_seq - 1`.
    pub async fn export<W>(
        &self,
        writer: &mut W,
        from_seq: u64,
    ) -> Result<ExportSummary, LedgerError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let (size, _) = self.head().await?;
        let checkpoint = self.checkpoint_row().await?;
        let base = checkpoint.map_or(0, |(size, _)| size);
        let fresh = from_seq <= base + 1;
        let start = if fresh { base + 1 } else { from_seq };
        if start > size + 1 {
            return Err(LedgerError::SeqOutOfRange {
                seq: from_seq,
                tree_size: size,
            });
        }
        let mut out = LineWriter {
            writer,
            buffer: Vec::with_capacity(64 * 1024),
        };
        let mut summary = ExportSummary {
            first_seq: start,
            size,
            entries: 0,
            heads: 0,
            resumed: !fresh,
        };

        if fresh {
            out.line(&Line::Header {
                format: format::FORMAT.to_owned(),
                version: format::VERSION,
            })
            .await?;
            if let Some((base, chain)) = checkpoint {
                let head = self.signed_head(base).await?.ok_or(LedgerError::broken(
                    base,
                    None,
                    Problem::Malformed {
                        what: "checkpoint head",
                    },
                ))?;
                let ids = merkle::subtrees(0, base)?;
                let plan = Plan {
                    stored: ids.iter().copied().collect(),
                    tail: None,
                };
                let values = self.read_plan(&plan, base).await?;
                let frontier = ids
                    .iter()
                    .map(|id| values.hash(*id).map(hex::encode))
                    .collect::<Result<Vec<_>, _>>()?;
                out.line(&Line::Checkpoint {
                    size: base,
                    chain_hash: hex::encode(chain),
                    frontier,
                    head: HeadLine::from(&head),
                })
                .await?;
                summary.heads += 1;
            }
        } else if let Some(head) = self.signed_head(start - 1).await? {
            out.line(&Line::Head(HeadLine::from(&head))).await?;
            summary.heads += 1;
        }

        let mut heads: VecDeque<SignedTreeHead> = VecDeque::new();
        let mut heads_after = start - 1;
        let mut heads_done = false;
        let mut next = start;
        loop {
            let rows: Vec<ExportRow> = dispatch!(&self.inner.db, |pool, dialect| {
                sqlx::query_as(
                    "SELECT seq, entry_id, recorded_at, body, leaf_hash, chain_hash \
                     FROM audit_entries WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                )
                .bind(i64::try_from(next).unwrap_or(i64::MAX))
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .bind(EXPORT_PAGE)
                .fetch_all(pool)
                .await?
            });
            let Some(last) = rows.last() else { break };
            next = u64::try_from(last.seq)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            for row in rows {
                let seq = u64::try_from(row.seq).unwrap_or(0);
                let recorded_at = from_nanos(row.recorded_at)
                    .and_then(|at| at.format(&Rfc3339).ok())
                    .ok_or_else(|| {
                        LedgerError::broken(
                            seq,
                            Some(&row.entry_id),
                            Problem::Malformed {
                                what: "recorded_at",
                            },
                        )
                    })?;
                out.line(&Line::Entry {
                    seq,
                    entry_id: row.entry_id,
                    recorded_at,
                    body: format::encode_body(&row.body),
                    leaf_hash: hex::encode(row.leaf_hash),
                    chain_hash: hex::encode(row.chain_hash),
                })
                .await?;
                summary.entries += 1;
                loop {
                    if heads.is_empty() && !heads_done {
                        let page = self.signed_heads(heads_after, crate::MAX_PAGE).await?;
                        heads_done = page.is_empty();
                        if let Some(last) = page.last() {
                            heads_after = last.size;
                        }
                        heads.extend(page);
                    }
                    match heads.front() {
                        Some(head) if head.size <= seq => {
                            if head.size == seq {
                                out.line(&Line::Head(HeadLine::from(head))).await?;
                                summary.heads += 1;
                            }
                            heads.pop_front();
                        }
                        _ => break,
                    }
                }
            }
        }
        // Heads beyond the last entry are written too, so that a truncated ledger shows as one.
        loop {
            for head in heads.drain(..) {
                if head.size >= next {
                    out.line(&Line::Head(HeadLine::from(&head))).await?;
                    summary.heads += 1;
                }
            }
            if heads_done {
                break;
            }
            let page = self.signed_heads(heads_after, crate::MAX_PAGE).await?;
            heads_done = page.is_empty();
            if let Some(last) = page.last() {
                heads_after = last.size;
            }
            heads.extend(page);
        }
        out.line(&Line::End { size }).await?;
        out.flush().await?;
        Ok(summary)
    }

    /// Exports to the file at `path`, resuming if it already holds an export of this ledger:
    /// the file is cut back to the end of its last complete entry line and continued from there,
    /// so repeated calls keep one up-to-date export and an interrupted call loses nothing. The
    /// file is fsynced before this returns.
    pub async fn export_file(&self, path: &Path) -> Result<ExportSummary, LedgerError> {
        let io = |err: std::io::Error| LedgerError::Io {
            reason: format!("export file `{}`: {err}", path.display()),
        };
        let owned = path.to_owned();
        let (keep, from_seq) = tokio::task::spawn_blocking(move || resume_point(&owned))
            .await
            .map_err(|err| LedgerError::Io {
                reason: err.to_string(),
            })?
            .map_err(io)?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .await
            .map_err(io)?;
        file.set_len(keep).await.map_err(io)?;
        let mut file = file;
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(keep))
            .await
            .map_err(io)?;
        let summary = self.export(&mut file, from_seq).await?;
        file.sync_all().await.map_err(io)?;
        Ok(summary)
    }

    /// The retention checkpoint: (size, chain hash after it), if entries were pruned.
    pub(crate) async fn checkpoint_row(&self) -> Result<Option<(u64, merkle::Hash)>, LedgerError> {
        let row: Option<(i64, Vec<u8>)> = dispatch!(&self.inner.db, |pool, dialect| {
            sqlx::query_as("SELECT size, chain_hash FROM ledger_checkpoint WHERE id = 1")
                .fetch_optional(pool)
                .await?
        });
        row.map(|(size, chain)| {
            let malformed = || {
                LedgerError::broken(
                    0,
                    None,
                    Problem::Malformed {
                        what: "retention checkpoint",
                    },
                )
            };
            Ok((
                u64::try_from(size).map_err(|_| malformed())?,
                crate::writer::to_hash(chain).ok_or_else(malformed)?,
            ))
        })
        .transpose()
    }
}

/// Where to continue an export file: the byte length to keep and the `from_seq` to pass. A
/// missing or empty file, or one without a complete entry line, starts afresh.
fn resume_point(path: &Path) -> std::io::Result<(u64, u64)> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(err) => return Err(err),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut resume = (0u64, 0u64);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        offset += read as u64;
        match serde_json::from_slice::<LineKind>(&line) {
            Ok(LineKind {
                kind,
                seq: Some(seq),
            }) if kind == "entry" => resume = (offset, seq.saturating_add(1)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Make sure nothing is cut that is not there (the file may have changed meanwhile).
    let len = reader.get_mut().seek(std::io::SeekFrom::End(0))?;
    Ok(if resume.0 <= len { resume } else { (0, 0) })
}

/// Serialises lines into a buffer and writes it out in large chunks.
struct LineWriter<'w, W> {
    writer: &'w mut W,
    buffer: Vec<u8>,
}

impl<W: AsyncWrite + Unpin + Send> LineWriter<'_, W> {
    async fn line(&mut self, line: &Line) -> Result<(), LedgerError> {
        serde_json::to_writer(&mut self.buffer, line).map_err(|err| LedgerError::Io {
            reason: err.to_string(),
        })?;
        self.buffer.push(b'\n');
        if self.buffer.len() >= 64 * 1024 {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), LedgerError> {
        self.writer
            .write_all(&self.buffer)
            .await
            .map_err(|err| LedgerError::Io {
                reason: format!("export: {err}"),
            })?;
        self.buffer.clear();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), LedgerError> {
        self.write_out().await?;
        self.writer.flush().await.map_err(|err| LedgerError::Io {
            reason: format!("export: {err}"),
        })
    }
}
