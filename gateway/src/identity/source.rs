//! [`IssuerSource`]: imports the configuration file's issuers into the
//! trust registry at start, and keeps the in-memory [`TrustRegistry`] in
//! step with the committed versions, as `PolicySource` does for agreements.
//!
//! The file's issuers are the baseline. At start each is compared with what
//! the file itself last recorded: unchanged, nothing is written, so a change
//! made at run time through `AdminService` stays in force across restarts;
//! changed (or new), the file's terms are recorded as the next version, so
//! an edit to the file is the newest change and wins. An issuer the file
//! recorded and no longer lists is recorded as removed. An import never
//! lifts a suspension: that takes a deliberate `SetIssuerStatus`.

use std::{
    collections::BTreeSet,
    sync::{Arc, Weak},
    time::Duration,
};

use liaison_ledger::Ledger;
use liaison_proto::v1 as pb;

use super::{
    TrustRegistry,
    store::{IssuerStatus, IssuerStore, IssuerVersion, StoreError},
};
use crate::{
    config::{Config, IssuerConfig},
    error::GatewayError,
    register::{self, Change, Follower, Origin, Reloader, Reserved, record},
};

/// The subject recorded for versions imported from the configuration file.
pub const CONFIG_FILE: &str = "config-file";

/// How often an import retries while another replica records the same
/// issuer, and how long it waits between tries.
const IMPORT_ATTEMPTS: u32 = 20;
const IMPORT_RETRY: Duration = Duration::from_millis(100);

/// What can stop the trust registry loading at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The registry could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An issuer's terms could not be written canonically.
    #[error("issuer `{url}`: {message}")]
    Terms {
        /// The issuer.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The ledger could not record an imported version.
    #[error("the ledger could not record issuer `{0}` from the configuration file")]
    Audit(String),
}

/// The registry's versions and the in-memory registry they feed.
#[derive(Debug)]
pub struct IssuerSource {
    store: IssuerStore,
    registry: Weak<TrustRegistry>,
    epoch: i64,
}

impl IssuerSource {
    /// Imports the configuration file's issuers and makes `registry` trust
    /// exactly the active issuers in the store. Fails, refusing start-up,
    /// if the store or the ledger cannot be written.
    pub async fn start(
        store: IssuerStore,
        ledger: &Ledger,
        config: &Config,
        registry: &Arc<TrustRegistry>,
    ) -> Result<Self, SourceError> {
        import(&store, ledger, &config.issuers).await?;
        let epoch = store.epoch().await?;
        apply(&store, registry).await?;
        Ok(Self {
            store,
            registry: Arc::downgrade(registry),
            epoch,
        })
    }

    /// Reloads the registry if the store's change counter moved. A store
    /// that cannot be read is logged by the caller and the issuers in force
    /// are kept.
    pub async fn refresh(&mut self) -> Result<bool, StoreError> {
        let epoch = self.store.epoch().await?;
        if epoch == self.epoch {
            return Ok(false);
        }
        let Some(registry) = self.registry.upgrade() else {
            return Ok(false);
        };
        let changed = apply(&self.store, &registry).await?;
        self.epoch = epoch;
        if changed {
            tracing::info!(
                generation = registry.generation(),
                "trust registry reloaded"
            );
        }
        Ok(changed)
    }

    /// Runs the source until the registry or every [`Reloader`] is gone:
    /// reloads on each announcement (`NOTIFY liaison_identity`), each
    /// `interval`, and each reloader request.
    pub async fn spawn(self, interval: Duration) -> Reloader {
        register::follow(self, interval).await
    }
}

impl Follower for IssuerSource {
    const WHAT: &'static str = "trust registry";
    const KEPT: &'static str = "the issuers in force are kept";
    type Error = StoreError;
    type Value = IssuerVersion;

    fn store(&self) -> &IssuerStore {
        &self.store
    }

    async fn refresh(&mut self) -> Result<bool, StoreError> {
        IssuerSource::refresh(self).await
    }

    fn gone(&self) -> bool {
        self.registry.strong_count() == 0
    }
}

/// Makes `registry` trust the store's active issuers.
async fn apply(store: &IssuerStore, registry: &TrustRegistry) -> Result<bool, StoreError> {
    let current = store.current().await?;
    Ok(registry.replace(
        current
            .iter()
            .filter(|v| v.status == IssuerStatus::Active)
            .map(|v| &v.issuer),
    ))
}

/// Records the file's issuers whose terms differ from what the file last
/// recorded, and the withdrawal of those it recorded and no longer lists.
async fn import(
    store: &IssuerStore,
    ledger: &Ledger,
    issuers: &[IssuerConfig],
) -> Result<(), SourceError> {
    for issuer in issuers {
        let url = issuer.url.get_ref();
        let hash = IssuerVersion::new(issuer.clone(), 0, IssuerStatus::Active)
            .map_err(|message| SourceError::Terms {
                url: url.clone(),
                message,
            })?
            .content_hash;
        let justification = "imported from the configuration file";
        for attempt in 1..=IMPORT_ATTEMPTS {
            let latest = store.latest(url).await?;
            let last_from_file = store.latest_by(url, CONFIG_FILE).await?;
            let unchanged_in_file = last_from_file
                .as_ref()
                .is_some_and(|v| v.status != IssuerStatus::Removed && v.content_hash == hash);
            let already_held = latest
                .as_ref()
                .is_some_and(|v| v.status != IssuerStatus::Removed && v.content_hash == hash);
            if unchanged_in_file || already_held {
                if latest.as_ref().is_some_and(|v| v.content_hash != hash) {
                    tracing::info!(
                        issuer = %url,
                        "the trust registry holds terms changed at run time; the file's unchanged terms are not imported again"
                    );
                }
                break;
            }
            let status = match latest.as_ref().map(|v| v.status) {
                Some(IssuerStatus::Suspended) => IssuerStatus::Suspended,
                _ => IssuerStatus::Active,
            };
            let base = latest.as_ref().map_or(0, |v| v.version);
            match import_one(store, ledger, issuer.clone(), base, status, justification).await {
                Ok(()) => break,
                Err(SourceError::Store(StoreError::Conflict(_))) if attempt < IMPORT_ATTEMPTS => {
                    tokio::time::sleep(IMPORT_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let listed: BTreeSet<&str> = issuers.iter().map(|i| i.url.get_ref().as_str()).collect();
    let justification = "no longer listed in the configuration file";
    for url in store.keys_changed_by(CONFIG_FILE).await? {
        if listed.contains(url.as_str()) {
            continue;
        }
        for attempt in 1..=IMPORT_ATTEMPTS {
            let withdrawn = store
                .latest_by(&url, CONFIG_FILE)
                .await?
                .is_none_or(|v| v.status == IssuerStatus::Removed);
            let Some(latest) = store.latest(&url).await? else {
                break;
            };
            if withdrawn || latest.status == IssuerStatus::Removed {
                break;
            }
            match import_one(
                store,
                ledger,
                latest.issuer,
                latest.version,
                IssuerStatus::Removed,
                justification,
            )
            .await
            {
                Ok(()) => break,
                Err(SourceError::Store(StoreError::Conflict(_))) if attempt < IMPORT_ATTEMPTS => {
                    tokio::time::sleep(IMPORT_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Records one version on behalf of the configuration file.
async fn import_one(
    store: &IssuerStore,
    ledger: &Ledger,
    issuer: IssuerConfig,
    base: u32,
    status: IssuerStatus,
    justification: &str,
) -> Result<(), SourceError> {
    let url = issuer.url.get_ref().clone();
    let agency = issuer.agency.get_ref().clone();
    let next = IssuerVersion::new(issuer, base.saturating_add(1), status).map_err(|message| {
        SourceError::Terms {
            url: url.clone(),
            message,
        }
    })?;
    let change = Change {
        agency: agency.clone(),
        by: CONFIG_FILE.into(),
        justification: justification.to_owned(),
    };
    let reserved = store.reserve(next, base, &change).await?;
    let entry = change_entry(
        &reserved,
        &change,
        Origin::import(
            agency,
            CONFIG_FILE,
            "configuration file".into(),
            "config-file/import",
        ),
    );
    match record(store, ledger, &reserved, &entry).await {
        Ok(_) => {
            tracing::info!(
                issuer = %url,
                version = reserved.value.version,
                status = %reserved.value.status,
                "issuer version imported from the configuration file"
            );
            Ok(())
        }
        Err(GatewayError::VersionConflict { message }) => {
            Err(SourceError::Store(StoreError::Conflict(message)))
        }
        Err(_) => Err(SourceError::Audit(url)),
    }
}

/// The audit entry for one change to the trust registry.
pub fn change_entry(
    reserved: &Reserved<IssuerVersion>,
    change: &Change,
    origin: Origin<'_>,
) -> pb::AuditEntry {
    let version = &reserved.value;
    pb::AuditEntry {
        policy_version: reserved.content_hash.clone(),
        matched_rules: vec![
            format!("status:{}", version.status),
            format!("agency:{}", version.agency()),
        ],
        ..register::change_entry(
            change,
            origin,
            format!("issuer:{}@{}", version.url(), version.version),
        )
    }
}
