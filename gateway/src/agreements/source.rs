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
use tokio::sync::watch;

use super::store::{AgreementStore, Change, Reserved, StoreError};
use crate::register::{self, Follower, Origin, Reloader, record};

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
    pub async fn spawn(self, interval: Duration) -> Reloader {
        register::follow(self, interval).await
    }
}

impl Follower for PolicySource {
    const WHAT: &'static str = "policy";
    const KEPT: &'static str = "the policy in force is kept";
    type Error = SourceError;
    type Value = Agreement;

    fn store(&self) -> &AgreementStore {
        &self.store
    }

    async fn refresh(&mut self) -> Result<bool, SourceError> {
        PolicySource::refresh(self).await
    }

    async fn closed(&self) {
        self.tx.closed().await;
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
                        Origin::import(
                            agreement.provider.clone(),
                            POLICY_FILE,
                            format!("policy file {name}"),
                            "policy-file/import",
                        ),
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
pub fn change_entry(reserved: &Reserved, change: &Change, origin: Origin<'_>) -> pb::AuditEntry {
    let a = &reserved.value;
    pb::AuditEntry {
        isa_id: a.id.clone(),
        isa_version: a.version,
        legal_basis: a.legal_basis.clone(),
        policy_version: reserved.content_hash.clone(),
        matched_rules: vec![format!("status:{}", a.status)],
        ..register::change_entry(change, origin, format!("agreement:{}@{}", a.id, a.version))
    }
}
