//! [`PolicySource`]: builds the engine from the register and the policy
//! file, and rebuilds it when either changes.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use liaison_ledger::Ledger;
use liaison_policy::{Agreement, OperatorRule, PolicyEngine, PolicySet};
use liaison_proto::v1 as pb;
use sha2::Digest as _;
use tokio::sync::{mpsc, oneshot, watch};

use super::store::{AgreementStore, Change, Reserved, StoreError};
use crate::{error::GatewayError, share::audit};

/// The subject recorded for versions imported from the policy file.
pub const POLICY_FILE: &str = "policy-file";

/// What can stop policy loading at start-up or a later rebuild.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The policy file is unreadable or invalid.
    #[error("{0}")]
    File(String),
    /// The register could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file states a version the register holds with other terms.
    #[error(
        "agreement `{isa_id}` version {version} in the policy file differs from the version \
         already in the register; a change to an agreement must be a new version"
    )]
    Rewritten {
        /// The agreement.
        isa_id: String,
        /// The version.
        version: u32,
    },
    /// The register and the file's rules do not compile.
    #[error("the register does not compile: {0}")]
    Compile(String),
    /// The ledger could not record an imported version.
    #[error("the ledger could not record agreement `{0}` from the policy file")]
    Audit(String),
}

/// Enough to tell whether the policy file changed since it was last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
}

/// The register, the file, and the sender of the engine the share stack
/// reads.
#[derive(Debug)]
pub struct PolicySource {
    store: AgreementStore,
    ledger: Arc<Ledger>,
    file: PathBuf,
    stamp: Option<FileStamp>,
    rules: Vec<OperatorRule>,
    epoch: i64,
    tx: watch::Sender<Arc<PolicyEngine>>,
}

impl PolicySource {
    /// Imports the policy file into the register and compiles what is in
    /// force. Fails, refusing start-up, if the file is invalid (naming the
    /// line), rewrites a recorded version, or the result does not compile.
    pub async fn start(
        store: AgreementStore,
        ledger: Arc<Ledger>,
        file: PathBuf,
    ) -> Result<(Self, watch::Receiver<Arc<PolicyEngine>>), SourceError> {
        let (text, stamp) = read(&file).await?;
        let set = PolicySet::from_toml(&text).map_err(|e| SourceError::File(e.to_string()))?;
        let rules = set.rules().to_vec();
        import(&store, &ledger, &file, set.agreements()).await?;
        let epoch = store.epoch().await?;
        let engine = compile(store.current().await?, rules.clone()).await?;
        let (tx, rx) = watch::channel(Arc::new(engine));
        Ok((
            Self {
                store,
                ledger,
                file,
                stamp: Some(stamp),
                rules,
                epoch,
                tx,
            },
            rx,
        ))
    }

    /// The register this source reads.
    pub fn store(&self) -> &AgreementStore {
        &self.store
    }

    /// Rebuilds the engine if the register or the file changed. A file that
    /// no longer parses, or a register that no longer compiles, is logged
    /// and the engine in force is kept: a replica never stops enforcing
    /// because of a bad edit.
    pub async fn refresh(&mut self) -> Result<bool, SourceError> {
        let mut changed = false;
        if let Some((text, stamp)) = self.file_changed().await {
            changed = true;
            match PolicySet::from_toml(&text) {
                Ok(set) => {
                    import(&self.store, &self.ledger, &self.file, set.agreements()).await?;
                    self.rules = set.rules().to_vec();
                }
                Err(e) => {
                    tracing::error!(
                        file = %self.file.display(),
                        error = %e,
                        "the policy file changed but is not valid; the policy in force is kept"
                    );
                }
            }
            self.stamp = Some(stamp);
        }
        let epoch = self.store.epoch().await?;
        if epoch != self.epoch {
            changed = true;
        }
        if !changed {
            return Ok(false);
        }
        let engine = compile(self.store.current().await?, self.rules.clone()).await?;
        self.epoch = epoch;
        let before = self.tx.borrow().version().to_owned();
        if engine.version() == before {
            return Ok(false);
        }
        tracing::info!(
            from = %before,
            to = %engine.version(),
            "policy reloaded"
        );
        self.tx.send_replace(Arc::new(engine));
        Ok(true)
    }

    /// The file's text and stamp when its contents differ from the last
    /// ones read; read once, so what is imported is what was compared.
    async fn file_changed(&self) -> Option<(String, FileStamp)> {
        let meta = tokio::fs::metadata(&self.file).await.ok()?;
        let last = self.stamp.as_ref()?;
        let modified = meta.modified().ok();
        if modified == last.modified && meta.len() == last.len {
            return None;
        }
        let (text, stamp) = read(&self.file).await.ok()?;
        (stamp.digest != last.digest).then_some((text, stamp))
    }

    /// Runs the source until every reader of its engine is gone: rebuilds on
    /// each announcement, each `interval`, and each [`Reloader`] request.
    pub async fn spawn(mut self, interval: Duration) -> Reloader {
        let (requests, mut incoming) = mpsc::channel::<oneshot::Sender<()>>(64);
        let mut listener = match self.store.listener().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for policy changes; polling only");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let announced = async {
                    match listener.as_mut() {
                        Some(l) => Some(l.recv().await),
                        None => std::future::pending().await,
                    }
                };
                let mut waiting = Vec::new();
                tokio::select! {
                    () = self.tx.closed() => break,
                    request = incoming.recv() => match request {
                        Some(reply) => waiting.push(reply),
                        None => break,
                    },
                    notice = announced => {
                        if let Some(Err(e)) = notice {
                            tracing::warn!(error = %e, "lost the policy change channel; polling only");
                            listener = None;
                        }
                    }
                    _ = tick.tick() => {}
                }
                // Answer every request queued meanwhile with the same rebuild.
                while let Ok(reply) = incoming.try_recv() {
                    waiting.push(reply);
                }
                if let Err(e) = self.refresh().await {
                    tracing::error!(error = %e, "policy reload failed; the policy in force is kept");
                }
                for reply in waiting {
                    let _ = reply.send(());
                }
            }
        });
        Reloader { requests }
    }
}

/// Asks a running [`PolicySource`] to rebuild now.
#[derive(Debug, Clone)]
pub struct Reloader {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

impl Reloader {
    /// A reloader whose requests go to `requests` (another source's loop).
    pub(crate) fn new(requests: mpsc::Sender<oneshot::Sender<()>>) -> Self {
        Self { requests }
    }

    /// Rebuilds and returns once the new engine is in force on this replica.
    pub async fn reload_now(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(reply).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn read(file: &Path) -> Result<(String, FileStamp), SourceError> {
    let cannot =
        |e: std::io::Error| SourceError::File(format!("cannot read `{}`: {e}", file.display()));
    let meta = tokio::fs::metadata(file).await.map_err(cannot)?;
    let text = tokio::fs::read_to_string(file).await.map_err(cannot)?;
    let stamp = FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        digest: sha2::Sha256::digest(text.as_bytes()).into(),
    };
    Ok((text, stamp))
}

async fn compile(
    agreements: Vec<Agreement>,
    rules: Vec<OperatorRule>,
) -> Result<PolicyEngine, SourceError> {
    tokio::task::spawn_blocking(move || {
        let set =
            PolicySet::new(agreements, rules).map_err(|e| SourceError::Compile(e.to_string()))?;
        PolicyEngine::compile(&set).map_err(|e| SourceError::Compile(e.to_string()))
    })
    .await
    .map_err(|e| SourceError::Compile(e.to_string()))?
}

/// Compiles the register as it would be with `proposed` in place of its
/// current version, so a change that would break policy is refused before
/// it is stored.
pub async fn compiles_with(
    store: &AgreementStore,
    rules: Vec<OperatorRule>,
    proposed: Agreement,
) -> Result<(), SourceError> {
    let mut agreements: Vec<Agreement> = store
        .current()
        .await?
        .into_iter()
        .filter(|a| a.id != proposed.id)
        .collect();
    agreements.push(proposed);
    compile(agreements, rules).await.map(|_| ())
}

/// Imports the file's agreements: a version the register lacks and that is
/// newer than its latest is recorded; an identical one is skipped; an older
/// one is left (the register has moved on through `AdminService`); a
/// recorded version with other terms is refused.
async fn import(
    store: &AgreementStore,
    ledger: &Ledger,
    file: &Path,
    agreements: &[Agreement],
) -> Result<(), SourceError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for agreement in agreements {
        let hash = agreement
            .content_hash()
            .map_err(|e| SourceError::File(e.to_string()))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match store.stored_hash(&agreement.id, agreement.version).await? {
                Some((stored, true)) if stored == hash => break,
                Some((_, true)) => {
                    return Err(SourceError::Rewritten {
                        isa_id: agreement.id.clone(),
                        version: agreement.version,
                    });
                }
                // Another replica is recording it right now.
                Some((_, false)) if attempts < 20 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                _ => {}
            }
            let latest = store.latest(&agreement.id).await?.map_or(0, |a| a.version);
            if agreement.version <= latest {
                tracing::info!(
                    isa_id = %agreement.id,
                    file_version = agreement.version,
                    register_version = latest,
                    "the register holds a later version than the policy file; keeping it"
                );
                break;
            }
            let change = Change {
                agency: agreement.provider.clone(),
                by: POLICY_FILE.into(),
                justification: format!("imported from the policy file `{name}`"),
            };
            match store.reserve(agreement.clone(), latest, &change).await {
                Ok(reserved) => {
                    let entry = change_entry(
                        &reserved,
                        &change,
                        pb::AuditPrincipal {
                            agency_id: agreement.provider.clone(),
                            subject: POLICY_FILE.into(),
                            display_name: format!("policy file {name}"),
                            is_system: true,
                            ..Default::default()
                        },
                        "policy-file/import",
                        String::new(),
                        String::new(),
                    );
                    record(store, ledger, &reserved, &entry)
                        .await
                        .map_err(|_| SourceError::Audit(agreement.id.clone()))?;
                    tracing::info!(
                        isa_id = %agreement.id,
                        version = agreement.version,
                        "agreement version imported from the policy file"
                    );
                    break;
                }
                Err(StoreError::Conflict(_)) if attempts < 20 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The audit entry for one change to the register.
pub fn change_entry(
    reserved: &Reserved,
    change: &Change,
    principal: pb::AuditPrincipal,
    method: &str,
    client_address: String,
    trace_id: String,
) -> pb::AuditEntry {
    let a = &reserved.agreement;
    pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        recipient_agency_id: principal.agency_id.clone(),
        principal: Some(principal),
        action: pb::AuditAction::Administer as i32,
        method: method.to_owned(),
        justification: change.justification.clone(),
        isa_id: a.id.clone(),
        isa_version: a.version,
        legal_basis: a.legal_basis.clone(),
        policy_version: reserved.content_hash.clone(),
        allowed: true,
        matched_rules: vec![format!("status:{}", a.status)],
        outcome: pb::AuditOutcome::Recorded as i32,
        target: format!("agreement:{}@{}", a.id, a.version),
        client_address,
        trace_id,
        ..Default::default()
    }
}

/// Appends `entry` and only then puts `reserved` in force. If the append
/// fails the reservation is dropped and nothing changes anywhere.
pub async fn record(
    store: &AgreementStore,
    ledger: &Ledger,
    reserved: &Reserved,
    entry: &pb::AuditEntry,
) -> Result<pb::Receipt, GatewayError> {
    let receipt = match audit::append(ledger, entry).await {
        Ok(receipt) => receipt,
        Err(e) => {
            tracing::error!(error = %e, isa_id = %reserved.agreement.id, "cannot record an agreement change; it is not made");
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
                    "an agreement change is recorded in the ledger but could not be put in force"
                );
                return Err(GatewayError::internal(
                    "the change could not be put in force",
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "retrying an agreement commit");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
    Err(GatewayError::internal(
        "the change could not be put in force",
    ))
}
