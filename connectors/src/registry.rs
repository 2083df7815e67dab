use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::ConnectorConfig;
use crate::sql::SqlConnector;
use crate::{Connector, ConnectorError};

/// The gateway's connectors, by dataset id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    // A BTreeMap so iteration, and so fan-out and reports, follow a stable
    // order.
    connectors: BTreeMap<String, Arc<dyn Connector>>,
}

impl Registry {
    /// Builds every configured connector. Pools connect lazily, so a source
    /// that is down does not stop the others; a bad configuration does, with
    /// every problem of the first bad connector listed.
    pub async fn from_configs(configs: &[ConnectorConfig]) -> Result<Self, ConnectorError> {
        let mut registry = Self::default();
        for config in configs {
            if registry.connectors.contains_key(config.id()) {
                return Err(ConnectorError::DuplicateDataset(config.id().to_owned()));
            }
            let connector: Arc<dyn Connector> = match config {
                ConnectorConfig::Sql(sql) => Arc::new(SqlConnector::new(sql).await?),
            };
            registry.insert(connector)?;
        }
        Ok(registry)
    }

    /// Adds a connector built elsewhere, such as a test double.
    pub fn insert(&mut self, connector: Arc<dyn Connector>) -> Result<(), ConnectorError> {
        let id = connector.descriptor().id.clone();
        if self.connectors.contains_key(&id) {
            return Err(ConnectorError::DuplicateDataset(id));
        }
        self.connectors.insert(id, connector);
        Ok(())
    }

    /// The connector for a dataset.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(id)
    }

    /// Every connector, in dataset id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.connectors.values()
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
