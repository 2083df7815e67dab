//! Source rows as plain values, whatever the source: a SQL result row, a
//! CSV record or a JSON object all answer "what is in column `x`?".
//!
//! Legacy columns hold whatever was put in them (SQLite does not even keep
//! to a column's declared type), so each value is read by what it actually
//! is, and anything unreadable becomes a value the mapping reports rather
//! than a failed query.

use std::borrow::Cow;
use std::collections::HashMap;

use time::{OffsetDateTime, PrimitiveDateTime};

/// A source row that fields are read from by column name (for JSON, by
/// pointer).
pub(crate) trait Row: std::fmt::Debug {
    /// The value of `column`; a column the row lacks reads as NULL.
    fn cell(&self, column: &str) -> Cow<'_, Cell>;
}

/// One row of a [`ResultSet`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetRow<'a> {
    pub(crate) set: &'a ResultSet,
    pub(crate) row: &'a [Cell],
}

impl Row for SetRow<'_> {
    fn cell(&self, column: &str) -> Cow<'_, Cell> {
        Cow::Borrowed(self.set.cell(self.row, column))
    }
}

/// A JSON object read as a row: each column is a JSON pointer (RFC 6901)
/// into it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonRow<'a>(pub(crate) &'a serde_json::Value);

impl Row for JsonRow<'_> {
    fn cell(&self, column: &str) -> Cow<'_, Cell> {
        Cow::Owned(self.0.pointer(column).map_or(Cell::Null, json_cell))
    }
}

/// A JSON value as a cell. An array of scalars reads as its values joined
/// by spaces, so `"given": ["Leah", "Jade"]` reads as `Leah Jade`; objects
/// and arrays of anything else are not values a field can hold.
fn json_cell(value: &serde_json::Value) -> Cell {
    use serde_json::Value;
    match value {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => match n.as_f64() {
                Some(f) if n.is_f64() => Cell::Float(f),
                _ => Cell::Text(n.to_string()),
            },
        },
        Value::String(s) => Cell::Text(s.clone()),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Null => {}
                    Value::String(s) => parts.push(s.trim().to_owned()),
                    Value::Number(n) => parts.push(n.to_string()),
                    Value::Bool(b) => parts.push(b.to_string()),
                    Value::Array(_) | Value::Object(_) => {
                        return Cell::Unsupported("array of arrays or objects".into());
                    }
                }
            }
            parts.retain(|p| !p.is_empty());
            if parts.is_empty() {
                Cell::Null
            } else {
                Cell::Text(parts.join(" "))
            }
        }
        Value::Object(_) => Cell::Unsupported("object".into()),
    }
}

impl ResultSet {
    /// Each row, ready to read.
    pub(crate) fn iter(&self) -> impl Iterator<Item = SetRow<'_>> {
        self.rows.iter().map(|row| SetRow { set: self, row })
    }
}

/// One value from a source row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
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
