//! [`follow`]: the loop that keeps a replica's in-memory view of a register
//! in step with the committed versions.

use std::{fmt, future::Future, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::{VersionStore, Versioned};

/// What a replica builds from a register and keeps current.
pub trait Follower: Send + 'static {
    /// What is kept in step, as log lines name it: `policy`, `trust registry`.
    const WHAT: &'static str;
    /// What a failed reload leaves in force, as its log line says.
    const KEPT: &'static str;
    /// Why a reload failed.
    type Error: fmt::Display + Send;
    /// What the register holds.
    type Value: Versioned;

    /// The register followed.
    fn store(&self) -> &VersionStore<Self::Value>;

    /// Rebuilds the view if the register moved; whether it changed.
    fn refresh(&mut self) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Whether nobody reads the view any more, checked before each wait.
    fn gone(&self) -> bool {
        false
    }

    /// Resolves once nobody reads the view any more, for views that can
    /// tell while the loop waits.
    fn closed(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Runs `follower` until its view is no longer read or every [`Reloader`]
/// is gone: it refreshes on each announcement on the register's channel,
/// each `interval` (the bound when the channel is lost, and the only way on
/// SQLite), and each reloader request.
pub async fn follow<F: Follower>(mut follower: F, interval: Duration) -> Reloader {
    let (requests, mut incoming) = mpsc::channel::<oneshot::Sender<()>>(64);
    let mut listener = match follower.store().listener().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for {} changes; polling only", F::WHAT);
            None
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if follower.gone() {
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
                () = follower.closed() => break,
                request = incoming.recv() => match request {
                    Some(reply) => waiting.push(reply),
                    None => break,
                },
                notice = announced => {
                    if let Some(Err(e)) = notice {
                        tracing::warn!(error = %e, "lost the {} change channel; polling only", F::WHAT);
                        listener = None;
                    }
                }
                _ = tick.tick() => {}
            }
            // Answer every request queued meanwhile with the same refresh.
            while let Ok(reply) = incoming.try_recv() {
                waiting.push(reply);
            }
            if let Err(e) = follower.refresh().await {
                tracing::error!(error = %e, "{} reload failed; {}", F::WHAT, F::KEPT);
            }
            for reply in waiting {
                let _ = reply.send(());
            }
        }
    });
    Reloader { requests }
}

/// Asks a running [`follow`] loop to refresh now.
#[derive(Debug, Clone)]
pub struct Reloader {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

impl Reloader {
    /// Refreshes and returns once the new view is in force on this replica.
    pub async fn reload_now(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(reply).await.is_ok() {
            let _ = done.await;
        }
    }
}
