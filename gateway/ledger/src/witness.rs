//! Witness files: signed heads published outside the database.
//!
//! Signatures stop anyone without the key from forging a history, but whoever controls the
//! database can still restore an older backup, or delete the newest entries together with their
//! heads: what remains is a shorter history that verifies. The defence is to publish each signed
//! head somewhere the database's administrators cannot rewrite, and to check the ledger against
//! it. A witness file is that record: the sealer appends each head it signs as one JSON line (the
//! `head` line of an export) and fsyncs it ([`crate::SealerOptions::witness`]). Ship it to other
//! storage, another agency, or an oversight body; verification then fails with
//! [`Problem::RolledBack`](crate::Problem::RolledBack) if the ledger ends before a witnessed head,
//! and [`Problem::ForkedHeads`](crate::Problem::ForkedHeads) if its root at a witnessed size
//! differs.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;

use crate::LedgerError;
use crate::format::{HeadLine, Line};
use crate::sign::{HeadVerifier, SignedTreeHead};

/// Appends signed heads to a file.
#[derive(Debug, Clone)]
pub struct WitnessFile {
    path: PathBuf,
}

impl WitnessFile {
    /// A witness at `path` (created on first publish).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Appends `head` as one line and waits until it is on disk.
    pub async fn publish(&self, head: &SignedTreeHead) -> Result<(), LedgerError> {
        let io = |err: std::io::Error| LedgerError::Io {
            reason: format!("witness file `{}`: {err}", self.path.display()),
        };
        let mut line = serde_json::to_vec(&Line::Head(HeadLine::from(head))).map_err(|err| {
            LedgerError::Io {
                reason: err.to_string(),
            }
        })?;
        line.push(b'\n');
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(io)?;
        file.write_all(&line).await.map_err(io)?;
        file.sync_data().await.map_err(io)?;
        Ok(())
    }
}

/// Reads a witness: one `head` line per signed head. Every head must be signed by `key`; two
/// different roots at one size are reported as [`Problem::ForkedHeads`](crate::Problem). The
/// result is sorted by size without repeats, ready for [`crate::verify_export_with_witness`] and
/// [`crate::Ledger::verify_signed`].
pub fn read_witness(
    reader: impl BufRead,
    key: &impl HeadVerifier,
) -> Result<Vec<SignedTreeHead>, LedgerError> {
    let mut heads = Vec::new();
    for (number, line) in (1u64..).zip(reader.lines()) {
        let line = line.map_err(|err| LedgerError::Io {
            reason: err.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |reason: String| LedgerError::InvalidWitness {
            line: number,
            reason,
        };
        let head = match serde_json::from_str::<Line>(&line) {
            Ok(Line::Head(head)) => head
                .decode()
                .ok_or_else(|| invalid("a field does not decode".to_owned()))?,
            Ok(_) => return Err(invalid("not a head line".to_owned())),
            Err(err) => return Err(invalid(err.to_string())),
        };
        key.verify_head(&head)
            .map_err(|err| invalid(format!("{err}")))?;
        heads.push(head);
    }
    crate::check::sort_witness(heads)
}

/// [`read_witness`] from a file.
pub fn read_witness_file(
    path: &Path,
    key: &impl HeadVerifier,
) -> Result<Vec<SignedTreeHead>, LedgerError> {
    let file = std::fs::File::open(path).map_err(|err| LedgerError::Io {
        reason: format!("witness file `{}`: {err}", path.display()),
    })?;
    read_witness(std::io::BufReader::new(file), key)
}
