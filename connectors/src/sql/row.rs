//! Database rows decoded into plain [`Cell`]s before any mapping runs.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::map::row::Cell;

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
