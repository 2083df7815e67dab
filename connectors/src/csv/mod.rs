//! The CSV folder connector (`kind = "csv-folder"`): exports dropped into a
//! folder (a council's children's services system, say), read whole into a
//! bounded in-memory index and mapped through a declarative [`Mapping`].
//!
//! # Which files are read, and when
//!
//! Only the files the mapping names are read (`person.file` and each
//! record kind's `file`), and only once they are **complete**:
//!
//! - exporters SHOULD write under another name and rename into place; the
//!   connector never reads a name the mapping does not give, so a
//!   temporary file is never read;
//! - a file is read only once its modification time is at least
//!   `settle_ms` old, which guards against exporters that write in place
//!   (every write moves the time on);
//! - with `require_done_marker`, a file is also read only once
//!   `<name>.done` exists beside it and is no older than the file, for
//!   exporters that can drop a marker when they finish.
//!
//! The folder is watched (`notify`), and checked every `poll_interval_ms`
//! as well, so a network share whose changes are not notified is still
//! picked up. When any named file has changed and every present file is
//! complete, the whole set is read into a new index, which replaces the old
//! one at once: a search never sees half of one export and half of another.
//! If the new set cannot be read (a header lacks a mapped column), the old
//! index stays in service and the problem is logged.
//!
//! A malformed row (wrong number of fields, a required value missing) is
//! skipped and reported with its file and line; it never fails the load.
//!
//! # Change feed
//!
//! Each export read is compared with the one it replaces, person by
//! person, and the people added, removed or changed become changes for
//! `Subscribe`; an export that is refused changes nothing. The log is kept
//! in memory and bounded, so a cursor it cannot honour asks the caller to
//! re-read everyone it follows (`feed.rs`).

mod dialect;
mod feed;
mod index;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use liaison_proto::v1::RecordKind;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use self::dialect::Csv;
use self::index::{Index, Snapshot};
pub use self::index::{LoadProblem, LoadReport};
use crate::config::{identity_problems, load_mapping};
use crate::error::excerpt;
use crate::map::compile::{self, Plan};
use crate::map::reader::MAX_SOURCE_ID_BYTES;
use crate::map::search::SearchTerms;
use crate::mapping::Mapping;
use crate::resilience::ResilienceConfig;
use crate::{
    BoxFuture, ChangeCursor, Changes, Connector, ConnectorError, DatasetDescriptor, Fetched, Found,
    PersonQuery,
};

const DEFAULT_SETTLE_MS: u64 = 2_000;
const DEFAULT_POLL_MS: u64 = 5_000;
const DEFAULT_MAX_ROWS: usize = 200_000;
const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_MAX_LOGGED_CHANGES: usize = 10_000;

/// A CSV folder connector's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvFolderConfig {
    /// The dataset id: lower-case letters, digits, `-`, `_` and `.`.
    pub id: String,
    /// The id of the agency that holds the data.
    pub agency: String,
    /// A human-readable title for the dataset.
    pub title: String,
    /// The legacy system's name, for provenance.
    pub system: String,
    /// The folder exports are dropped into, relative to the file this
    /// configuration was read from.
    pub folder: PathBuf,
    /// How long, in milliseconds, a file must go unmodified before it is
    /// read. Defaults to 2000.
    #[serde(default)]
    pub settle_ms: Option<u64>,
    /// Whether each file is read only once `<name>.done` exists beside it.
    /// Defaults to false.
    #[serde(default)]
    pub require_done_marker: bool,
    /// How often, in milliseconds, the folder is checked whether or not a
    /// change was notified. Defaults to 5000.
    #[serde(default)]
    pub poll_interval_ms: Option<u64>,
    /// The most data rows read from one file; the rest are reported and
    /// ignored. Defaults to 200000.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// The largest file read, in bytes; a larger one is not read at all.
    /// Defaults to 256 MiB.
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
    /// The field delimiter, one ASCII character. Defaults to `,`.
    #[serde(default)]
    pub delimiter: Option<char>,
    /// The most changes the change feed remembers for `Subscribe`. A
    /// subscriber further behind is sent everyone it follows again rather
    /// than the changes it missed. Defaults to 10000.
    #[serde(default)]
    pub max_logged_changes: Option<usize>,
    /// The mapping, inline.
    #[serde(default)]
    pub mapping: Option<Mapping>,
    /// The mapping in a file of its own, relative to the file this
    /// configuration was read from.
    #[serde(default)]
    pub mapping_file: Option<PathBuf>,
    /// Deadline, concurrency, circuit breaker and retry settings.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

/// A connector over a folder of CSV exports.
pub struct CsvFolderConnector {
    shared: Arc<Shared>,
    index: watch::Receiver<Snapshot>,
    watcher: tokio::task::JoinHandle<()>,
}

/// What the connector and its watcher share.
#[derive(Debug)]
struct Shared {
    descriptor: DatasetDescriptor,
    plan: Plan<Csv>,
    settings: index::Settings,
    poll: Duration,
    index: watch::Sender<Snapshot>,
    /// Serialises refreshes, so the watcher and an operator's refresh never
    /// read the same export twice at once.
    refreshing: tokio::sync::Mutex<()>,
    /// Set when the folder changes; wakes the watcher.
    changed: Notify,
    /// When a settling file may be complete, so the watcher looks then.
    recheck: Mutex<Option<tokio::time::Instant>>,
    /// Why the last look at the folder failed, to answer calls with while
    /// no index is in service.
    last_error: Mutex<Option<Stored>>,
    /// Who changed between the exports read, for `Subscribe`.
    feed: Mutex<feed::Feed>,
}

/// A failure kept to be reported again; errors are not `Clone`.
#[derive(Debug, Clone)]
enum Stored {
    Unreachable(String),
    Mapping(String),
}

impl std::fmt::Debug for CsvFolderConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvFolderConnector")
            .field("dataset", &self.shared.descriptor.id)
            .field("folder", &self.shared.settings.folder)
            .finish_non_exhaustive()
    }
}

impl Drop for CsvFolderConnector {
    fn drop(&mut self) {
        // The watcher is the connector's own work and ends with it.
        self.watcher.abort();
    }
}

impl CsvFolderConnector {
    /// Builds the connector and starts watching its folder. The folder need
    /// not exist yet, nor hold a complete export: until one is read, calls
    /// fail as the source's fault.
    pub async fn new(config: &CsvFolderConfig) -> Result<Self, ConnectorError> {
        let mapping = load_mapping(
            &config.id,
            config.mapping.as_ref(),
            config.mapping_file.as_deref(),
        )
        .await?;
        Self::with_mapping(config, &mapping).await
    }

    /// Builds the connector with the given mapping, ignoring the config's
    /// own. The first export present is read before this returns.
    pub async fn with_mapping(
        config: &CsvFolderConfig,
        mapping: &Mapping,
    ) -> Result<Self, ConnectorError> {
        let mut problems =
            identity_problems(&config.id, &config.agency, &config.title, &config.system);
        problems.extend(config.resilience.problems());
        let delimiter = match config.delimiter {
            None => b',',
            Some(c) if c.is_ascii() && !c.is_ascii_alphanumeric() && c != '"' => c as u8,
            Some(c) => {
                problems.push(format!(
                    "delimiter: `{}` is not an ascii punctuation or whitespace character",
                    c.escape_debug()
                ));
                b','
            }
        };
        for (key, zero) in [
            ("max_rows", config.max_rows == Some(0)),
            ("max_file_bytes", config.max_file_bytes == Some(0)),
            ("poll_interval_ms", config.poll_interval_ms == Some(0)),
            ("max_logged_changes", config.max_logged_changes == Some(0)),
        ] {
            if zero {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        let plan = compile::compile::<Csv>(mapping, &config.id, &config.agency, &config.system)
            .map_err(|found| problems.extend(found));
        let plan = match plan {
            Ok(plan) if problems.is_empty() => plan,
            _ => {
                return Err(ConnectorError::InvalidConfig {
                    dataset: config.id.clone(),
                    problems,
                });
            }
        };
        let descriptor = DatasetDescriptor {
            id: config.id.clone(),
            agency: config.agency.clone(),
            title: config.title.clone(),
            system: config.system.clone(),
            record_kinds: plan.records.iter().map(|r| r.kind).collect(),
        };
        let settings = index::Settings {
            folder: config.folder.clone(),
            settle: Duration::from_millis(config.settle_ms.unwrap_or(DEFAULT_SETTLE_MS)),
            require_done_marker: config.require_done_marker,
            max_rows: config.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
            max_file_bytes: config.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
            delimiter,
        };
        let (sender, receiver) = watch::channel(Snapshot::default());
        let shared = Arc::new(Shared {
            descriptor,
            plan,
            settings,
            poll: Duration::from_millis(config.poll_interval_ms.unwrap_or(DEFAULT_POLL_MS)),
            index: sender,
            refreshing: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            recheck: Mutex::new(None),
            last_error: Mutex::new(None),
            feed: Mutex::new(feed::Feed::new(
                &config.id,
                config
                    .max_logged_changes
                    .unwrap_or(DEFAULT_MAX_LOGGED_CHANGES),
            )),
        });
        // A folder that is unreadable now is the source's problem, reported
        // when asked; it does not stop the connector being built.
        if let Err(e) = shared.refresh().await {
            tracing::warn!(dataset = %shared.descriptor.id, error = %e, "csv export not read");
        }
        let watcher = tokio::spawn(watch_folder(shared.clone()));
        Ok(Self {
            shared,
            index: receiver,
            watcher,
        })
    }

    /// Checks the folder now and reads the export if it changed and is
    /// complete; returns the report of the index in service afterwards.
    pub async fn refresh(&self) -> Result<Option<LoadReport>, ConnectorError> {
        self.shared.refresh().await?;
        Ok(self.report())
    }

    /// What the index in service was read from, and the rows it skipped.
    pub fn report(&self) -> Option<LoadReport> {
        self.index.borrow().index.as_ref().map(|i| i.report.clone())
    }

    /// Waits until an index read after `since` (a report's `generation`) is
    /// in service, for tests and tools that drop a new export.
    pub async fn changed_since(&self, since: u64) -> Option<LoadReport> {
        let mut receiver = self.index.clone();
        let snapshot = receiver
            .wait_for(|s| {
                s.index
                    .as_ref()
                    .is_some_and(|i| i.report.generation > since)
            })
            .await
            .ok()?;
        snapshot.index.as_ref().map(|i| i.report.clone())
    }

    fn current(&self) -> Result<Arc<Index>, ConnectorError> {
        if let Some(index) = self.index.borrow().index.clone() {
            return Ok(index);
        }
        let dataset = self.shared.descriptor.id.clone();
        Err(match self.shared.last_error.lock().clone() {
            Some(Stored::Mapping(message)) => ConnectorError::Mapping { dataset, message },
            Some(Stored::Unreachable(reason)) => ConnectorError::Unreachable { dataset, reason },
            None => ConnectorError::Unreachable {
                dataset,
                reason: "no complete export has been read from the folder yet".into(),
            },
        })
    }

    async fn search_people(
        &self,
        query: &PersonQuery,
        limit: usize,
    ) -> Result<Found, ConnectorError> {
        let plan = &self.shared.plan;
        let dob_format = plan
            .person
            .date_of_birth
            .as_ref()
            .and_then(|f| f.format.as_deref());
        let terms = SearchTerms::parse(&self.shared.descriptor.id, query, dob_format)?;
        let index = self.current()?;
        let limit = limit.min(plan.max_search_results);
        let mut found = Found::default();
        for person in index.candidates(&terms) {
            if found.persons.len() >= limit {
                break;
            }
            if terms.matches(&person.value) {
                found.persons.push(person.value.clone());
                found.skipped.extend(person.problems.iter().cloned());
            }
        }
        Ok(found)
    }

    async fn fetch_person(
        &self,
        source_id: &str,
        kinds: &[RecordKind],
    ) -> Result<Fetched, ConnectorError> {
        let refuse = |reason: &str| ConnectorError::InvalidSourceId {
            dataset: self.shared.descriptor.id.clone(),
            source_id: excerpt(source_id, 64),
            reason: reason.to_owned(),
        };
        if source_id.is_empty() {
            return Err(refuse("source ids are not empty"));
        }
        if source_id.len() > MAX_SOURCE_ID_BYTES {
            return Err(refuse("source ids are at most 256 bytes"));
        }
        let index = self.current()?;
        let mut fetched = Fetched::default();
        let Some(person) = index.person(source_id) else {
            return Ok(fetched);
        };
        fetched.person = Some(person.value.clone());
        fetched.skipped.extend(person.problems.iter().cloned());
        let max = self.shared.plan.max_records;
        for (kind, records) in index.records(source_id) {
            if !(kinds.is_empty() || kinds.contains(&kind)) {
                continue;
            }
            for (i, record) in records.iter().enumerate() {
                if i == max {
                    fetched.skipped.push(crate::RowProblem {
                        source_id: source_id.to_owned(),
                        problem: format!(
                            "more than {max} `{}` records; the rest were not read",
                            kind.as_str_name()
                        ),
                    });
                    break;
                }
                fetched.records.push(record.value.clone());
                fetched.skipped.extend(record.problems.iter().cloned());
            }
        }
        Ok(fetched)
    }
}

impl Shared {
    /// Reads the export if it changed and is complete; otherwise leaves the
    /// index in service as it is.
    async fn refresh(self: &Arc<Self>) -> Result<(), ConnectorError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let current = self.index.borrow().clone();
        let previous = current.index.clone();
        let shared = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            index::refresh(
                &shared.settings,
                &shared.plan,
                current.index.as_deref(),
                current.generation,
            )
        })
        .await
        .map_err(|e| ConnectorError::Unreachable {
            dataset: self.descriptor.id.clone(),
            reason: format!("reading the export stopped: {e}"),
        })?;
        match outcome {
            Ok(index::Outcome::Unchanged) => Ok(()),
            Ok(index::Outcome::NotReady { retry_in }) => {
                // A file is still settling: the watcher looks again once it
                // may be done, rather than at the next poll.
                *self.recheck.lock() = Some(tokio::time::Instant::now() + retry_in);
                Ok(())
            }
            Ok(index::Outcome::Loaded(index)) => {
                let report = &index.report;
                tracing::info!(
                    dataset = %self.descriptor.id,
                    generation = report.generation,
                    people = report.people,
                    records = report.records,
                    skipped = report.problems.len(),
                    "csv export read"
                );
                for problem in &report.problems {
                    tracing::warn!(
                        dataset = %self.descriptor.id,
                        file = %problem.file,
                        line = problem.line,
                        problem = %problem.problem,
                        "csv row skipped or trimmed"
                    );
                }
                *self.last_error.lock() = None;
                let generation = index.report.generation;
                let index: Arc<Index> = Arc::from(index);
                // The new index is in service before its changes are
                // logged, so whoever reads a change reads the new data.
                self.index.send_replace(Snapshot {
                    index: Some(index.clone()),
                    generation,
                });
                self.feed.lock().record(
                    previous.as_ref().map(|i| &i.digests),
                    &index.digests,
                    index.digest,
                );
                Ok(())
            }
            Err(e) => {
                *self.last_error.lock() = Some(match &e {
                    ConnectorError::Mapping { message, .. } => Stored::Mapping(message.clone()),
                    ConnectorError::Unreachable { reason, .. } => {
                        Stored::Unreachable(reason.clone())
                    }
                    other => Stored::Unreachable(other.to_string()),
                });
                Err(e)
            }
        }
    }
}

/// Watches the folder for as long as the connector lives: notified
/// changes, and a poll as the fallback for folders whose changes are not
/// notified (network shares) or when no watcher could be set up.
async fn watch_folder(shared: Arc<Shared>) {
    let _watcher = notify_watcher(&shared);
    loop {
        let poll = tokio::time::Instant::now() + shared.poll;
        let wake = shared.recheck.lock().take().map_or(poll, |at| at.min(poll));
        tokio::select! {
            () = shared.changed.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
        if let Err(e) = shared.refresh().await {
            tracing::warn!(dataset = %shared.descriptor.id, error = %e, "csv export not read");
        }
    }
}

/// A filesystem watcher that wakes the loop on any change in the folder;
/// `None` (and polling only) where the platform or folder cannot be watched.
fn notify_watcher(shared: &Arc<Shared>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let weak = Arc::downgrade(shared);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok()
            && let Some(shared) = weak.upgrade()
        {
            // Runs on the watcher's own thread; `notify_one` needs no
            // runtime and coalesces bursts of events into one wake-up.
            shared.changed.notify_one();
        }
    })
    .map_err(|e| {
        tracing::info!(dataset = %shared.descriptor.id, error = %e, "folder not watched; polling");
    })
    .ok()?;
    match watcher.watch(&shared.settings.folder, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::info!(dataset = %shared.descriptor.id, error = %e, "folder not watched; polling");
            None
        }
    }
}

impl Connector for CsvFolderConnector {
    fn descriptor(&self) -> &DatasetDescriptor {
        &self.shared.descriptor
    }

    fn search<'a>(
        &'a self,
        query: &'a PersonQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(self.search_people(query, limit))
    }

    fn fetch<'a>(
        &'a self,
        source_id: &'a str,
        kinds: &'a [RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(self.fetch_person(source_id, kinds))
    }

    fn changes<'a>(
        &'a self,
        after: Option<&'a ChangeCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Changes, ConnectorError>> {
        Box::pin(async move { self.shared.feed.lock().changes(after, limit) })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            self.shared.refresh().await?;
            self.current().map(|_| ())
        })
    }
}
