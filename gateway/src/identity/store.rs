//! [`IssuerStore`]: every version of every trusted issuer's terms, in the
//! ledger's database beside the agreement register, so all replicas trust
//! the same issuers.
//!
//! It is a versioned register ([`crate::register`]) as the agreement
//! register is: a version is reserved (stored, not in force), appended to
//! the ledger, then committed with the id of the entry that recorded it,
//! and only committed versions are ever loaded. A version holds the canonical TOML of one `[[issuer]]`
//! table, its content hash, and a status; the hash covers the terms only,
//! so a suspension and a reactivation leave it unchanged and the replicas
//! can tell that an issuer's terms did not move.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub use crate::register::StoreError;
use crate::{
    config::IssuerConfig,
    register::{Stored, Tables, VersionStore, Versioned},
};

/// The PostgreSQL channel a committed change to the trust registry is
/// announced on.
pub const CHANNEL: &str = "liaison_identity";

/// The trust registry's versions, kept beside the agreement register and
/// on its pool ([`VersionStore::beside`]).
pub type IssuerStore = VersionStore<IssuerVersion>;

/// One committed version with who made it, when and why.
pub type StoredIssuer = Stored<IssuerVersion>;

/// Whether an issuer's tokens are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerStatus {
    /// Trusted.
    Active,
    /// Not trusted until reactivated; its terms are kept.
    Suspended,
    /// Not trusted; only a new proposal brings it back.
    Removed,
}

/// One version of an issuer's terms.
#[derive(Debug, Clone)]
pub struct IssuerVersion {
    /// The terms.
    pub issuer: IssuerConfig,
    /// The version, from 1.
    pub version: u32,
    /// Whether its tokens are accepted.
    pub status: IssuerStatus,
    /// `sha256:` and the hex SHA-256 of the terms' canonical text.
    pub content_hash: String,
}

/// The canonical document: one `[[issuer]]` table.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct One {
    issuer: Vec<IssuerConfig>,
}

impl IssuerStatus {
    /// The status as stored and as `liaison query` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Removed => "removed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "removed" => Some(Self::Removed),
            _ => None,
        }
    }
}

impl fmt::Display for IssuerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl IssuerVersion {
    /// `issuer` at `version` with `status`, hashed.
    pub fn new(issuer: IssuerConfig, version: u32, status: IssuerStatus) -> Result<Self, String> {
        let (_, content_hash) = canonical(&issuer)?;
        Ok(Self {
            issuer,
            version,
            status,
            content_hash,
        })
    }

    /// The issuer URL.
    pub fn url(&self) -> &str {
        self.issuer.url.get_ref()
    }

    /// The agency it speaks for.
    pub fn agency(&self) -> &str {
        self.issuer.agency.get_ref()
    }
}

/// The canonical TOML of an issuer's terms (every setting written out, in
/// a fixed order) and its content hash.
pub fn canonical(issuer: &IssuerConfig) -> Result<(String, String), String> {
    let text = toml::to_string(&One {
        issuer: vec![issuer.clone()],
    })
    .map_err(|e| format!("the issuer cannot be written as TOML: {e}"))?;
    let hash = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    );
    Ok((text, hash))
}

impl Versioned for IssuerVersion {
    const TABLES: Tables = Tables {
        noun: "issuer",
        change: "a trust registry change",
        versions: "issuer_versions",
        key: "issuer_url",
        party: "agency",
        epoch: "identity_epoch",
        channel: CHANNEL,
        schema_lock: i64::from_be_bytes(*b"issuerdb"),
    };

    fn key(&self) -> &str {
        self.url()
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn party(&self) -> &str {
        self.agency()
    }

    fn status(&self) -> &str {
        self.status.as_str()
    }

    fn canonical(&self) -> Result<(String, String), String> {
        canonical(&self.issuer)
    }

    fn parse(url: &str, version: u32, body: &str, status: &str) -> Result<Self, String> {
        parse(url, version, body, status)
    }
}

/// Reads a stored version back. Stored terms were validated when they were
/// written; they are not validated again here, so an agency later dropped
/// from the file does not make the whole registry unreadable.
fn parse(url: &str, version: u32, body: &str, status: &str) -> Result<IssuerVersion, String> {
    let one: One = toml::from_str(body).map_err(|e| e.message().trim().to_owned())?;
    let mut issuers = one.issuer.into_iter();
    let (Some(issuer), None) = (issuers.next(), issuers.next()) else {
        return Err("the text must hold exactly one issuer".into());
    };
    if issuer.url.get_ref() != url {
        return Err(format!("the text holds issuer `{}`", issuer.url.get_ref()));
    }
    let status = IssuerStatus::parse(status).ok_or_else(|| format!("unknown status `{status}`"))?;
    IssuerVersion::new(issuer, version, status)
}
