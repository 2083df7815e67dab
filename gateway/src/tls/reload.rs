//! Certificate rotation without a restart. The files TLS is read from are
//! checked on an interval (and at once on SIGHUP); when their content has
//! changed they are loaded and checked whole, and only then swapped in.
//! Handshakes begun after the swap get the new material; established
//! connections keep the configuration they were accepted with. New material
//! that does not load (unreadable, a key that is not the certificate's, an
//! expired certificate, a stale CRL) is refused: the old stays in service,
//! the error is logged with the file, and the failure is counted.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use parking_lot::{Mutex, RwLock};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::material::{Material, Sources};

/// What the reloader has done, for health detail and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Material swapped in since start.
    pub reloads: u64,
    /// Changed files refused since start.
    pub failures: u64,
    /// Why the latest change was refused, while the material it would have
    /// replaced is still in service; cleared by a successful reload.
    pub last_error: Option<String>,
    /// When the certificate in service expires.
    pub certificate_not_after: OffsetDateTime,
}

/// The material in service and where it comes from.
#[derive(Debug)]
pub(crate) struct Live {
    sources: Sources,
    current: RwLock<Arc<Material>>,
    status: Mutex<ReloadStatus>,
    /// The content the last attempt (good or bad) was made from, so a
    /// refused file is not retried and logged every interval.
    seen: Mutex<[u8; 32]>,
}

impl Live {
    /// Loads the material the first time; an error here stops the start.
    pub(crate) fn load(sources: Sources) -> Result<Arc<Self>, super::TlsError> {
        let seen = sources.fingerprint();
        let material = sources.load(OffsetDateTime::now_utc())?;
        Ok(Arc::new(Self {
            status: Mutex::new(ReloadStatus {
                reloads: 0,
                failures: 0,
                last_error: None,
                certificate_not_after: material.not_after,
            }),
            current: RwLock::new(Arc::new(material)),
            seen: Mutex::new(seen),
            sources,
        }))
    }

    /// The material for the next handshake.
    pub(crate) fn current(&self) -> Arc<Material> {
        self.current.read().clone()
    }

    pub(crate) fn status(&self) -> ReloadStatus {
        self.status.lock().clone()
    }

    /// Reloads if the files changed since the last attempt, or whatever
    /// they hold when `force` (SIGHUP).
    fn check(&self, force: bool) {
        let fingerprint = self.sources.fingerprint();
        {
            let mut seen = self.seen.lock();
            if !force && *seen == fingerprint {
                return;
            }
            *seen = fingerprint;
        }
        let outcome = self.sources.load(OffsetDateTime::now_utc());
        let mut status = self.status.lock();
        match outcome {
            Ok(material) => {
                status.reloads += 1;
                status.last_error = None;
                status.certificate_not_after = material.not_after;
                *self.current.write() = Arc::new(material);
                tracing::info!(
                    not_after = %status.certificate_not_after,
                    "TLS certificate, client CAs and CRLs reloaded"
                );
            }
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.to_string());
                tracing::error!(
                    error = %e,
                    "TLS reload refused; the previous certificate, client CAs and CRLs stay in service"
                );
            }
        }
        if let Some(metrics) = crate::telemetry::metrics() {
            metrics.tls_reload(status.last_error.is_none());
        }
    }

    /// Checks for changes every `interval` and on SIGHUP until `self` is
    /// dropped or the task aborted.
    pub(crate) fn watch(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let live: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut hangup = hangup();
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = recv(&mut hangup) => true,
                };
                let Some(live) = live.upgrade() else {
                    return;
                };
                // Reading and parsing files blocks; keep it off the
                // runtime's workers.
                let _ = tokio::task::spawn_blocking(move || live.check(forced)).await;
            }
        })
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup() -> Hangup {
    None
}

/// The next SIGHUP; never, where there is none.
async fn recv(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        #[cfg(unix)]
        Some(signal) => signal.recv().await,
        _ => std::future::pending().await,
    }
}
