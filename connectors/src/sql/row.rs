//! Source rows read into plain values before any mapping runs.
//!
//! Legacy columns hold whatever was put in them (SQLite does not even keep
//! to a column's declared type), so each value is read by what it actually
//! is, and anything unreadable becomes a value the mapping reports rather
//! than a failed query.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use time::{OffsetDateTime, PrimitiveDateTime};

/// One value from a source row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Date(time::Date),
    DateTime(PrimitiveDateTime),
    DateTimeTz(OffsetDateTime),
    /// A type the connector does not read, by its database name.
    Unsupported(String),
    /// A value the driver could not decode as its own type.
    Undecodable(String),
}

/// The rows one query returned, with columns found by name regardless of
/// case: PostgreSQL folds unquoted names to lower case, SQLite keeps them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ResultSet {
    index: HashMap<String, usize>,
    pub(crate) rows: Vec<Vec<Cell>>,
}

static NULL: Cell = Cell::Null;

impl ResultSet {
    pub(crate) fn new(columns: &[String], rows: Vec<Vec<Cell>>) -> Self {
        let mut index = HashMap::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            // The first of two same-named columns wins, as in most drivers.
            index.entry(name.to_lowercase()).or_insert(i);
        }
        Self { index, rows }
    }

    /// The first column named in `wanted` that the result lacks. Only
    /// meaningful when there is at least one row: drivers may report no
    /// columns for an empty result.
    pub(crate) fn missing_column<'a>(&self, wanted: &'a [String]) -> Option<&'a str> {
        if self.rows.is_empty() {
            return None;
        }
        wanted
            .iter()
            .find(|c| !self.index.contains_key(&c.to_lowercase()))
            .map(String::as_str)
    }

    /// The value of `column` in `row`; a column the result lacks reads as
    /// NULL (callers check [`Self::missing_column`] first).
    pub(crate) fn cell<'a>(&self, row: &'a [Cell], column: &str) -> &'a Cell {
        self.index
            .get(&column.to_lowercase())
            .and_then(|i| row.get(*i))
            .unwrap_or(&NULL)
    }
}

pub(crate) fn column_names<R: Row>(row: &R) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

fn decoded<T>(value: Result<T, sqlx::Error>, cell: impl FnOnce(T) -> Cell) -> Cell {
    value.map_or_else(|e| Cell::Undecodable(e.to_string()), cell)
}

pub(crate) fn sqlite_cells(row: &SqliteRow) -> Vec<Cell> {
    (0..row.len())
        .map(|i| {
            let storage = match row.try_get_raw(i) {
                Err(e) => return Cell::Undecodable(e.to_string()),
                Ok(value) if value.is_null() => return Cell::Null,
                Ok(value) => value.type_info().name().to_owned(),
            };
            // SQLite reports each value's own storage class, whatever the
            // column was declared as.
            match storage.as_str() {
                "INTEGER" => decoded(row.try_get_unchecked::<i64, _>(i), Cell::Int),
                "REAL" => decoded(row.try_get_unchecked::<f64, _>(i), Cell::Float),
                "TEXT" => decoded(row.try_get_unchecked::<String, _>(i), Cell::Text),
                "BLOB" => decoded(row.try_get_unchecked::<Vec<u8>, _>(i), Cell::Bytes),
                _ => Cell::Unsupported(storage),
            }
        })
        .collect()
}

pub(crate) fn pg_cells(row: &PgRow) -> Vec<Cell> {
    (0..row.len())
        .map(|i| {
            let name = match row.try_get_raw(i) {
                Err(e) => return Cell::Undecodable(e.to_string()),
                Ok(value) if value.is_null() => return Cell::Null,
                Ok(value) => value.type_info().name().to_owned(),
            };
            match name.as_str() {
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CITEXT" => {
                    decoded(row.try_get::<String, _>(i), Cell::Text)
                }
                "INT2" => decoded(row.try_get::<i16, _>(i), |v| Cell::Int(v.into())),
                "INT4" => decoded(row.try_get::<i32, _>(i), |v| Cell::Int(v.into())),
                "INT8" => decoded(row.try_get::<i64, _>(i), Cell::Int),
                "FLOAT4" => decoded(row.try_get::<f32, _>(i), |v| Cell::Float(v.into())),
                "FLOAT8" => decoded(row.try_get::<f64, _>(i), Cell::Float),
                "BOOL" => decoded(row.try_get::<bool, _>(i), Cell::Bool),
                "BYTEA" => decoded(row.try_get::<Vec<u8>, _>(i), Cell::Bytes),
                "DATE" => decoded(row.try_get::<time::Date, _>(i), Cell::Date),
                "TIMESTAMP" => decoded(row.try_get::<PrimitiveDateTime, _>(i), Cell::DateTime),
                "TIMESTAMPTZ" => decoded(row.try_get::<OffsetDateTime, _>(i), Cell::DateTimeTz),
                _ => Cell::Unsupported(name),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_without_regard_to_case() {
        let set = ResultSet::new(
            &["NOM_ID".into(), "surname".into()],
            vec![vec![Cell::Int(7), Cell::Text("Marsh".into())]],
        );
        let row = set.rows.first().unwrap();
        assert_eq!(set.cell(row, "nom_id"), &Cell::Int(7));
        assert_eq!(set.cell(row, "SURNAME"), &Cell::Text("Marsh".into()));
        assert_eq!(set.cell(row, "DOB"), &Cell::Null);
        assert_eq!(set.missing_column(&["DOB".into()]), Some("DOB"));
        assert_eq!(set.missing_column(&["Nom_Id".into()]), None);
        assert_eq!(ResultSet::default().missing_column(&["DOB".into()]), None);
    }
}
