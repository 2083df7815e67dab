//! Open subscriptions: the part of `Subscribe` that outlives the share stack.
//!
//! The stack decides whether a subscription may start (validated, authorized
//! with `Action::Subscribe`, audited) and where each dataset's change feed
//! starts. From then on one task per subscription polls the feeds, reads
//! each followed person who changed, minimises what it read with the mask
//! decided at the start, appends one ledger entry per batch and only then
//! queues the batch for the subscriber. It re-decides whenever policy is
//! reloaded (and on every poll, because an agreement also expires by date):
//! a narrower mask applies to the next batch, and a refusal ends the
//! stream, audited.
//!
//! Every response carries a resume cursor; resuming re-delivers from there,
//! so delivery is at least once. The queue to the subscriber is bounded: a
//! subscriber that does not keep up is ended with `RESOURCE_EXHAUSTED`
//! rather than buffered without limit, and nothing is appended for a batch
//! that could not be queued.

pub mod cursor;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future as _,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use liaison_connectors::{ChangeCursor, Registry};
use liaison_ledger::Ledger;
use liaison_proto::v1 as pb;
use prost::Message;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::Stream;
use tonic::Status;

pub use cursor::{CursorKey, SubscriptionCursor};

use crate::{
    error::GatewayError,
    share::{
        Facts, Payload, Validated, audit,
        authorize::{self, Plan, PolicyHandle},
        minimise,
    },
    status,
};

/// How subscriptions behave (`[subscriptions]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Subscriptions one agency may hold open at once on this replica;
    /// another is refused `RESOURCE_EXHAUSTED` (`RATE_LIMITED`).
    #[serde(default = "default_max_per_agency")]
    pub max_per_agency: u32,
    /// How often each subscription polls its datasets' change feeds, in
    /// milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The longest a subscriber waits without a message; a heartbeat
    /// carrying the current cursor is sent when nothing else was, in
    /// seconds.
    #[serde(default = "default_heartbeat_seconds")]
    pub heartbeat_seconds: u64,
    /// Messages queued for one subscriber; when the queue is full the
    /// subscriber is too slow and its stream ends.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// Changes read from one dataset per poll.
    #[serde(default = "default_batch")]
    pub changes_per_poll: usize,
    /// A file holding at least 32 secret bytes that seal resume cursors.
    /// Replicas behind one address must share it; without it each process
    /// makes its own, and cursors do not survive a restart.
    #[serde(default)]
    pub cursor_key_file: Option<PathBuf>,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            max_per_agency: default_max_per_agency(),
            poll_interval_ms: default_poll_interval_ms(),
            heartbeat_seconds: default_heartbeat_seconds(),
            buffer: default_buffer(),
            changes_per_poll: default_batch(),
            cursor_key_file: None,
        }
    }
}

fn default_max_per_agency() -> u32 {
    16
}
fn default_poll_interval_ms() -> u64 {
    1_000
}
fn default_heartbeat_seconds() -> u64 {
    15
}
fn default_buffer() -> usize {
    64
}
fn default_batch() -> usize {
    100
}

impl SubscriptionConfig {
    /// The problems with these settings, each with its key.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut bound = |key: &'static str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                out.push((key, format!("must be {min} to {max}")));
            }
        };
        bound("max_per_agency", u64::from(self.max_per_agency), 1, 10_000);
        bound("poll_interval_ms", self.poll_interval_ms, 10, 3_600_000);
        bound("heartbeat_seconds", self.heartbeat_seconds, 1, 3_600);
        bound(
            "buffer",
            u64::try_from(self.buffer).unwrap_or(u64::MAX),
            2,
            4_096,
        );
        bound(
            "changes_per_poll",
            u64::try_from(self.changes_per_poll).unwrap_or(u64::MAX),
            1,
            10_000,
        );
        out
    }

    /// The cursor key: from `cursor_key_file` (relative to `base_dir`), or
    /// a fresh one for this process.
    pub fn cursor_key(&self, base_dir: &std::path::Path) -> Result<CursorKey, String> {
        match &self.cursor_key_file {
            Some(file) => CursorKey::from_file(&base_dir.join(file)),
            None => CursorKey::random(),
        }
    }
}

/// Everything open subscriptions share.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    config: SubscriptionConfig,
    key: CursorKey,
    ledger: Arc<Ledger>,
    registry: Arc<Registry>,
    policy: PolicyHandle,
    connector_deadline: Duration,
    open: Arc<tokio::sync::Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Set when the gateway stops: open streams end so that a graceful
    /// shutdown, which waits for every open call, can finish.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

/// A place held for one open subscription of an agency.
#[derive(Debug)]
pub struct Slot(#[expect(dead_code, reason = "held for its drop")] OwnedSemaphorePermit);

/// A subscription that passed the share stack, ready to run.
#[derive(Debug)]
pub struct Started {
    /// The share that started it, as validated.
    pub validated: Validated,
    /// The datasets to follow and each one's decision.
    pub plan: Plan,
    /// Where each dataset's feed starts.
    pub cursors: BTreeMap<String, ChangeCursor>,
    /// The slot it holds.
    pub slot: Slot,
}

impl Subscriptions {
    /// Shared state for subscriptions on one gateway.
    pub fn new(
        config: SubscriptionConfig,
        key: CursorKey,
        ledger: Arc<Ledger>,
        registry: Arc<Registry>,
        policy: PolicyHandle,
        connector_deadline: Duration,
    ) -> Self {
        Self {
            config,
            key,
            ledger,
            registry,
            policy,
            connector_deadline,
            open: Arc::default(),
            draining: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Ends every open subscription with `UNAVAILABLE` (`SHUTTING_DOWN`);
    /// subscribers resume from their last cursor elsewhere or later.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// The key that seals and opens resume cursors.
    pub fn key(&self) -> &CursorKey {
        &self.key
    }

    /// Holds a place for a new subscription of `agency`, or refuses it.
    pub async fn admit(&self, agency: &str) -> Result<Slot, GatewayError> {
        let semaphore = {
            let mut open = self.open.lock().await;
            open.entry(agency.to_owned())
                .or_insert_with(|| {
                    let max = usize::try_from(self.config.max_per_agency).unwrap_or(usize::MAX);
                    Arc::new(Semaphore::new(max))
                })
                .clone()
        };
        semaphore
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| GatewayError::RateLimited {
                agency: agency.to_owned(),
                limit: "open subscriptions",
                retry_after: Duration::from_secs(self.config.heartbeat_seconds),
            })
    }

    /// Runs a started subscription in its own task and returns the stream
    /// the subscriber reads.
    pub fn run(&self, started: Started) -> SubscriptionStream {
        let (tx, rx) = mpsc::channel(self.config.buffer);
        let (end_tx, end_rx) = oneshot::channel();
        let followed = match &started.validated.operation {
            crate::share::ValidOperation::Subscribe { persons, .. } => persons.clone(),
            _ => BTreeMap::new(),
        };
        let task = Task {
            shared: self.clone(),
            policy: self.policy.clone(),
            facts: Facts::default(),
            validated: started.validated,
            plan: started.plan,
            followed,
            cursors: started.cursors,
            sent: HashMap::new(),
            tx,
        };
        let slot = started.slot;
        tokio::spawn(async move {
            let end = task.run().await;
            if let Some(status) = end {
                let _ = end_tx.send(status);
            }
            drop(slot);
        });
        SubscriptionStream {
            rx,
            end: Some(end_rx),
        }
    }
}

/// What a subscriber reads: queued messages, then the reason the stream
/// ended, if it ended for one.
#[derive(Debug)]
pub struct SubscriptionStream {
    rx: mpsc::Receiver<pb::SubscribeResponse>,
    end: Option<oneshot::Receiver<Status>>,
}

impl Stream for SubscriptionStream {
    type Item = Result<pb::SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(message)) => return Poll::Ready(Some(Ok(message))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(end).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.end = None;
                Poll::Ready(result.ok().map(Err))
            }
        }
    }
}

/// One open subscription.
struct Task {
    shared: Subscriptions,
    policy: PolicyHandle,
    /// The latest decision's facts, for each batch's audit entry.
    facts: Facts,
    validated: Validated,
    plan: Plan,
    followed: BTreeMap<String, BTreeSet<String>>,
    cursors: BTreeMap<String, ChangeCursor>,
    /// Digest of each record as last sent on this stream, so a change to
    /// one record does not resend the person's others.
    sent: HashMap<String, [u8; 32]>,
    tx: mpsc::Sender<pb::SubscribeResponse>,
}

/// Resolves once the gateway starts to stop.
async fn stopping(draining: &mut tokio::sync::watch::Receiver<bool>) {
    if draining.wait_for(|d| *d).await.is_err() {
        // The flag's owner outlives every subscription; without it there is
        // nothing left to wait for.
        std::future::pending::<()>().await;
    }
}

impl Task {
    /// Runs until the subscriber leaves (`None`) or the stream must end
    /// with an error.
    async fn run(self) -> Option<Status> {
        self.serve().await.err()
    }

    async fn serve(mut self) -> Result<(), Status> {
        let poll_every = Duration::from_millis(self.shared.config.poll_interval_ms);
        let heartbeat = Duration::from_secs(self.shared.config.heartbeat_seconds);
        // Policy may have changed between the decision and now.
        self.reauthorize().await?;
        // The first message says the subscription is open and where it
        // starts, so a subscriber holds a cursor before any change.
        self.heartbeat()?;
        let mut last_sent = tokio::time::Instant::now();
        let mut poll = tokio::time::interval(poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching = true;
        let mut draining = self.shared.draining.subscribe();
        loop {
            tokio::select! {
                () = self.tx.closed() => return Ok(()),
                () = stopping(&mut draining) => {
                    return Err(GatewayError::ShuttingDown.into());
                }
                changed = self.policy.changed(), if watching => {
                    if changed.is_err() {
                        // No more reloads can come; the date is still
                        // checked on every poll.
                        watching = false;
                    } else {
                        self.reauthorize().await?;
                    }
                }
                _ = poll.tick() => {
                    self.reauthorize().await?;
                    if self.poll().await? {
                        last_sent = tokio::time::Instant::now();
                    } else if last_sent.elapsed() >= heartbeat {
                        self.heartbeat()?;
                        last_sent = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    /// Decides again with the current policy. Datasets no longer allowed
    /// are dropped, masks are replaced; if nothing is left the end is
    /// audited and the stream ends with the policy's reason.
    async fn reauthorize(&mut self) -> Result<(), Status> {
        let engine = self.policy.borrow_and_update().clone();
        let (plan, facts, denial) = authorize::decide(&engine, &self.validated);
        let plan: Plan = plan
            .into_iter()
            .filter(|(d, _)| self.cursors.contains_key(d))
            .collect();
        self.facts = Facts {
            context: Some(self.validated.context.clone()),
            ..facts
        };
        if !plan.is_empty() {
            self.plan = plan;
            return Ok(());
        }
        let error = denial.unwrap_or_else(|| GatewayError::Denied {
            reason: "POLICY_DENIED",
            message: "policy no longer allows this subscription".into(),
        });
        let entry = audit::entry_for(&self.validated.call, &self.facts, Some(&error));
        match audit::append(&self.shared.ledger, &entry).await {
            Ok(receipt) => Err(status::refusal(error, Some(&receipt))),
            Err(e) => {
                tracing::error!(error = %e, "audit append failed ending a subscription");
                Err(GatewayError::AuditUnavailable.into())
            }
        }
    }

    /// Reads every followed dataset's feed once and delivers what changed;
    /// true when anything was sent.
    async fn poll(&mut self) -> Result<bool, Status> {
        let deadline = self.shared.connector_deadline;
        let limit = self.shared.config.changes_per_poll;
        let mut delivered = false;
        for (dataset, _) in self.plan.clone() {
            let Some(connector) = self.shared.registry.get(&dataset).cloned() else {
                continue;
            };
            let Some(after) = self.cursors.get(&dataset).cloned() else {
                continue;
            };
            let page = match tokio::time::timeout(deadline, connector.changes(Some(&after), limit))
                .await
            {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    tracing::warn!(dataset = %dataset, error = %e, "change feed failed; retrying at the next poll");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(dataset = %dataset, "change feed timed out; retrying at the next poll");
                    continue;
                }
            };
            if page.resync {
                delivered |= self.resynchronise(&dataset, page.cursor).await?;
                continue;
            }
            let mut complete = true;
            for change in page.changes {
                let wanted = self
                    .followed
                    .get(&dataset)
                    .is_some_and(|s| s.contains(&change.source_id));
                if wanted {
                    let fetched = match tokio::time::timeout(
                        deadline,
                        connector.fetch(&change.source_id, &[]),
                    )
                    .await
                    {
                        Ok(Ok(f)) => f,
                        _ => {
                            // The cursor stays before this change, so it is
                            // read again at the next poll.
                            tracing::warn!(dataset = %dataset, "reading a changed person failed; retrying at the next poll");
                            complete = false;
                            break;
                        }
                    };
                    delivered |= self
                        .deliver(&dataset, fetched.records, &change.cursor)
                        .await?;
                }
                self.cursors.insert(dataset.clone(), change.cursor);
            }
            if complete {
                self.cursors.insert(dataset, page.cursor);
            }
        }
        Ok(delivered)
    }

    /// Reads again everyone followed in `dataset`, whose feed no longer
    /// knows what changed since this stream's cursor (a feed kept in
    /// memory, after a restart), and moves the cursor to `head` once all
    /// are delivered. Records unchanged on this stream are not sent again;
    /// on a resumed stream everything releasable is: at least once, never
    /// a silent gap.
    async fn resynchronise(&mut self, dataset: &str, head: ChangeCursor) -> Result<bool, Status> {
        let deadline = self.shared.connector_deadline;
        let Some(connector) = self.shared.registry.get(dataset).cloned() else {
            return Ok(false);
        };
        let people: Vec<String> = self
            .followed
            .get(dataset)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        tracing::info!(dataset = %dataset, people = people.len(), "change feed resynchronising");
        let before = self.cursors.get(dataset).cloned().unwrap_or_default();
        let mut delivered = false;
        for (n, source_id) in people.iter().enumerate() {
            let fetched = match tokio::time::timeout(deadline, connector.fetch(source_id, &[]))
                .await
            {
                Ok(Ok(f)) => f,
                _ => {
                    // The cursor stays where it was, so the whole
                    // resynchronisation is tried again at the next poll.
                    tracing::warn!(dataset = %dataset, "reading a followed person failed; retrying at the next poll");
                    return Ok(delivered);
                }
            };
            // Only the last person's batch moves the cursor on.
            let after = if n + 1 == people.len() {
                head.clone()
            } else {
                before.clone()
            };
            delivered |= self.deliver(dataset, fetched.records, &after).await?;
        }
        self.cursors.insert(dataset.to_owned(), head);
        Ok(delivered)
    }

    /// Minimises one changed person's records, keeps those new or changed
    /// on this stream, audits them as one batch and queues them.
    async fn deliver(
        &mut self,
        dataset: &str,
        records: Vec<pb::Record>,
        after: &ChangeCursor,
    ) -> Result<bool, Status> {
        let masks: BTreeMap<String, Arc<liaison_policy::Decision>> =
            self.plan.iter().cloned().collect();
        let mut payload = Payload::Read {
            person: None,
            records,
            gaps: Vec::new(),
        };
        // Records withheld for their markers never reach the stream; they
        // are counted in the entry of the batch that goes with them.
        let mut withheld = minimise::minimise_payload(&mut payload, &masks).withheld;
        let Payload::Read { records, .. } = payload else {
            return Ok(false);
        };
        let fresh: Vec<(pb::Record, [u8; 32])> = records
            .into_iter()
            .map(|r| {
                let digest: [u8; 32] = Sha256::digest(r.encode_to_vec()).into();
                (r, digest)
            })
            .filter(|(r, digest)| self.sent.get(&r.record_id) != Some(digest))
            .collect();
        if fresh.is_empty() {
            return Ok(false);
        }
        let before = self.cursors.get(dataset).cloned().unwrap_or_default();
        // Half the queue per batch, so a subscriber that is reading is not
        // taken for a slow one because a heartbeat sits in the queue.
        let chunk = (self.shared.config.buffer / 2).max(1);
        let chunks: Vec<Vec<(pb::Record, [u8; 32])>> =
            fresh.chunks(chunk).map(<[_]>::to_vec).collect();
        let last_chunk = chunks.len().saturating_sub(1);
        for (n, batch) in chunks.into_iter().enumerate() {
            // Room first: nothing is recorded as disclosed that could not
            // be queued.
            let permits = match self.tx.try_reserve_many(batch.len()) {
                Ok(p) => p,
                Err(mpsc::error::TrySendError::Full(())) => {
                    return Err(GatewayError::SubscriberTooSlow.into());
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return Err(Status::cancelled("the subscriber left"));
                }
            };
            let (records, digests): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let mut payload = Payload::Read {
                person: None,
                records,
                gaps: Vec::new(),
            };
            let disclosures = minimise::minimise_payload(&mut payload, &masks).disclosures;
            let Payload::Read { records, .. } = payload else {
                return Ok(false);
            };
            let facts = Facts {
                disclosures,
                withheld: std::mem::take(&mut withheld),
                sources: vec![dataset.to_owned()],
                ..self.facts.clone()
            };
            let entry = audit::entry_for(&self.validated.call, &facts, None);
            let receipt = match audit::append(&self.shared.ledger, &entry).await {
                Ok(r) => r,
                Err(e) => {
                    // INVARIANT: nothing is sent without a durable entry;
                    // the batch is dropped here and the stream ends.
                    tracing::error!(error = %e, "audit append failed; ending subscription");
                    return Err(GatewayError::AuditUnavailable.into());
                }
            };
            let count = records.len();
            for (i, ((record, digest), permit)) in
                records.into_iter().zip(digests).zip(permits).enumerate()
            {
                // Only the batch's last message moves past the change, so
                // resuming from any earlier one re-delivers the rest.
                let position = if n == last_chunk && i + 1 == count {
                    after.clone()
                } else {
                    before.clone()
                };
                let cursor = self.token_with(dataset, position);
                self.sent.insert(record.record_id.clone(), digest);
                permit.send(pb::SubscribeResponse {
                    record: Some(record),
                    receipt: Some(receipt.clone()),
                    cursor,
                });
            }
        }
        Ok(true)
    }

    /// Sends a heartbeat with the current cursor.
    fn heartbeat(&self) -> Result<(), Status> {
        let cursor = self.shared.key.seal(
            &self.validated.call.principal.agency,
            &self.validated.context.isa_id,
            &SubscriptionCursor::new(self.cursors.clone()),
        );
        match self.tx.try_send(pb::SubscribeResponse {
            record: None,
            receipt: None,
            cursor,
        }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(GatewayError::SubscriberTooSlow.into()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(Status::cancelled("the subscriber left"))
            }
        }
    }

    /// The resume token for the current cursors with `dataset` at
    /// `position`.
    fn token_with(&self, dataset: &str, position: ChangeCursor) -> String {
        let mut cursors = self.cursors.clone();
        cursors.insert(dataset.to_owned(), position);
        self.shared.key.seal(
            &self.validated.call.principal.agency,
            &self.validated.context.isa_id,
            &SubscriptionCursor::new(cursors),
        )
    }
}
