//! Connector configuration, as it appears in the gateway's configuration file
//! or in a file of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConnectorError;
use crate::csv::CsvFolderConfig;
use crate::http::JsonHttpConfig;
use crate::liaison::LiaisonConfig;
use crate::mapping::Mapping;
use crate::resilience::ResilienceConfig;

/// One connector, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConnectorConfig {
    /// A PostgreSQL or SQLite database read through a declarative mapping.
    Sql(SqlConnectorConfig),
    /// A JSON API over HTTP read through a declarative mapping.
    JsonHttp(JsonHttpConfig),
    /// A folder of CSV exports, watched and indexed in memory.
    CsvFolder(CsvFolderConfig),
    /// Another Liaison gateway's dataset, read through its
    /// `SharingService` (federation).
    Liaison(LiaisonConfig),
}

/// A SQL connector.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConnectorConfig {
    /// The dataset id: lower-case letters, digits, `-`, `_` and `.`. It
    /// prefixes every person and record id, so it must stay stable.
    pub id: String,
    /// The id of the agency that holds the data.
    pub agency: String,
    /// A human-readable title for the dataset.
    pub title: String,
    /// The legacy system's name, for provenance.
    pub system: String,
    /// `sqlite://path/to.db?mode=ro` or `postgres://user@host/db`. The
    /// connector opens it read-only in either case.
    pub url: String,
    /// The most connections the connector opens; defaults to 4.
    #[serde(default)]
    pub max_connections: Option<u32>,
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

impl std::fmt::Debug for SqlConnectorConfig {
    // The URL may carry a password; only its scheme is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.url.split(':').next().unwrap_or_default();
        f.debug_struct("SqlConnectorConfig")
            .field("id", &self.id)
            .field("agency", &self.agency)
            .field("title", &self.title)
            .field("system", &self.system)
            .field("url", &format_args!("{scheme}:…"))
            .field("max_connections", &self.max_connections)
            .field("mapping", &self.mapping.as_ref().map(|_| "inline"))
            .field("mapping_file", &self.mapping_file)
            .field("resilience", &self.resilience)
            .finish()
    }
}

impl ConnectorConfig {
    /// The dataset id.
    pub fn id(&self) -> &str {
        match self {
            Self::Sql(c) => &c.id,
            Self::JsonHttp(c) => &c.id,
            Self::CsvFolder(c) => &c.id,
            Self::Liaison(c) => &c.id,
        }
    }

    /// The id of the agency that holds the data.
    pub fn agency(&self) -> &str {
        match self {
            Self::Sql(c) => &c.agency,
            Self::JsonHttp(c) => &c.agency,
            Self::CsvFolder(c) => &c.agency,
            Self::Liaison(c) => &c.agency,
        }
    }

    /// The connector's resilience settings.
    pub fn resilience(&self) -> &ResilienceConfig {
        match self {
            Self::Sql(c) => &c.resilience,
            Self::JsonHttp(c) => &c.resilience,
            Self::CsvFolder(c) => &c.resilience,
            Self::Liaison(c) => &c.resilience,
        }
    }

    /// The sensitivity markers this dataset's records can carry, as its mapping says (see
    /// [`Mapping::sensitivity_markers`]); `None` when any text could be one, as for a federated
    /// dataset, whose markers another gateway's mappings decide.
    ///
    /// Reads a `mapping_file` synchronously: for offline tools such as `liaison policy check`,
    /// not for a serving gateway's async code.
    pub fn sensitivity_markers(&self) -> Result<Option<BTreeSet<String>>, ConnectorError> {
        let (inline, file) = match self {
            Self::Sql(c) => (c.mapping.as_ref(), c.mapping_file.as_deref()),
            Self::JsonHttp(c) => (c.mapping.as_ref(), c.mapping_file.as_deref()),
            Self::CsvFolder(c) => (c.mapping.as_ref(), c.mapping_file.as_deref()),
            Self::Liaison(_) => return Ok(None),
        };
        match (inline, file) {
            (Some(mapping), None) => Ok(mapping.sensitivity_markers()),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConnectorError::ReadConfig {
                        path: path.to_owned(),
                        source,
                    })?;
                let mapping: Mapping = parse_toml(&text, path)?;
                Ok(mapping.sensitivity_markers())
            }
            _ => Err(ConnectorError::InvalidConfig {
                dataset: self.id().to_owned(),
                problems: vec!["needs exactly one of `mapping` and `mapping_file`".into()],
            }),
        }
    }

    /// Problems a federation connector's configuration shows before it is
    /// built, each as `key: what is wrong`, so the gateway's start-up check
    /// can name their lines. Other kinds report theirs, with their
    /// mapping's, when the registry builds them.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Liaison(c) => c.problems(),
            Self::Sql(_) | Self::JsonHttp(_) | Self::CsvFolder(_) => Vec::new(),
        }
    }

    /// Reads one connector's configuration from a TOML file, resolving a
    /// relative `mapping_file` against the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConnectorError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConnectorError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = parse_toml(&text, path)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Makes relative paths (`mapping_file`, a CSV `folder`, header
    /// `value_file`s) relative to `base_dir`, the directory of the file the
    /// configuration came from.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        };
        match self {
            Self::Sql(c) => c.mapping_file.iter_mut().for_each(resolve),
            Self::JsonHttp(c) => {
                c.mapping_file.iter_mut().for_each(resolve);
                c.headers
                    .iter_mut()
                    .filter_map(|h| h.value_file.as_mut())
                    .for_each(resolve);
            }
            Self::CsvFolder(c) => {
                c.mapping_file.iter_mut().for_each(resolve);
                resolve(&mut c.folder);
            }
            Self::Liaison(c) => c.resolve_paths(base_dir),
        }
    }
}

impl SqlConnectorConfig {
    /// Problems with the fields outside the mapping.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = identity_problems(&self.id, &self.agency, &self.title, &self.system);
        if self.max_connections == Some(0) {
            problems.push("max_connections: must be at least 1".to_owned());
        }
        problems.extend(self.resilience.problems());
        problems
    }
}

/// Problems with the fields every connector has.
pub(crate) fn identity_problems(id: &str, agency: &str, title: &str, system: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !id_ok {
        problems.push("id: must be 1 to 64 lower-case letters, digits, `-`, `_` or `.`".to_owned());
    }
    for (key, value) in [("agency", agency), ("title", title), ("system", system)] {
        if value.trim().is_empty() {
            problems.push(format!("{key}: must not be empty"));
        }
    }
    problems
}

/// The mapping given inline or in a file, exactly one of which must be set.
pub(crate) async fn load_mapping(
    dataset: &str,
    inline: Option<&Mapping>,
    file: Option<&Path>,
) -> Result<Mapping, ConnectorError> {
    match (inline, file) {
        (Some(mapping), None) => Ok(mapping.clone()),
        (None, Some(path)) => read_mapping(path).await,
        _ => Err(ConnectorError::InvalidConfig {
            dataset: dataset.to_owned(),
            problems: vec!["needs exactly one of `mapping` and `mapping_file`".into()],
        }),
    }
}

/// Reads a mapping file.
pub(crate) async fn read_mapping(path: &Path) -> Result<Mapping, ConnectorError> {
    let text =
        tokio::fs::read_to_string(path)
            .await
            .map_err(|source| ConnectorError::ReadConfig {
                path: path.to_owned(),
                source,
            })?;
    parse_toml(&text, path)
}

pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConnectorError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| before.matches('\n').count() + 1);
        let message = e.message().trim_end_matches('\n').to_owned();
        ConnectorError::ParseConfig {
            path: path.to_owned(),
            message: match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        kind = "sql"
        id = "police-rms"
        agency = "met"
        title = "Records"
        system = "RMS"
        url = "postgres://user:secret@db/rms"
        mapping_file = "maps/rms.toml"
    "#;

    #[test]
    fn configs_parse_and_resolve_mapping_files() {
        let mut config: ConnectorConfig = parse_toml(BASE, Path::new("c.toml")).unwrap();
        assert_eq!(config.id(), "police-rms");
        config.resolve_paths(Path::new("/etc/liaison"));
        let ConnectorConfig::Sql(sql) = &config else {
            panic!("not sql")
        };
        assert_eq!(
            sql.mapping_file.as_deref(),
            Some(Path::new("/etc/liaison/maps/rms.toml"))
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused_with_their_line() {
        let text = format!("{BASE}\n        colour = \"red\"\n");
        let err = parse_toml::<ConnectorConfig>(&text, Path::new("c.toml")).unwrap_err();
        assert_eq!(err.fault(), crate::Fault::Configuration);
        let message = err.to_string();
        assert!(message.starts_with("cannot parse `c.toml`: "), "{message}");
        assert!(message.contains("unknown field `colour`"), "{message}");

        // Mapping files are parsed directly, so their errors keep the line.
        let text = "\n[person]\nsource_id = \"{ID}\"\nsorce = 1\n";
        let err = parse_toml::<Mapping>(text, Path::new("m.toml")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot parse `m.toml`: line 4: unknown field `sorce`"),
            "{message}"
        );

        let text = BASE.replace(r#"kind = "sql""#, r#"kind = "ldap""#);
        let err = parse_toml::<ConnectorConfig>(&text, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("unknown variant `ldap`"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_url() {
        let config: ConnectorConfig = parse_toml(BASE, Path::new("c.toml")).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("postgres:…"), "{shown}");
    }

    #[test]
    fn identity_fields_are_checked() {
        let mut config: ConnectorConfig = parse_toml(BASE, Path::new("c.toml")).unwrap();
        let ConnectorConfig::Sql(sql) = &mut config else {
            panic!("not sql")
        };
        sql.id = "Police:RMS".into();
        sql.title = " ".into();
        sql.max_connections = Some(0);
        assert_eq!(
            sql.problems(),
            vec![
                "id: must be 1 to 64 lower-case letters, digits, `-`, `_` or `.`",
                "title: must not be empty",
                "max_connections: must be at least 1",
            ]
        );
    }
}
