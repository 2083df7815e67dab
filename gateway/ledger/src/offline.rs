//! Verifying an export with nothing but the export and the ledger's public key.
//!
//! [`verify_export`] reads the export line by line (memory stays O(log n) plus one line),
//! recomputes every leaf hash from its body and the hash chain, rebuilds the Merkle tree and
//! checks it against every signed head in the export, checking each signature with the public
//! key. It returns the first problem as [`LedgerError::Broken`], naming the first bad entry (an
//! edited body, a broken chain, a missing or repeated entry) or, when hashes were recomputed to
//! hide an edit, the span up to the first signed head that no longer matches; or the heads that
//! contradict each other (a fork, a foreign signature). A cut-off export fails with
//! [`Problem::Truncated`]. An export of an older backup is a valid export of an older ledger; it
//! is caught by also checking the heads of a witness file
//! ([`verify_export_with_witness`]).

use std::io::BufRead;
use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::LedgerError;
use crate::check::{Checker, sort_witness};
use crate::error::Problem;
use crate::format::{self, Line, decode_body, decode_hash};
use crate::merkle::Hash;
use crate::sign::{HeadVerifier, SignedTreeHead};
use crate::witness::read_witness_file;

/// The longest line accepted (an entry's body is at most three quarters of it).
const MAX_LINE: usize = 64 << 20;

/// What a verified export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// The first entry in the export (1, or the one after the retention checkpoint).
    pub first_seq: u64,
    /// The last entry: the size of the ledger exported.
    pub size: u64,
    /// Entries checked.
    pub entries: u64,
    /// Signed heads checked, including the checkpoint's.
    pub heads: u64,
    /// The latest signed head. Entries after its size are in the export but not yet signed.
    pub latest_head: Option<SignedTreeHead>,
    /// The Merkle root over all entries.
    pub root: Hash,
    /// The chain hash after the last entry.
    pub chain_head: Hash,
    /// Witnessed heads matched against the export.
    pub witnessed: u64,
}

/// Verifies an export against the ledger's public key. See the [module docs](self).
pub fn verify_export(
    reader: impl BufRead,
    public_key: &impl HeadVerifier,
) -> Result<ExportReport, LedgerError> {
    verify_export_with_witness(reader, public_key, &[])
}

/// [`verify_export`], also checking the export against witnessed heads (see
/// [`crate::read_witness`]): each must match the root at its size, and none may be beyond the end.
pub fn verify_export_with_witness(
    mut reader: impl BufRead,
    public_key: &impl HeadVerifier,
    witness: &[SignedTreeHead],
) -> Result<ExportReport, LedgerError> {
    let witness = sort_witness(witness.to_vec())?;
    let mut checker = Checker::new(Some(public_key), &witness);
    let mut buffer = Vec::new();
    let mut number = 0u64;
    let mut end: Option<u64> = None;
    loop {
        buffer.clear();
        let read = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|err| LedgerError::Io {
                reason: format!("export: {err}"),
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        let next = checker.size() + 1;
        let malformed = || LedgerError::broken(next, None, Problem::MalformedLine { line: number });
        if buffer.last() != Some(&b'\n') {
            // The last line was cut off (or is too long to be one of ours).
            return Err(if buffer.len() > MAX_LINE {
                malformed()
            } else {
                LedgerError::broken(next, None, Problem::Truncated)
            });
        }
        if end.is_some() {
            return Err(malformed());
        }
        let line: Line = serde_json::from_slice(&buffer).map_err(|_| malformed())?;
        match line {
            Line::Header { format, version } => {
                if number != 1 || format != format::FORMAT || version != format::VERSION {
                    return Err(malformed());
                }
            }
            _ if number == 1 => return Err(malformed()),
            Line::Checkpoint {
                size,
                chain_hash,
                frontier,
                head,
            } => {
                if number != 2 {
                    return Err(malformed());
                }
                let head = head.decode().ok_or_else(malformed)?;
                let chain = decode_hash(&chain_hash).ok_or_else(malformed)?;
                let frontier = frontier
                    .iter()
                    .map(|hash| decode_hash(hash))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(malformed)?;
                if head.size != size {
                    return Err(malformed());
                }
                checker.checkpoint(&head, chain, &frontier)?;
            }
            Line::Entry {
                seq,
                entry_id,
                recorded_at,
                body,
                leaf_hash,
                chain_hash,
            } => {
                let body = decode_body(&body).ok_or_else(malformed)?;
                let leaf = decode_hash(&leaf_hash).ok_or_else(malformed)?;
                let chain = decode_hash(&chain_hash).ok_or_else(malformed)?;
                OffsetDateTime::parse(&recorded_at, &Rfc3339).map_err(|_| malformed())?;
                checker.entry(seq, &entry_id, &body, &leaf, &chain)?;
            }
            Line::Head(head) => {
                let head = head.decode().ok_or_else(malformed)?;
                checker.head(&head)?;
            }
            Line::End { size } => {
                let have = checker.size();
                if size > have {
                    // Entries the end line promises are missing.
                    return Err(LedgerError::broken(have + 1, None, Problem::Truncated));
                }
                if size < have {
                    return Err(malformed());
                }
                end = Some(size);
            }
        }
    }
    if number == 0 {
        return Err(LedgerError::broken(1, None, Problem::Truncated));
    }
    if end.is_none() {
        return Err(LedgerError::broken(
            checker.size() + 1,
            None,
            Problem::Truncated,
        ));
    }
    let checked = checker.finish()?;
    Ok(ExportReport {
        first_seq: checked.first_seq,
        size: checked.size,
        entries: checked.size + 1 - checked.first_seq,
        heads: checked.heads,
        latest_head: checked.latest_head,
        root: checked.root,
        chain_head: checked.chain,
        witnessed: checked.witnessed,
    })
}

/// Verifies the export file at `export` with `public_key`, and against the witness file at
/// `witness` when given: the one call behind `liaison audit verify --export`.
pub fn verify_export_file(
    export: &Path,
    public_key: &impl HeadVerifier,
    witness: Option<&Path>,
) -> Result<ExportReport, LedgerError> {
    let heads = match witness {
        Some(path) => read_witness_file(path, public_key)?,
        None => Vec::new(),
    };
    let file = std::fs::File::open(export).map_err(|err| LedgerError::Io {
        reason: format!("export file `{}`: {err}", export.display()),
    })?;
    verify_export_with_witness(std::io::BufReader::new(file), public_key, &heads)
}
