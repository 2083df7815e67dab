//! Reads one source row through compiled fields, collecting what was wrong
//! with it instead of failing.

use liaison_proto::v1::Date;
use prost_types::Timestamp;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::compile::{Field, Format, Part, Shape, Source, Target, Template};
use super::row::{Cell, Row};
use crate::error::excerpt;
use crate::normalise;

/// A value read from the source before conversion to its target type.
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Text(String),
    Date(time::Date),
    DateTime(PrimitiveDateTime),
    DateTimeTz(OffsetDateTime),
}

/// Reads fields from one row. Problems accumulate; a required field that
/// is absent or invalid marks the whole row to be skipped.
#[derive(Debug)]
pub(crate) struct RowReader<'a> {
    row: &'a dyn Row,
    offset: UtcOffset,
    pub(crate) problems: Vec<String>,
    pub(crate) skip: bool,
}

impl<'a> RowReader<'a> {
    pub(crate) fn new(row: &'a dyn Row, offset: UtcOffset) -> Self {
        Self {
            row,
            offset,
            problems: Vec::new(),
            skip: false,
        }
    }

    /// Renders a source id; every column it names must have a value.
    pub(crate) fn source_id(&self, template: &Template) -> Result<String, String> {
        let mut id = String::new();
        for part in &template.parts {
            match part {
                Part::Text(text) => id.push_str(text),
                Part::Column(column) => match cell_text(&self.row.cell(column), column)? {
                    Some(value) => id.push_str(&value),
                    None => return Err(format!("column `{column}` is empty")),
                },
            }
        }
        if id.len() > MAX_SOURCE_ID_BYTES {
            return Err(format!("the id is longer than {MAX_SOURCE_ID_BYTES} bytes"));
        }
        Ok(id)
    }

    pub(crate) fn text(&mut self, field: Option<&Field>) -> Option<String> {
        let field = field?;
        let mut text = match self.raw(field)? {
            Raw::Text(text) => text,
            other => iso_text(&other),
        };
        if let Some(original) = normalise::truncate(&mut text, field.max_bytes) {
            self.problems.push(format!(
                "{} was cut from {original} to {} bytes",
                field.label,
                text.len()
            ));
        }
        Some(text)
    }

    /// Every non-empty value of `fields`.
    pub(crate) fn texts(&mut self, fields: &[Field]) -> Vec<String> {
        fields.iter().filter_map(|f| self.text(Some(f))).collect()
    }

    pub(crate) fn date(&mut self, field: Option<&Field>) -> Option<Date> {
        let field = field?;
        let date = match self.raw(field)? {
            Raw::Date(d) => Ok(d),
            Raw::DateTime(dt) => Ok(dt.date()),
            Raw::DateTimeTz(dt) => Ok(dt.date()),
            Raw::Text(text) => parse_date(&text, field.format.as_deref()),
        };
        match date {
            Ok(d) => Some(Date {
                year: d.year(),
                month: i32::from(u8::from(d.month())),
                day: i32::from(d.day()),
            }),
            Err(why) => self.invalid(field, &why),
        }
    }

    pub(crate) fn timestamp(&mut self, field: Option<&Field>) -> Option<Timestamp> {
        let field = field?;
        let offset = self.offset;
        let at = match self.raw(field)? {
            Raw::Date(d) => Ok(d.midnight().assume_offset(offset)),
            Raw::DateTime(dt) => Ok(dt.assume_offset(offset)),
            Raw::DateTimeTz(dt) => Ok(dt),
            Raw::Text(text) => parse_timestamp(&text, field.format.as_deref(), offset),
        };
        match at {
            Ok(at) => Some(Timestamp {
                seconds: at.unix_timestamp(),
                nanos: i32::try_from(at.nanosecond()).unwrap_or(0),
            }),
            Err(why) => self.invalid(field, &why),
        }
    }

    pub(crate) fn enumeration(&mut self, field: Option<&Field>) -> Option<i32> {
        let field = field?;
        let Target::Enum(kind) = field.target else {
            return None;
        };
        let text = match self.raw(field)? {
            Raw::Text(text) => text,
            other => iso_text(&other),
        };
        match kind.parse(&text) {
            Some(value) => Some(value),
            None => self.invalid(
                field,
                &format!("`{}` is not a `{}` value", excerpt(&text, 40), kind.name()),
            ),
        }
    }

    /// Records that a field's value could not be used; drops the field, or
    /// the row when the field is required.
    pub(crate) fn invalid<T>(&mut self, field: &Field, why: &str) -> Option<T> {
        let outcome = if field.required {
            self.skip = true;
            "row skipped"
        } else {
            "value dropped"
        };
        self.problems
            .push(format!("{}: {why}; {outcome}", field.label));
        None
    }

    /// The field's value translated through its code list, or its default
    /// when absent, or `None` (reported when required).
    fn raw(&mut self, field: &Field) -> Option<Raw> {
        let raw = match self.source_value(&field.source) {
            Ok(raw) => raw,
            Err(why) => return self.invalid(field, &why),
        };
        let raw = match (raw, &field.codes) {
            (Some(raw), Some(codes)) => {
                let code = match raw {
                    Raw::Text(text) => text,
                    other => iso_text(&other),
                };
                match codes.translate(&code) {
                    // A code may translate to nothing, meaning "absent".
                    Some(value) => non_empty(value.to_owned()).map(Raw::Text),
                    None => {
                        let why = format!(
                            "`{}` is not in code list `{}`",
                            excerpt(&code, 40),
                            codes.name
                        );
                        return self.invalid(field, &why);
                    }
                }
            }
            (raw, _) => raw,
        };
        if raw.is_some() {
            return raw;
        }
        if let Some(default) = &field.default {
            return Some(Raw::Text(default.clone()));
        }
        if field.required {
            self.skip = true;
            self.problems
                .push(format!("{} is empty; row skipped", field.label));
        }
        None
    }

    fn source_value(&self, source: &Source) -> Result<Option<Raw>, String> {
        match source {
            Source::Value(value) => Ok(non_empty(value.clone()).map(Raw::Text)),
            Source::Column(column) => match &*self.row.cell(column) {
                Cell::Date(d) => Ok(Some(Raw::Date(*d))),
                Cell::DateTime(dt) => Ok(Some(Raw::DateTime(*dt))),
                Cell::DateTimeTz(dt) => Ok(Some(Raw::DateTimeTz(*dt))),
                cell => Ok(cell_text(cell, column)?.map(Raw::Text)),
            },
            Source::Columns(columns, separator) => {
                let mut parts = Vec::with_capacity(columns.len());
                for column in columns {
                    parts.extend(cell_text(&self.row.cell(column), column)?);
                }
                Ok(non_empty(parts.join(separator)).map(Raw::Text))
            }
            Source::Template(template) => {
                let mut text = String::new();
                let mut any = false;
                for part in &template.parts {
                    match part {
                        Part::Text(t) => text.push_str(t),
                        Part::Column(column) => {
                            if let Some(value) = cell_text(&self.row.cell(column), column)? {
                                any = true;
                                text.push_str(&value);
                            }
                        }
                    }
                }
                Ok(if any {
                    non_empty(text).map(Raw::Text)
                } else {
                    None
                })
            }
        }
    }
}

/// Source ids longer than this are refused: no legacy key is this long, and
/// ids are echoed in ledgers and replies.
pub(crate) const MAX_SOURCE_ID_BYTES: usize = 256;

fn non_empty(text: String) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_owned())
    }
}

/// A cell as text; NULL and blank text are `None`.
fn cell_text(cell: &Cell, column: &str) -> Result<Option<String>, String> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Int(i) => Ok(Some(i.to_string())),
        Cell::Float(f) if f.is_finite() => Ok(Some(f.to_string())),
        Cell::Float(_) => Err(format!(
            "column `{column}` holds a number that is not finite"
        )),
        Cell::Bool(b) => Ok(Some(b.to_string())),
        Cell::Text(text) => Ok(non_empty(text.clone())),
        Cell::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Ok(non_empty(text.to_owned())),
            Err(_) => Err(format!("column `{column}` holds binary data, not text")),
        },
        Cell::Date(d) => Ok(Some(iso_text(&Raw::Date(*d)))),
        Cell::DateTime(dt) => Ok(Some(iso_text(&Raw::DateTime(*dt)))),
        Cell::DateTimeTz(dt) => Ok(Some(iso_text(&Raw::DateTimeTz(*dt)))),
        Cell::Unsupported(type_name) => Err(format!(
            "column `{column}` has type `{type_name}`, which the connector does not read; \
             map a value inside it, or for sql cast it to text"
        )),
        Cell::Undecodable(why) => Err(format!("column `{column}` could not be read: {why}")),
    }
}

fn iso_text(raw: &Raw) -> String {
    let text = match raw {
        Raw::Text(text) => return text.clone(),
        Raw::Date(d) => d.format(&Iso8601::DATE),
        Raw::DateTime(dt) => dt.format(&Iso8601::DATE_TIME),
        Raw::DateTimeTz(dt) => dt.format(&Rfc3339),
    };
    text.unwrap_or_default()
}

fn parse_date(text: &str, format: Option<&Format>) -> Result<time::Date, String> {
    match format {
        None | Some(Format::Iso8601) => time::Date::parse(text, &Iso8601::DEFAULT)
            .or_else(|_| PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|d| d.date()))
            .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT).map(|d| d.date()))
            .map_err(|e| format!("not an iso 8601 date ({e})")),
        Some(Format::Rfc3339) => OffsetDateTime::parse(text, &Rfc3339)
            .map(|d| d.date())
            .map_err(|e| format!("not an rfc 3339 timestamp ({e})")),
        Some(Format::Description { items, text: f, .. }) => {
            time::Date::parse(text, items).map_err(|e| format!("not a date in format `{f}` ({e})"))
        }
    }
}

fn parse_timestamp(
    text: &str,
    format: Option<&Format>,
    offset: UtcOffset,
) -> Result<OffsetDateTime, String> {
    match format {
        None | Some(Format::Iso8601) => OffsetDateTime::parse(text, &Iso8601::DEFAULT)
            .or_else(|_| {
                PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|d| d.assume_offset(offset))
            })
            .or_else(|_| {
                time::Date::parse(text, &Iso8601::DEFAULT)
                    .map(|d| d.midnight().assume_offset(offset))
            })
            .map_err(|e| format!("not an iso 8601 timestamp ({e})")),
        Some(Format::Rfc3339) => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| format!("not an rfc 3339 timestamp ({e})")),
        Some(Format::Description {
            items,
            text: f,
            shape,
        }) => {
            let parsed = match shape {
                Shape::Date => {
                    time::Date::parse(text, items).map(|d| d.midnight().assume_offset(offset))
                }
                Shape::DateTime => {
                    PrimitiveDateTime::parse(text, items).map(|d| d.assume_offset(offset))
                }
                Shape::DateTimeOffset => OffsetDateTime::parse(text, items),
            };
            parsed.map_err(|e| format!("not a time in format `{f}` ({e})"))
        }
    }
}

#[cfg(test)]
mod tests;
