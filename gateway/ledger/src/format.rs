//! The JSON Lines format shared by exports and witness files.
//!
//! An export is, one JSON object per line:
//!
//! ```text
//! {"type":"header","format":"liaison-ledger-export","version":1}
//! {"type":"checkpoint","size":N,"chain_hash":HEX,"frontier":[HEX…],"head":{…}}   only if pruned
//! {"type":"entry","seq":1,"entry_id":"…","recorded_at":RFC3339,"body":BASE64,"leaf_hash":HEX,"chain_hash":HEX}
//! {"type":"head","size":1,"timestamp":MS,"root":HEX,"key_id":HEX,"signature":BASE64}
//! …
//! {"type":"end","size":N}
//! ```
//!
//! Each `head` line follows the `entry` line of its size. A witness file is a sequence of `head`
//! lines. Hashes are lowercase hex; bodies and signatures standard base64 with padding; times
//! RFC 3339 in UTC with nanoseconds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;
use crate::sign::{KeyId, SignedTreeHead};

/// The `format` of the header line.
pub(crate) const FORMAT: &str = "liaison-ledger-export";
/// The export format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;

/// One line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Line {
    Header {
        format: String,
        version: u32,
    },
    Checkpoint {
        size: u64,
        chain_hash: String,
        frontier: Vec<String>,
        head: HeadLine,
    },
    Entry {
        seq: u64,
        entry_id: String,
        recorded_at: String,
        body: String,
        leaf_hash: String,
        chain_hash: String,
    },
    Head(HeadLine),
    End {
        size: u64,
    },
}

/// A signed tree head as text.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeadLine {
    pub size: u64,
    pub timestamp: u64,
    pub root: String,
    pub key_id: String,
    pub signature: String,
}

/// Just enough of a line to find where an interrupted export can resume.
#[derive(Debug, Deserialize)]
pub(crate) struct LineKind {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: Option<u64>,
}

impl From<&SignedTreeHead> for HeadLine {
    fn from(head: &SignedTreeHead) -> Self {
        Self {
            size: head.size,
            timestamp: head.timestamp,
            root: hex::encode(head.root),
            key_id: head.key_id.to_string(),
            signature: BASE64.encode(head.signature),
        }
    }
}

impl HeadLine {
    /// The head, if every field decodes.
    pub(crate) fn decode(&self) -> Option<SignedTreeHead> {
        let signature = BASE64.decode(&self.signature).ok()?.try_into().ok()?;
        Some(SignedTreeHead {
            size: self.size,
            root: decode_hash(&self.root)?,
            timestamp: self.timestamp,
            key_id: KeyId::from_hex(&self.key_id)?,
            signature,
        })
    }
}

/// 64 hex digits.
pub(crate) fn decode_hash(text: &str) -> Option<Hash> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

pub(crate) fn encode_body(body: &[u8]) -> String {
    BASE64.encode(body)
}

pub(crate) fn decode_body(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}
