use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::ConnectorConfig;
use crate::csv::CsvFolderConnector;
use crate::http::JsonHttpConnector;
use crate::liaison::LiaisonConnector;
use crate::resilience::{ConnectorStats, ResilienceConfig, Resilient};
use crate::sql::SqlConnector;
use crate::{Connector, ConnectorError};

/// The gateway's connectors, by dataset id.
///
/// Every connector the registry builds runs behind the resilience
/// middleware ([`Resilient`]), configured by its `[resilience]` settings, so
/// the gateway gets deadlines, a concurrency limit, a circuit breaker and
/// retries for reads without asking.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    // A BTreeMap so iteration, and so fan-out and reports, follow a stable
    // order.
    connectors: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    connector: Arc<dyn Connector>,
    resilient: Option<Arc<Resilient>>,
}

impl Registry {
    /// Builds every configured connector, each behind the resilience
    /// middleware. Sources are not reached, so a source that is down does
    /// not stop the others; a bad configuration does, with every problem of
    /// the first bad connector listed.
    pub async fn from_configs(configs: &[ConnectorConfig]) -> Result<Self, ConnectorError> {
        let mut registry = Self::default();
        for config in configs {
            if registry.connectors.contains_key(config.id()) {
                return Err(ConnectorError::DuplicateDataset(config.id().to_owned()));
            }
            let problems = config.resilience().problems();
            if !problems.is_empty() {
                return Err(ConnectorError::InvalidConfig {
                    dataset: config.id().to_owned(),
                    problems,
                });
            }
            let connector: Arc<dyn Connector> = match config {
                ConnectorConfig::Sql(sql) => Arc::new(SqlConnector::new(sql).await?),
                ConnectorConfig::JsonHttp(http) => Arc::new(JsonHttpConnector::new(http).await?),
                ConnectorConfig::CsvFolder(csv) => Arc::new(CsvFolderConnector::new(csv).await?),
                ConnectorConfig::Liaison(peer) => Arc::new(LiaisonConnector::new(peer).await?),
            };
            registry.insert_resilient(connector, config.resilience())?;
        }
        Ok(registry)
    }

    /// Adds a connector built elsewhere, such as a test double, as it is.
    pub fn insert(&mut self, connector: Arc<dyn Connector>) -> Result<(), ConnectorError> {
        self.add(Entry {
            connector,
            resilient: None,
        })
    }

    /// Adds a connector built elsewhere behind the resilience middleware.
    pub fn insert_resilient(
        &mut self,
        connector: Arc<dyn Connector>,
        config: &ResilienceConfig,
    ) -> Result<(), ConnectorError> {
        let resilient = Arc::new(Resilient::new(connector, config));
        self.add(Entry {
            connector: resilient.clone(),
            resilient: Some(resilient),
        })
    }

    fn add(&mut self, entry: Entry) -> Result<(), ConnectorError> {
        let id = entry.connector.descriptor().id.clone();
        if self.connectors.contains_key(&id) {
            return Err(ConnectorError::DuplicateDataset(id));
        }
        self.connectors.insert(id, entry);
        Ok(())
    }

    /// The connector for a dataset.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(id).map(|e| &e.connector)
    }

    /// Every connector, in dataset id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.connectors.values().map(|e| &e.connector)
    }

    /// The middleware's counters for a dataset, if its connector has the
    /// middleware.
    pub fn stats(&self, id: &str) -> Option<ConnectorStats> {
        self.connectors
            .get(id)
            .and_then(|e| e.resilient.as_ref())
            .map(|r| r.stats())
    }

    /// Every connector's counters, in dataset id order, for metrics.
    pub fn all_stats(&self) -> Vec<(&str, ConnectorStats)> {
        self.connectors
            .iter()
            .filter_map(|(id, e)| Some((id.as_str(), e.resilient.as_ref()?.stats())))
            .collect()
    }

    /// How many connectors there are.
    pub fn len(&self) -> usize {
        self.connectors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty()
    }
}
