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
use tokio::sync::{mpsc, oneshot};

use super::{
    TrustRegistry,
    store::{IssuerStatus, IssuerStore, IssuerVersion, StoreError},
};
use crate::{
    agreements::{Change, Reloader},
    config::{Config, IssuerConfig},
    error::GatewayError,
    share::audit,
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

    /// The store this source reads.
    pub fn store(&self) -> &IssuerStore {
        &self.store
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
    pub async fn spawn(mut self, interval: Duration) -> Reloader {
        let (requests, mut incoming) = mpsc::channel::<oneshot::Sender<()>>(64);
        let mut listener = match self.store.listener().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for trust registry changes; polling only");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if self.registry.strong_count() == 0 {
                    break;
                }
                let announced = async {
                    match listener.as_mut() {
                        Some(l) => Some(l.recv().await),
                        None => std::future::pending().await,
                    }
                };
                let mut waiting = Vec::new();
                tokio::select! {
                    request = incoming.recv() => match request {
                        Some(reply) => waiting.push(reply),
                        None => break,
                    },
                    notice = announced => {
                        if let Some(Err(e)) = notice {
                            tracing::warn!(error = %e, "lost the trust registry change channel; polling only");
                            listener = None;
                        }
                    }
                    _ = tick.tick() => {}
                }
                while let Ok(reply) = incoming.try_recv() {
                    waiting.push(reply);
                }
                if let Err(e) = self.refresh().await {
                    tracing::error!(error = %e, "trust registry reload failed; the issuers in force are kept");
                }
                for reply in waiting {
                    let _ = reply.send(());
                }
            }
        });
        Reloader::new(requests)
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
    for url in store.urls_changed_by(CONFIG_FILE).await? {
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
        pb::AuditPrincipal {
            agency_id: agency,
            subject: CONFIG_FILE.into(),
            display_name: "configuration file".into(),
            is_system: true,
            ..Default::default()
        },
        "config-file/import",
        String::new(),
        String::new(),
    );
    match record(store, ledger, &reserved, &entry).await {
        Ok(_) => {
            tracing::info!(
                issuer = %url,
                version = reserved.version,
                status = %reserved.status,
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
    version: &IssuerVersion,
    change: &Change,
    principal: pb::AuditPrincipal,
    method: &str,
    client_address: String,
    trace_id: String,
) -> pb::AuditEntry {
    pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        recipient_agency_id: principal.agency_id.clone(),
        principal: Some(principal),
        action: pb::AuditAction::Administer as i32,
        method: method.to_owned(),
        justification: change.justification.clone(),
        policy_version: version.content_hash.clone(),
        allowed: true,
        matched_rules: vec![
            format!("status:{}", version.status),
            format!("agency:{}", version.agency()),
        ],
        outcome: pb::AuditOutcome::Recorded as i32,
        target: format!("issuer:{}@{}", version.url(), version.version),
        client_address,
        trace_id,
        ..Default::default()
    }
}

/// Appends `entry` and only then puts `reserved` in force. If the append
/// fails the reservation is dropped and nothing changes anywhere.
pub async fn record(
    store: &IssuerStore,
    ledger: &Ledger,
    reserved: &IssuerVersion,
    entry: &pb::AuditEntry,
) -> Result<pb::Receipt, GatewayError> {
    let receipt = match audit::append(ledger, entry).await {
        Ok(receipt) => receipt,
        Err(e) => {
            tracing::error!(error = %e, issuer = %reserved.url(), "cannot record a trust registry change; it is not made");
            if let Err(e) = store.abandon(reserved).await {
                tracing::warn!(error = %e, "cannot drop the reservation; it expires by itself");
            }
            return Err(GatewayError::AuditUnavailable);
        }
    };
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match store.commit(reserved, &receipt.entry_id).await {
            Ok(()) => return Ok(receipt),
            Err(StoreError::Conflict(message)) => {
                return Err(GatewayError::VersionConflict { message });
            }
            Err(e) if attempt == 5 => {
                tracing::error!(
                    error = %e,
                    entry_id = %receipt.entry_id,
                    "a trust registry change is recorded in the ledger but could not be put in force"
                );
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "retrying a trust registry commit");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
    Err(GatewayError::internal(
        "the change could not be put in force",
    ))
}
