//! [`AgreementStore`]: every version of every agreement, in the ledger's
//! database, so all replicas enforce the same register. A versioned
//! register ([`crate::register`]): a version is reserved, recorded in the
//! ledger, then committed, and only committed versions are ever loaded.

use liaison_policy::{Agreement, PolicySet};

pub use crate::register::{Change, STALE_RESERVATION, StoreError};
use crate::register::{Reserved as ReservedVersion, Stored, Tables, VersionStore, Versioned};

/// The register of agreements.
pub type AgreementStore = VersionStore<Agreement>;

/// An agreement version reserved but not yet in force.
pub type Reserved = ReservedVersion<Agreement>;

/// One committed agreement version with its history.
pub type StoredVersion = Stored<Agreement>;

/// The PostgreSQL channel a committed change is announced on.
pub const CHANNEL: &str = "liaison_policy";

impl Versioned for Agreement {
    const TABLES: Tables = Tables {
        noun: "agreement",
        change: "an agreement change",
        versions: "agreement_versions",
        key: "isa_id",
        party: "provider",
        epoch: "policy_epoch",
        channel: CHANNEL,
        schema_lock: i64::from_be_bytes(*b"policydb"),
    };

    fn key(&self) -> &str {
        &self.id
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn party(&self) -> &str {
        &self.provider
    }

    fn status(&self) -> &str {
        self.status.as_str()
    }

    fn canonical(&self) -> Result<(String, String), String> {
        let body = self.to_toml().map_err(|e| e.to_string())?;
        let hash = self.content_hash().map_err(|e| e.to_string())?;
        Ok((body, hash))
    }

    /// The status column is not read: the text holds the status.
    fn parse(isa_id: &str, version: u32, body: &str, _status: &str) -> Result<Self, String> {
        let agreement = PolicySet::one_agreement(body).map_err(|e| e.to_string())?;
        if agreement.id != isa_id || agreement.version != version {
            return Err(format!(
                "the text holds `{}` version {}",
                agreement.id, agreement.version
            ));
        }
        Ok(agreement)
    }
}
