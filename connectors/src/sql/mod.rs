//! The SQL connector: a legacy PostgreSQL or SQLite database read through a
//! declarative [`SqlMapping`].
//!
//! The connector only ever runs the statements in its mapping, with caller
//! input bound as parameters, over connections opened read-only. Pools
//! connect lazily, so a source that is down at start-up is reported when
//! asked, as a gap in that answer, and does not stop the gateway.

mod dialect;
mod params;
mod row;

use std::collections::HashSet;
use std::str::FromStr;

use liaison_proto::v1::{Person, RecordKind};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Executor, SqlSafeStr, Statement, Type};
use tracing::Instrument;

pub(crate) use self::dialect::Sql;
use self::dialect::{ChangesPlan, Query};
use self::params::Param;
use self::row::{column_names, pg_cells, sqlite_cells};
use crate::config::SqlConnectorConfig;
use crate::error::excerpt;
use crate::map::compile::{self, ListEntry, Plan};
use crate::map::reader::{self, RowReader};
use crate::map::row::ResultSet;
use crate::map::search::SearchTerms;
pub use crate::mapping;
use crate::mapping::SourceIdType;
pub use crate::mapping::SqlMapping;
use crate::{
    BoxFuture, Change, ChangeCursor, Changes, Connector, ConnectorError, DatasetDescriptor,
    Fetched, Found, PersonQuery, RowProblem,
};

const DEFAULT_MAX_CONNECTIONS: u32 = 4;

/// A connector over a legacy SQL database.
pub struct SqlConnector {
    descriptor: DatasetDescriptor,
    plan: Plan<Sql>,
    changes: Option<ChangesPlan>,
    pool: Pool,
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A value bound to one placeholder.
#[derive(Clone)]
enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
}

/// A source id as the caller gave it, checked against the dataset's id
/// type; `text` is its canonical spelling.
struct SourceKey {
    text: String,
    integer: Option<i64>,
}

impl std::fmt::Debug for SqlConnector {
    // The pool's options hold the connection URL, which may carry a
    // password; only the dataset and driver are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let driver = match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        };
        f.debug_struct("SqlConnector")
            .field("dataset", &self.descriptor.id)
            .field("driver", &driver)
            .finish_non_exhaustive()
    }
}

impl SqlConnector {
    /// Builds a connector from its configuration, reading `mapping_file` if
    /// the mapping is not inline. The pool connects on first use.
    pub async fn new(config: &SqlConnectorConfig) -> Result<Self, ConnectorError> {
        let mapping = match (&config.mapping, &config.mapping_file) {
            (Some(mapping), None) => mapping.clone(),
            (None, Some(path)) => crate::config::read_mapping(path).await?,
            _ => {
                return Err(ConnectorError::InvalidConfig {
                    dataset: config.id.clone(),
                    problems: vec!["needs exactly one of `mapping` and `mapping_file`".into()],
                });
            }
        };
        Self::with_mapping(config, &mapping)
    }

    /// Builds a connector with the given mapping, ignoring the config's own.
    /// Must be called inside a Tokio runtime, which the pool lives on.
    pub fn with_mapping(
        config: &SqlConnectorConfig,
        mapping: &SqlMapping,
    ) -> Result<Self, ConnectorError> {
        let mut problems = config.problems();
        let plan = compile::compile::<Sql>(mapping, &config.id, &config.agency, &config.system)
            .map_err(|found| problems.extend(found));
        let changes = mapping
            .changes
            .as_ref()
            .and_then(|m| dialect::changes(m, &mut problems));
        let plan = match plan {
            Ok(plan) if problems.is_empty() => plan,
            _ => return Err(invalid(config, problems)),
        };
        let pool = open_pool(config)?;
        let descriptor = DatasetDescriptor {
            id: config.id.clone(),
            agency: config.agency.clone(),
            title: config.title.clone(),
            system: config.system.clone(),
            record_kinds: plan.records.iter().map(|r| r.kind).collect(),
        };
        Ok(Self {
            descriptor,
            plan,
            changes,
            pool,
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    fn error(&self, query: &Query, source: sqlx::Error) -> ConnectorError {
        let dataset = self.descriptor.id.clone();
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => ConnectorError::Unavailable { dataset, source },
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| unreachable_code(&c)) => {
                ConnectorError::Unavailable { dataset, source }
            }
            source => ConnectorError::QueryFailed {
                dataset,
                query: query.name.clone(),
                source,
            },
        }
    }

    /// Runs one mapping query and checks it returned what the mapping reads.
    async fn rows(
        &self,
        query: &Query,
        bind: impl Fn(Param) -> Bind,
    ) -> Result<ResultSet, ConnectorError> {
        // Names only: bound values are personal data and stay out of traces.
        let span = tracing::debug_span!(
            "connector.sql.query",
            dataset = %self.descriptor.id,
            query = %query.name,
            rows = tracing::field::Empty,
        );
        let set = self.run(query, bind).instrument(span.clone()).await?;
        span.record("rows", set.rows.len());
        Ok(set)
    }

    async fn run(
        &self,
        query: &Query,
        bind: impl Fn(Param) -> Bind,
    ) -> Result<ResultSet, ConnectorError> {
        // One body for both drivers; their query types differ only in name.
        macro_rules! fetch {
            ($db:ty, $pool:expr, $cells:expr) => {{
                let mut q = sqlx::query::<$db>(AssertSqlSafe(query.sql.clone()));
                for param in &query.params {
                    q = match bind(*param) {
                        Bind::Text(v) => q.bind(v),
                        Bind::Int(v) => q.bind(v),
                    };
                }
                let rows = q.fetch_all($pool).await.map_err(|e| self.error(query, e))?;
                let columns = rows.first().map(column_names).unwrap_or_default();
                ResultSet::new(&columns, rows.iter().map($cells).collect())
            }};
        }
        let set = match &self.pool {
            Pool::Sqlite(pool) => fetch!(Sqlite, pool, sqlite_cells),
            Pool::Postgres(pool) => fetch!(Postgres, pool, pg_cells),
        };
        if let Some(column) = set.missing_column(&query.columns) {
            return Err(self.missing_column(query, column));
        }
        Ok(set)
    }

    fn missing_column(&self, query: &Query, column: &str) -> ConnectorError {
        ConnectorError::Mapping {
            dataset: self.descriptor.id.clone(),
            message: format!("query `{}` does not return column `{column}`", query.name),
        }
    }

    fn source_key(&self, source_id: &str) -> Result<SourceKey, ConnectorError> {
        let refuse = |reason: &str| ConnectorError::InvalidSourceId {
            dataset: self.descriptor.id.clone(),
            source_id: excerpt(source_id, 64),
            reason: reason.to_owned(),
        };
        if source_id.is_empty() {
            return Err(refuse("source ids are not empty"));
        }
        if source_id.len() > reader::MAX_SOURCE_ID_BYTES {
            return Err(refuse("source ids are at most 256 bytes"));
        }
        match self.plan.person.source_id_type {
            SourceIdType::Text => Ok(SourceKey {
                text: source_id.to_owned(),
                integer: None,
            }),
            SourceIdType::Integer => match source_id.parse::<i64>() {
                Ok(i) => Ok(SourceKey {
                    text: i.to_string(),
                    integer: Some(i),
                }),
                Err(_) => Err(refuse("this dataset's source ids are integers")),
            },
        }
    }

    fn person_bind(key: &SourceKey, limit: usize) -> impl Fn(Param) -> Bind + '_ {
        move |param| match param {
            Param::SourceId => match key.integer {
                Some(i) => Bind::Int(Some(i)),
                None => Bind::Text(Some(key.text.clone())),
            },
            Param::Limit => Bind::Int(Some(as_i64(limit))),
            // INVARIANT: person queries are compiled with PERSON_PARAMS only.
            _ => Bind::Text(None),
        }
    }

    /// Adds the list entries that have queries of their own to a person.
    async fn read_lists(
        &self,
        source_id: &str,
        person: &mut Person,
        skipped: &mut Vec<RowProblem>,
    ) -> Result<(), ConnectorError> {
        let p = &self.plan.person;
        let needs_lists = p.names.iter().any(|e| e.from.is_some())
            || p.addresses.iter().any(|e| e.from.is_some())
            || p.identifiers.iter().any(|e| e.from.is_some());
        if !needs_lists {
            return Ok(());
        }
        let key = match self.source_key(source_id) {
            Ok(key) => key,
            Err(e) => {
                skipped.push(RowProblem {
                    source_id: source_id.to_owned(),
                    problem: format!("lists not read: {e}"),
                });
                return Ok(());
            }
        };
        let plan = &self.plan;
        let system = &plan.system;
        person.names.extend(
            self.list(&p.names, &key, source_id, skipped, |r, e| {
                crate::map::assemble::read_name(r, e)
            })
            .await?,
        );
        person.addresses.extend(
            self.list(&p.addresses, &key, source_id, skipped, |r, e| {
                crate::map::assemble::read_address(r, e)
            })
            .await?,
        );
        person.identifiers.extend(
            self.list(&p.identifiers, &key, source_id, skipped, |r, e| {
                crate::map::assemble::read_identifier(r, e, system)
            })
            .await?,
        );
        Ok(())
    }

    async fn list<T, V>(
        &self,
        entries: &[ListEntry<T, Query>],
        key: &SourceKey,
        source_id: &str,
        skipped: &mut Vec<RowProblem>,
        read: impl Fn(&mut RowReader<'_>, &T) -> Option<V>,
    ) -> Result<Vec<V>, ConnectorError> {
        let mut values = Vec::new();
        for entry in entries {
            let Some(query) = &entry.from else { continue };
            let limit = self.plan.max_list_rows;
            let set = self
                .rows(query, Self::person_bind(key, limit.saturating_add(1)))
                .await?;
            for (i, row) in set.iter().enumerate() {
                if i == limit {
                    skipped.push(RowProblem {
                        source_id: source_id.to_owned(),
                        problem: format!(
                            "`{}` returned more than {limit} rows; the rest were not read",
                            query.name
                        ),
                    });
                    break;
                }
                let mut r = RowReader::new(&row, self.plan.offset);
                let value = read(&mut r, &entry.plan);
                skipped.extend(r.problems.drain(..).map(|problem| RowProblem {
                    source_id: source_id.to_owned(),
                    problem,
                }));
                if !r.skip {
                    values.extend(value);
                }
            }
        }
        Ok(values)
    }

    async fn search_people(
        &self,
        query: &PersonQuery,
        limit: usize,
    ) -> Result<Found, ConnectorError> {
        let dob_format = self
            .plan
            .person
            .date_of_birth
            .as_ref()
            .and_then(|f| f.format.as_deref());
        let terms = SearchTerms::parse(&self.descriptor.id, query, dob_format)?;
        let limit = limit.min(self.plan.max_search_results);
        let mut found = Found::default();
        if limit == 0 {
            return Ok(found);
        }
        let search = &self.plan.person.access.search;
        let set = self
            .rows(search, |param| bind(&terms, param, limit))
            .await?;
        let mut seen = HashSet::new();
        for row in set.iter() {
            if found.persons.len() >= limit {
                break;
            }
            let read = self.plan.read_person(&row);
            let Some((source_id, mut person)) = read.value else {
                found.skipped.extend(read.problems);
                continue;
            };
            if !seen.insert(source_id.clone()) {
                continue;
            }
            let mut problems = read.problems;
            self.read_lists(&source_id, &mut person, &mut problems)
                .await?;
            // The search SQL is the operator's; this check makes the match
            // rules hold whatever it does, and keeps people who do not
            // match (and their problems) out of the answer.
            if terms.matches(&person) {
                found.persons.push(person);
                found.skipped.extend(problems);
            } else {
                tracing::debug!(
                    dataset = %self.descriptor.id,
                    %source_id,
                    "search row did not match the query once mapped"
                );
            }
        }
        Ok(found)
    }

    async fn fetch_person(
        &self,
        source_id: &str,
        kinds: &[RecordKind],
    ) -> Result<Fetched, ConnectorError> {
        let key = self.source_key(source_id)?;
        let get = &self.plan.person.access.get;
        let set = self.rows(get, Self::person_bind(&key, 2)).await?;
        let mut fetched = Fetched::default();
        let Some(first) = set.iter().next() else {
            return Ok(fetched);
        };
        if set.rows.len() > 1 {
            fetched.skipped.push(RowProblem {
                source_id: key.text.clone(),
                problem: format!(
                    "`{}` returned more than one row; the first was used",
                    get.name
                ),
            });
        }
        let read = self.plan.read_person(&first);
        fetched.skipped.extend(read.problems);
        if let Some((id, mut person)) = read.value {
            if id != key.text {
                // Answering with someone else's record would be a disclosure
                // about the wrong person; refuse outright.
                return Err(ConnectorError::Mapping {
                    dataset: self.descriptor.id.clone(),
                    message: format!(
                        "query `{}` returned person `{}` when asked for `{}`",
                        get.name,
                        excerpt(&id, 64),
                        excerpt(&key.text, 64)
                    ),
                });
            }
            self.read_lists(&id, &mut person, &mut fetched.skipped)
                .await?;
            fetched.person = Some(person);
        }
        let max = self.plan.max_records;
        for plan in &self.plan.records {
            if !(kinds.is_empty() || kinds.contains(&plan.kind)) {
                continue;
            }
            let set = self
                .rows(&plan.from, Self::person_bind(&key, max.saturating_add(1)))
                .await?;
            for (i, row) in set.iter().enumerate() {
                if i == max {
                    fetched.skipped.push(RowProblem {
                        source_id: key.text.clone(),
                        problem: format!(
                            "`{}` returned more than {max} records; the rest were not read",
                            plan.from.name
                        ),
                    });
                    break;
                }
                let read = self.plan.read_record(plan, &key.text, &row);
                fetched.records.extend(read.value);
                fetched.skipped.extend(read.problems);
            }
        }
        Ok(fetched)
    }

    async fn read_changes(
        &self,
        after: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<Changes, ConnectorError> {
        let Some(plan) = &self.changes else {
            return Err(ConnectorError::ChangesNotOffered {
                dataset: self.descriptor.id.clone(),
            });
        };
        let mut out = Changes::default();
        let Some(after) = after else {
            // "From now": the latest cursor, and no changes.
            let set = self
                .rows(&plan.head, |param| match param {
                    Param::Limit => Bind::Int(Some(1)),
                    _ => Bind::Text(None),
                })
                .await?;
            let head = set.iter().next().and_then(|row| {
                RowReader::new(&row, self.plan.offset)
                    .source_id(&plan.cursor)
                    .ok()
            });
            out.cursor = ChangeCursor(head.unwrap_or_default());
            return Ok(out);
        };
        let refuse = || ConnectorError::InvalidCursor {
            dataset: self.descriptor.id.clone(),
            cursor: excerpt(&after.0, 32),
        };
        let bound = match (plan.cursor_type, after.0.as_str()) {
            (SourceIdType::Integer, "") => Bind::Int(None),
            (SourceIdType::Text, "") => Bind::Text(None),
            (SourceIdType::Integer, text) => Bind::Int(Some(text.parse().map_err(|_| refuse())?)),
            (SourceIdType::Text, text) if text.len() <= reader::MAX_SOURCE_ID_BYTES => {
                Bind::Text(Some(text.to_owned()))
            }
            (SourceIdType::Text, _) => return Err(refuse()),
        };
        let limit = limit.min(self.plan.max_records);
        out.cursor = after.clone();
        if limit == 0 {
            return Ok(out);
        }
        let set = self
            .rows(&plan.changes, |param| match param {
                Param::After => bound.clone(),
                Param::Limit => Bind::Int(Some(as_i64(limit))),
                _ => Bind::Text(None),
            })
            .await?;
        for row in set.iter().take(limit) {
            let r = RowReader::new(&row, self.plan.offset);
            let cursor = match r.source_id(&plan.cursor) {
                Ok(cursor) => ChangeCursor(cursor),
                Err(why) => {
                    // Without its cursor the feed cannot move past the row
                    // safely; stop here so it is read again next time.
                    out.skipped.push(RowProblem {
                        source_id: String::new(),
                        problem: format!("`changes.sql` row has no usable cursor: {why}"),
                    });
                    break;
                }
            };
            match r.source_id(&plan.person_source_id) {
                Ok(source_id) => out.changes.push(Change {
                    cursor: cursor.clone(),
                    source_id,
                }),
                Err(why) => out.skipped.push(RowProblem {
                    source_id: String::new(),
                    problem: format!(
                        "`changes.sql` row at cursor `{}` names no person: {why}; row skipped",
                        excerpt(&cursor.0, 32)
                    ),
                }),
            }
            out.cursor = cursor;
        }
        Ok(out)
    }

    async fn check_mapping(&self) -> Result<(), ConnectorError> {
        let p = &self.plan.person;
        let mut queries = vec![&p.access.search, &p.access.get];
        queries.extend(p.names.iter().filter_map(|e| e.from.as_ref()));
        queries.extend(p.addresses.iter().filter_map(|e| e.from.as_ref()));
        queries.extend(p.identifiers.iter().filter_map(|e| e.from.as_ref()));
        queries.extend(self.plan.records.iter().map(|r| &r.from));
        if let Some(changes) = &self.changes {
            queries.extend([&changes.changes, &changes.head]);
        }
        let integer_cursors = self
            .changes
            .as_ref()
            .is_some_and(|c| c.cursor_type == SourceIdType::Integer);
        for query in queries {
            let sql = AssertSqlSafe(query.sql.clone()).into_sql_str();
            let columns: Vec<String> = match &self.pool {
                Pool::Sqlite(pool) => {
                    let statement = pool.prepare(sql).await.map_err(|e| self.error(query, e))?;
                    statement
                        .columns()
                        .iter()
                        .map(|c| sqlx::Column::name(c).to_owned())
                        .collect()
                }
                Pool::Postgres(pool) => {
                    let integer_ids = p.source_id_type == SourceIdType::Integer;
                    let types: Vec<_> = query
                        .params
                        .iter()
                        .map(|param| match param {
                            Param::Limit => <i64 as Type<Postgres>>::type_info(),
                            Param::SourceId if integer_ids => <i64 as Type<Postgres>>::type_info(),
                            Param::After if integer_cursors => <i64 as Type<Postgres>>::type_info(),
                            _ => <String as Type<Postgres>>::type_info(),
                        })
                        .collect();
                    let statement = pool
                        .prepare_with(sql, &types)
                        .await
                        .map_err(|e| self.error(query, e))?;
                    statement
                        .columns()
                        .iter()
                        .map(|c| sqlx::Column::name(c).to_owned())
                        .collect()
                }
            };
            let have: HashSet<String> = columns.iter().map(|c| c.to_lowercase()).collect();
            if let Some(column) = query
                .columns
                .iter()
                .find(|c| !have.contains(&c.to_lowercase()))
            {
                return Err(self.missing_column(query, column));
            }
        }
        Ok(())
    }
}

impl Connector for SqlConnector {
    fn descriptor(&self) -> &DatasetDescriptor {
        &self.descriptor
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
        Box::pin(self.read_changes(after, limit))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.check_mapping())
    }
}

/// The value bound to `param` in a search query.
fn bind(terms: &SearchTerms, param: Param, limit: usize) -> Bind {
    match param {
        Param::GivenNamePrefix => Bind::Text(terms.given_name.as_deref().map(like_prefix)),
        Param::Limit => Bind::Int(Some(as_i64(limit))),
        // INVARIANT: search queries are compiled with SEARCH_PARAMS only, so
        // `:source_id` never reaches here.
        other => Bind::Text(terms.text(other)),
    }
}

fn invalid(config: &SqlConnectorConfig, problems: Vec<String>) -> ConnectorError {
    ConnectorError::InvalidConfig {
        dataset: config.id.clone(),
        problems,
    }
}

fn open_pool(config: &SqlConnectorConfig) -> Result<Pool, ConnectorError> {
    let max = config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let bad_url = |why: String| invalid(config, vec![format!("url: {why}")]);
    let url = config.url.as_str();
    if url.starts_with("sqlite:") {
        // Read-only whatever the URL says: a connector never writes.
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| bad_url(e.to_string()))?
            .read_only(true);
        // A connection to a local file does not go stale the way one over a network does; the
        // ping before each query would be one more hand-over to sqlx's worker thread.
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Pool::Sqlite(pool))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| bad_url(e.to_string()))?
            .application_name("liaison-connector")
            .options([("default_transaction_read_only", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .connect_lazy_with(options);
        Ok(Pool::Postgres(pool))
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        Err(bad_url(format!(
            "scheme `{}` is not supported; use `sqlite:` or `postgres:`",
            excerpt(scheme, 16)
        )))
    }
}

/// Database error codes that mean the source could not be reached, rather
/// than that a query was wrong: SQLite's "cannot open" (14), and
/// PostgreSQL's connection exceptions (class 08), missing database (3D000),
/// exhausted resources (class 53) and shutdowns (class 57P).
fn unreachable_code(code: &str) -> bool {
    code == "14"
        || code == "3D000"
        || code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A LIKE pattern matching values that start with `prefix`, with LIKE's
/// own wildcards in it escaped by `\` (so the SQL says `ESCAPE '\'`).
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefixes_escape_wildcards() {
        assert_eq!(like_prefix("Le"), "Le%");
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
    }

    #[test]
    fn unreachable_sources_are_told_from_failed_queries() {
        for code in ["14", "3D000", "08006", "53300", "57P01"] {
            assert!(unreachable_code(code), "{code}");
        }
        for code in ["1", "8", "42P01", "25006", "22P02"] {
            assert!(!unreachable_code(code), "{code}");
        }
    }
}
