//! The SQL connector: a legacy PostgreSQL or SQLite database read through a
//! declarative [`SqlMapping`].
//!
//! The connector only ever runs the statements in its mapping, with caller
//! input bound as parameters, over connections opened read-only. Pools
//! connect lazily, so a source that is down at start-up is reported when
//! asked, as a gap in that answer, and does not stop the gateway.

mod assemble;
mod compile;
pub mod mapping;
mod params;
mod reader;
mod row;

use std::collections::HashSet;
use std::str::FromStr;

use liaison_proto::v1::{Date, IdentifierScheme, Person, RecordKind};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Executor, SqlSafeStr, Statement, Type};
use tracing::Instrument;

use self::compile::{ListEntry, Plan, Query};
use self::mapping::SourceIdType;
pub use self::mapping::SqlMapping;
use self::params::Param;
use self::row::{ResultSet, column_names, pg_cells, sqlite_cells};
use crate::config::SqlConnectorConfig;
use crate::error::excerpt;
use crate::{
    BoxFuture, Connector, ConnectorError, DatasetDescriptor, Fetched, Found, PersonQuery,
    RowProblem, normalise,
};

const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// Longer search terms are refused: no name or identifier is this long.
const MAX_TERM_BYTES: usize = 256;

/// A connector over a legacy SQL database.
pub struct SqlConnector {
    descriptor: DatasetDescriptor,
    plan: Plan,
    pool: Pool,
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A value bound to one placeholder.
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

/// A caller's query, checked and normalised, ready to bind.
#[derive(Debug, Default)]
struct SearchTerms {
    family_name: Option<String>,
    given_name: Option<String>,
    date_of_birth: Option<time::Date>,
    date_of_birth_source: Option<String>,
    postcode: Option<String>,
    identifiers: Vec<(IdentifierScheme, String, String)>,
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
        let plan = compile::compile(mapping, &config.id, &config.agency, &config.system)
            .map_err(|found| problems.extend(found));
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
        let needs_lists = p.names.iter().any(|e| e.query.is_some())
            || p.addresses.iter().any(|e| e.query.is_some())
            || p.identifiers.iter().any(|e| e.query.is_some());
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
                assemble::read_name(r, e)
            })
            .await?,
        );
        person.addresses.extend(
            self.list(&p.addresses, &key, source_id, skipped, |r, e| {
                assemble::read_address(r, e)
            })
            .await?,
        );
        person.identifiers.extend(
            self.list(&p.identifiers, &key, source_id, skipped, |r, e| {
                assemble::read_identifier(r, e, system)
            })
            .await?,
        );
        Ok(())
    }

    async fn list<T, V>(
        &self,
        entries: &[ListEntry<T>],
        key: &SourceKey,
        source_id: &str,
        skipped: &mut Vec<RowProblem>,
        read: impl Fn(&mut reader::RowReader<'_>, &T) -> Option<V>,
    ) -> Result<Vec<V>, ConnectorError> {
        let mut values = Vec::new();
        for entry in entries {
            let Some(query) = &entry.query else { continue };
            let limit = self.plan.max_list_rows;
            let set = self
                .rows(query, Self::person_bind(key, limit.saturating_add(1)))
                .await?;
            for (i, row) in set.rows.iter().enumerate() {
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
                let mut r = reader::RowReader::new(&set, row, self.plan.offset);
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
        let terms = self.terms(query)?;
        let limit = limit.min(self.plan.max_search_results);
        let mut found = Found::default();
        if limit == 0 {
            return Ok(found);
        }
        let search = &self.plan.person.search;
        let set = self.rows(search, |param| terms.bind(param, limit)).await?;
        let mut seen = HashSet::new();
        for row in &set.rows {
            if found.persons.len() >= limit {
                break;
            }
            let read = self.plan.read_person(&set, row);
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
        let get = &self.plan.person.get;
        let set = self.rows(get, Self::person_bind(&key, 2)).await?;
        let mut fetched = Fetched::default();
        let Some(first) = set.rows.first() else {
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
        let read = self.plan.read_person(&set, first);
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
                .rows(&plan.query, Self::person_bind(&key, max.saturating_add(1)))
                .await?;
            for (i, row) in set.rows.iter().enumerate() {
                if i == max {
                    fetched.skipped.push(RowProblem {
                        source_id: key.text.clone(),
                        problem: format!(
                            "`{}` returned more than {max} records; the rest were not read",
                            plan.query.name
                        ),
                    });
                    break;
                }
                let read = self.plan.read_record(plan, &key.text, &set, row);
                fetched.records.extend(read.value);
                fetched.skipped.extend(read.problems);
            }
        }
        Ok(fetched)
    }

    fn terms(&self, query: &PersonQuery) -> Result<SearchTerms, ConnectorError> {
        let refuse = |reason: String| ConnectorError::InvalidQuery {
            dataset: self.descriptor.id.clone(),
            reason,
        };
        let term = |name: &str, value: &Option<String>| -> Result<Option<String>, ConnectorError> {
            match value.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) if v.len() > MAX_TERM_BYTES => Err(refuse(format!(
                    "`{name}` is longer than {MAX_TERM_BYTES} bytes"
                ))),
                Some(v) => Ok(Some(v.to_owned())),
            }
        };
        let mut terms = SearchTerms {
            family_name: term("family_name", &query.family_name)?,
            given_name: term("given_name", &query.given_name)?,
            ..SearchTerms::default()
        };
        if let Some(date) = &query.date_of_birth {
            let d = calendar_date(date).ok_or_else(|| {
                refuse(format!(
                    "`date_of_birth` {:04}-{:02}-{:02} is not a calendar date",
                    date.year, date.month, date.day
                ))
            })?;
            terms.date_of_birth = Some(d);
            terms.date_of_birth_source = self.dob_in_source_format(d);
        }
        if let Some(raw) = term("postcode", &query.postcode)? {
            let postcode = normalise::postcode(&raw).map_err(|why| {
                refuse(format!(
                    "`postcode` `{}` is not valid: {why}",
                    excerpt(&raw, 16)
                ))
            })?;
            terms.postcode = Some(postcode);
        }
        for identifier in &query.identifiers {
            let scheme = IdentifierScheme::try_from(identifier.scheme)
                .unwrap_or(IdentifierScheme::Unspecified);
            if identifier.value.len() > MAX_TERM_BYTES {
                return Err(refuse(format!(
                    "an identifier is longer than {MAX_TERM_BYTES} bytes"
                )));
            }
            let value = normalise::identifier(scheme, &identifier.value).map_err(|why| {
                refuse(format!(
                    "identifier `{}` of scheme `{}` is not valid: {why}",
                    excerpt(&identifier.value, 32),
                    scheme.as_str_name()
                ))
            })?;
            if terms.identifiers.iter().any(|(s, _, _)| *s == scheme) {
                return Err(refuse(format!(
                    "the query holds more than one identifier of scheme `{}`",
                    scheme.as_str_name()
                )));
            }
            terms
                .identifiers
                .push((scheme, value, identifier.system.trim().to_owned()));
        }
        let empty = terms.family_name.is_none()
            && terms.given_name.is_none()
            && terms.date_of_birth.is_none()
            && terms.postcode.is_none()
            && terms.identifiers.is_empty();
        if empty {
            return Err(refuse("the query has no criteria".into()));
        }
        Ok(terms)
    }

    /// The date of birth spelt as the source holds it, for `:date_of_birth`,
    /// when the mapping says how.
    fn dob_in_source_format(&self, date: time::Date) -> Option<String> {
        let format = self.plan.person.date_of_birth.as_ref()?.format.as_deref();
        match format {
            Some(compile::Format::Description { items, .. }) => date.format(items).ok(),
            _ => iso_date(date),
        }
    }

    async fn check_mapping(&self) -> Result<(), ConnectorError> {
        let p = &self.plan.person;
        let mut queries = vec![&p.search, &p.get];
        queries.extend(p.names.iter().filter_map(|e| e.query.as_ref()));
        queries.extend(p.addresses.iter().filter_map(|e| e.query.as_ref()));
        queries.extend(p.identifiers.iter().filter_map(|e| e.query.as_ref()));
        queries.extend(self.plan.records.iter().map(|r| &r.query));
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

    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.check_mapping())
    }
}

impl SearchTerms {
    fn identifier(&self, scheme: IdentifierScheme) -> Option<String> {
        self.identifiers
            .iter()
            .find(|(s, _, _)| *s == scheme)
            .map(|(_, v, _)| v.clone())
    }

    fn bind(&self, param: Param, limit: usize) -> Bind {
        let text = |v: &Option<String>| Bind::Text(v.clone());
        match param {
            Param::FamilyName => text(&self.family_name),
            Param::GivenName => text(&self.given_name),
            Param::GivenNamePrefix => Bind::Text(self.given_name.as_deref().map(like_prefix)),
            Param::DateOfBirth => text(&self.date_of_birth_source),
            Param::DateOfBirthIso => Bind::Text(self.date_of_birth.and_then(iso_date)),
            Param::Postcode => text(&self.postcode),
            Param::PostcodeCompact => {
                Bind::Text(self.postcode.as_ref().map(|p| p.replace(' ', "")))
            }
            Param::NhsNumber => Bind::Text(self.identifier(IdentifierScheme::NhsNumber)),
            Param::PncId => Bind::Text(self.identifier(IdentifierScheme::PncId)),
            Param::Upn => Bind::Text(self.identifier(IdentifierScheme::Upn)),
            Param::LocalId => Bind::Text(self.identifier(IdentifierScheme::Local)),
            Param::Limit => Bind::Int(Some(as_i64(limit))),
            // INVARIANT: search queries are compiled with SEARCH_PARAMS only.
            Param::SourceId => Bind::Text(None),
        }
    }

    /// Whether a mapped person meets every criterion.
    fn matches(&self, person: &Person) -> bool {
        let fold = |s: &str| s.to_lowercase();
        let family_ok = self.family_name.as_deref().is_none_or(|want| {
            let want = fold(want);
            person.names.iter().any(|n| fold(&n.family_name) == want)
        });
        let given_ok = self.given_name.as_deref().is_none_or(|want| {
            let want = fold(want);
            person
                .names
                .iter()
                .any(|n| fold(&n.given_names).starts_with(&want))
        });
        let dob_ok = self.date_of_birth.is_none_or(|want| {
            person
                .date_of_birth
                .as_ref()
                .and_then(calendar_date)
                .is_some_and(|d| d == want)
        });
        let postcode_ok = self
            .postcode
            .as_deref()
            .is_none_or(|want| person.addresses.iter().any(|a| a.postcode == want));
        let identifiers_ok = self.identifiers.iter().all(|(scheme, value, system)| {
            person.identifiers.iter().any(|i| {
                i.scheme == *scheme as i32
                    && i.value == *value
                    && (system.is_empty() || i.system == *system)
            })
        });
        family_ok && given_ok && dob_ok && postcode_ok && identifiers_ok
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
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
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

fn calendar_date(date: &Date) -> Option<time::Date> {
    let month = u8::try_from(date.month).ok()?;
    let month = time::Month::try_from(month).ok()?;
    let day = u8::try_from(date.day).ok()?;
    time::Date::from_calendar_date(date.year, month, day).ok()
}

fn iso_date(date: time::Date) -> Option<String> {
    date.format(&time::format_description::well_known::Iso8601::DATE)
        .ok()
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

    #[test]
    fn calendar_dates_are_checked() {
        let date = |year, month, day| Date { year, month, day };
        assert!(calendar_date(&date(2013, 5, 14)).is_some());
        assert!(calendar_date(&date(2010, 2, 31)).is_none());
        assert!(calendar_date(&date(2010, 13, 1)).is_none());
        assert!(calendar_date(&date(2010, -1, 1)).is_none());
    }
}
