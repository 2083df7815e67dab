//! What the kit is told about a dataset: a few people known to be in it,
//! written in a small TOML file beside the connector's configuration.

use std::path::Path;

use liaison_proto::v1::{Date, Identifier, IdentifierScheme, RecordKind};
use serde::Deserialize;

/// The people and ids a dataset is known to hold, for [`run_kit`](super::run_kit).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitExpectations {
    /// The dataset id the connector must serve.
    pub dataset: String,
    /// A source id the dataset does not hold (a fetch finds no one).
    pub absent_source_id: String,
    /// A source id the dataset could never hold, refused as the caller's
    /// fault, if the dataset's ids have a type (integers, say).
    #[serde(default)]
    pub invalid_source_id: Option<String>,
    /// How long the kit gives one call through the middleware, in
    /// milliseconds. Defaults to 500.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// A source id on which the source itself stalls, if it has one, to
    /// prove a real stall ends within the deadline.
    #[serde(default)]
    pub stalling_source_id: Option<String>,
    /// People known to be in the dataset with well-formed data.
    pub people: Vec<KnownPerson>,
    /// People whose source rows are known to be malformed.
    #[serde(default)]
    pub malformed: Vec<MalformedPerson>,
    /// What the kit may rely on in the dataset's change feed. Without it
    /// the feed, if the connector offers one, is checked only from "now".
    #[serde(default)]
    pub changes: Option<KnownChanges>,
}

/// What the kit is told about a change feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownChanges {
    /// A cursor the feed can be read from, with changes after it, so the
    /// kit can walk its history (`""` is "from the start" for SQL and
    /// JSON over HTTP feeds).
    #[serde(default)]
    pub from: Option<String>,
    /// The small page size the walk uses, so that page boundaries fall
    /// between changes. Defaults to 3.
    #[serde(default)]
    pub page: Option<usize>,
    /// A cursor the feed could never have issued, refused as the caller's
    /// fault.
    #[serde(default)]
    pub invalid_cursor: Option<String>,
}

/// A person the dataset holds, and how they can be found.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownPerson {
    /// Their source id.
    pub source_id: String,
    /// A family name they hold.
    pub family_name: String,
    /// A given name they hold (a prefix is searched for too).
    #[serde(default)]
    pub given_name: Option<String>,
    /// Their date of birth, `YYYY-MM-DD`.
    #[serde(default)]
    pub date_of_birth: Option<String>,
    /// A postcode of theirs, as it might be typed.
    #[serde(default)]
    pub postcode: Option<String>,
    /// Identifiers of theirs, as they might be typed.
    #[serde(default)]
    pub identifiers: Vec<KnownIdentifier>,
    /// Record kinds they have at least one record of, as `RecordKind`
    /// names.
    #[serde(default)]
    pub record_kinds: Vec<String>,
}

/// An identifier a known person holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownIdentifier {
    /// The `IdentifierScheme` name, such as `IDENTIFIER_SCHEME_NHS_NUMBER`.
    pub scheme: String,
    /// The value, spelt however a caller might.
    pub value: String,
}

/// A person whose source data is known to be malformed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MalformedPerson {
    /// Their source id.
    pub source_id: String,
    /// The fewest problems a fetch must report.
    pub min_problems: usize,
    /// Text that is in their rows and must never be quoted in a problem.
    #[serde(default)]
    pub never_quoted: Vec<String>,
}

/// Why an expectations file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectationsError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("cannot parse `{path}`: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's explanation.
        message: String,
    },
}

impl KitExpectations {
    /// Reads expectations from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ExpectationsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExpectationsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ExpectationsError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Reads expectations from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let parsed: Self = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        for person in &parsed.people {
            if let Some(dob) = &person.date_of_birth
                && parse_date(dob).is_none()
            {
                return Err(format!(
                    "person `{}`: `{dob}` is not a date `YYYY-MM-DD`",
                    person.source_id
                ));
            }
            for id in &person.identifiers {
                if IdentifierScheme::from_str_name(&id.scheme).is_none() {
                    return Err(format!(
                        "person `{}`: `{}` is not an `IdentifierScheme` name",
                        person.source_id, id.scheme
                    ));
                }
            }
            for kind in &person.record_kinds {
                if RecordKind::from_str_name(kind).is_none() {
                    return Err(format!(
                        "person `{}`: `{kind}` is not a `RecordKind` name",
                        person.source_id
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

impl KnownPerson {
    /// Their date of birth, checked when the file was read.
    pub fn date(&self) -> Option<Date> {
        self.date_of_birth.as_deref().and_then(parse_date)
    }

    /// Their identifiers in the model's terms.
    pub fn model_identifiers(&self) -> Vec<Identifier> {
        self.identifiers
            .iter()
            .filter_map(|id| {
                Some(Identifier {
                    scheme: IdentifierScheme::from_str_name(&id.scheme)? as i32,
                    value: id.value.clone(),
                    system: String::new(),
                })
            })
            .collect()
    }

    /// The record kinds they are known to have.
    pub fn kinds(&self) -> Vec<RecordKind> {
        self.record_kinds
            .iter()
            .filter_map(|k| RecordKind::from_str_name(k))
            .collect()
    }
}

fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let date = Date {
        year: y.parse().ok()?,
        month: m.parse().ok()?,
        day: d.parse().ok()?,
    };
    ((1..=12).contains(&date.month) && (1..=31).contains(&date.day)).then_some(date)
}
