//! Connectors from legacy record systems to the Liaison common data model.
//!
//! Each agency's systems are reached through a [`Connector`], which answers
//! two questions in the common model's terms: who matches this search, and
//! what does this dataset hold about this person (and, where the source
//! keeps a change log, who has changed since a cursor). The gateway fans
//! searches out to every connector in a [`Registry`] and reports a source
//! that fails as a gap rather than failing the share.
//!
//! Every connector the registry builds runs behind the [`resilience`]
//! middleware: a deadline per call, a bounded concurrency limit, a circuit
//! breaker, retries with jittered backoff for reads, a span per call and
//! counters ([`ConnectorStats`]).
//!
//! Legacy schemas are mapped by configuration, not code. One declarative
//! [`Mapping`](mapping::Mapping) format, with the same field concepts
//! (columns, code lists, formats, defaults, `required`, `max_bytes`), serves
//! every kind of connector:
//!
//! - [`SqlConnector`] (`kind = "sql"`): PostgreSQL or SQLite;
//! - [`JsonHttpConnector`] (`kind = "json-http"`): a JSON API, fields read
//!   by JSON pointer;
//! - [`CsvFolderConnector`] (`kind = "csv-folder"`): CSV exports dropped in
//!   a watched folder, indexed in memory;
//! - [`LiaisonConnector`] (`kind = "liaison"`): a dataset another Liaison
//!   gateway serves, for federation between agencies; no mapping, since the
//!   peer already answers in the common model.
//!
//! Source data is untrusted: malformed rows are skipped or trimmed and
//! reported as [`RowProblem`]s, never allowed to fail a query or reach a
//! caller unchecked.
//!
//! `connectors/SPEC.md` states the contract every connector keeps and is the
//! reference for each kind's mapping; `docs/connectors.md` walks through
//! writing one. [`synthetic`] writes deterministic, entirely fictional
//! sources (a police records system, a children's services export and, with
//! the `test-util` feature, a health API server) to demonstrate and test
//! them.

mod config;
mod connector;
pub mod csv;
mod error;
pub mod http;
pub mod liaison;
mod map;
pub mod mapping;
pub mod normalise;
mod registry;
pub mod request;
pub mod resilience;
pub mod sql;
pub mod synthetic;
pub mod trace;

pub use config::{ConnectorConfig, SqlConnectorConfig};
pub use connector::{
    BoxFuture, Change, ChangeCursor, Changes, Connector, DatasetDescriptor, Fetched, Found,
    PeerGap, PersonQuery, RowProblem,
};
pub use csv::{CsvFolderConfig, CsvFolderConnector};
pub use error::{ConnectorError, Fault};
pub use http::{JsonHttpConfig, JsonHttpConnector};
pub use liaison::{LiaisonConfig, LiaisonConnector};
#[cfg(feature = "fuzzing")]
pub use map::row::Cell;
pub use registry::Registry;
pub use resilience::{CircuitState, ConnectorStats, ResilienceConfig, Resilient};
pub use sql::SqlConnector;
