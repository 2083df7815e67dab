//! Connectors from legacy record systems to the Liaison common data model.
//!
//! Each agency's systems are reached through a [`Connector`], which answers
//! two questions in the common model's terms: who matches this search, and
//! what does this dataset hold about this person. The gateway fans searches
//! out to every connector in a [`Registry`], applies its own deadlines, and
//! reports a source that fails as a gap rather than failing the share.
//!
//! Legacy schemas are mapped by configuration, not code: the
//! [`SqlConnector`] reads any PostgreSQL or SQLite schema through a
//! declarative [`SqlMapping`](sql::SqlMapping). Source data is untrusted:
//! malformed rows are skipped or trimmed and reported as [`RowProblem`]s,
//! never allowed to fail a query or reach a caller unchecked.
//!
//! `connectors/SPEC.md` states the contract every connector keeps and is the
//! reference for the SQL mapping. [`synthetic`] writes a deterministic,
//! entirely fictional police records system to demonstrate and test it.

mod config;
mod connector;
pub mod csv;
mod error;
pub mod http;
mod map;
pub mod mapping;
pub mod normalise;
mod registry;
pub mod resilience;
pub mod sql;
pub mod synthetic;
pub mod trace;

pub use config::{ConnectorConfig, SqlConnectorConfig};
pub use connector::{
    BoxFuture, Connector, DatasetDescriptor, Fetched, Found, PersonQuery, RowProblem,
};
pub use csv::{CsvFolderConfig, CsvFolderConnector};
pub use error::{ConnectorError, Fault};
pub use http::{JsonHttpConfig, JsonHttpConnector};
pub use registry::Registry;
pub use resilience::{CircuitState, ConnectorStats, ResilienceConfig, Resilient};
pub use sql::SqlConnector;
