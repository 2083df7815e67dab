//! What the SQL connector compiles for itself: the statements of a mapping,
//! with named parameters translated to positional binds.

use std::sync::Arc;

use super::params::{self, PERSON_PARAMS, Param, SEARCH_PARAMS};
use crate::map::compile::{Compiler, Dialect, ListKeys, RecordSource, Template};
use crate::map::params::{CHANGE_PARAMS, HEAD_PARAMS};
use crate::mapping::{ChangesMapping, PersonMapping, SourceIdType};

/// The SQL dialect of the mapping.
#[derive(Debug)]
pub(crate) struct Sql;

/// One statement the connector may run.
#[derive(Debug)]
pub(crate) struct Query {
    /// The mapping's name for it, used in errors: `person.search_sql`.
    pub(crate) name: String,
    pub(crate) sql: Arc<str>,
    pub(crate) params: Vec<Param>,
    /// Every column the mapping reads from its rows.
    pub(crate) columns: Vec<String>,
}

/// How people are searched for and read.
#[derive(Debug)]
pub(crate) struct SqlPerson {
    pub(crate) search: Query,
    pub(crate) get: Query,
}

/// A change feed read by polling from a high-water mark.
#[derive(Debug)]
pub(crate) struct ChangesPlan {
    pub(crate) changes: Query,
    pub(crate) head: Query,
    /// The cursor column, as a template so reading it reports an empty one.
    pub(crate) cursor: Template,
    pub(crate) cursor_type: SourceIdType,
    pub(crate) person_source_id: Template,
}

/// Compiles a mapping's `[changes]`, listing its problems in `problems`.
pub(crate) fn changes(m: &ChangesMapping, problems: &mut Vec<String>) -> Option<ChangesPlan> {
    let before = problems.len();
    for (key, present) in [
        ("changes.sql", m.sql.is_some()),
        ("changes.head_sql", m.head_sql.is_some()),
    ] {
        if !present {
            problems.push(format!("{key}: is required by `sql` connectors"));
        }
    }
    for (key, present) in [
        ("changes.request", m.request.is_some()),
        ("changes.head", m.head.is_some()),
    ] {
        if present {
            problems.push(format!("{key}: is only read by `json-http` connectors"));
        }
    }
    if problems.len() > before {
        return None;
    }
    let mut translate =
        |key: &str, sql: &str, allowed: &[Param], columns: Vec<String>| match params::translate(
            sql, allowed,
        ) {
            Ok(t) => query_of(key, t.sql, t.params, columns),
            Err(why) => {
                problems.push(format!("{key}: the sql {why}"));
                query_of(key, String::new(), Vec::new(), columns)
            }
        };
    let template = Template::parse(&m.person_source_id);
    let mut columns = vec![m.cursor.clone()];
    if let Ok(t) = &template {
        columns.extend(t.columns().map(str::to_owned));
    }
    let changes = translate(
        "changes.sql",
        m.sql.as_deref().unwrap_or_default(),
        CHANGE_PARAMS,
        columns,
    );
    let head = translate(
        "changes.head_sql",
        m.head_sql.as_deref().unwrap_or_default(),
        HEAD_PARAMS,
        vec![m.cursor.clone()],
    );
    let person_source_id = match template {
        Ok(t) if t.columns().next().is_some() => Some(t),
        Ok(_) => {
            problems.push("changes.person_source_id: names no column".into());
            None
        }
        Err(why) => {
            problems.push(format!("changes.person_source_id: {why}"));
            None
        }
    };
    let cursor = match Template::parse(&format!("{{{}}}", m.cursor)) {
        Ok(t) => Some(t),
        Err(_) => {
            problems.push("changes.cursor: must name one column".into());
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(ChangesPlan {
        changes,
        head,
        cursor: cursor?,
        cursor_type: m.cursor_type,
        person_source_id: person_source_id?,
    })
}

impl Dialect for Sql {
    const KIND: &'static str = "sql";
    type Person = SqlPerson;
    type List = Query;
    type Records = Query;

    fn list_source(entry: ListKeys<'_>) -> Option<(&'static str, &str)> {
        entry.sql.map(|sql| ("sql", sql))
    }

    fn person(c: &mut Compiler<'_>, p: &PersonMapping, columns: Vec<String>) -> SqlPerson {
        let search = required(
            c,
            "person.search_sql",
            p.search_sql.as_deref(),
            SEARCH_PARAMS,
            columns.clone(),
        );
        let get = required(
            c,
            "person.get_sql",
            p.get_sql.as_deref(),
            PERSON_PARAMS,
            columns,
        );
        SqlPerson { search, get }
    }

    fn list(c: &mut Compiler<'_>, key: &str, source: &str, columns: Vec<String>) -> Query {
        query(c, key, source, PERSON_PARAMS, columns)
    }

    fn records(
        c: &mut Compiler<'_>,
        key: &str,
        source: RecordSource<'_>,
        columns: Vec<String>,
    ) -> Query {
        required(c, &format!("{key}.sql"), source.sql, PERSON_PARAMS, columns)
    }
}

fn required(
    c: &mut Compiler<'_>,
    key: &str,
    sql: Option<&str>,
    allowed: &[Param],
    columns: Vec<String>,
) -> Query {
    match sql {
        Some(sql) => query(c, key, sql, allowed, columns),
        None => {
            c.problem(key, "is required by `sql` connectors");
            query_of(key, String::new(), Vec::new(), columns)
        }
    }
}

fn query(
    c: &mut Compiler<'_>,
    key: &str,
    sql: &str,
    allowed: &[Param],
    columns: Vec<String>,
) -> Query {
    let translated = params::translate(sql, allowed).unwrap_or_else(|why| {
        c.problem(key, format!("the sql {why}"));
        params::Translated {
            sql: String::new(),
            params: Vec::new(),
        }
    });
    query_of(key, translated.sql, translated.params, columns)
}

fn query_of(key: &str, sql: String, params: Vec<Param>, mut columns: Vec<String>) -> Query {
    columns.sort_by_key(|c| c.to_lowercase());
    columns.dedup_by_key(|c| c.to_lowercase());
    Query {
        name: key.to_owned(),
        sql: sql.into(),
        params,
        columns,
    }
}
