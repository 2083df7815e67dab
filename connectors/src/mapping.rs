//! The declarative mapping from a legacy source to the common model.
//!
//! A mapping is TOML. It says how the source is asked (for SQL, the
//! statements the connector may run, with named parameters it binds; for
//! JSON over HTTP, the requests it may make; for a CSV folder, the files it
//! reads), and for each field of the common model where its value comes
//! from. Every connector kind shares this one document type and the field
//! concepts in it (columns, code lists, formats, defaults, `required`,
//! `max_bytes`); keys that only make sense for one kind are refused, by
//! name, for the others. `connectors/SPEC.md` is the reference, and
//! `connectors/examples/` holds a complete mapping for each kind.
//!
//! Field sources ([`FieldSpec`]) are written either as a bare column name
//! (for JSON, a JSON pointer such as `/birthDate`), `family_name =
//! "SURNAME"`, or as a table:
//!
//! ```toml
//! date_of_birth = { column = "DOB", format = "[day]/[month]/[year]" }
//! given_names = { columns = ["FORENAME_1", "FORENAME_2"] }
//! level = { column = "RISK_LVL", codes = "dash_risk", required = true }
//! use = { value = "NAME_USE_USUAL" }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The mapping of a SQL connector: the document type has kept this name
/// since it was the only kind.
pub type SqlMapping = Mapping;

/// A complete mapping for one legacy source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The classification of every person and record unless a mapping says
    /// otherwise, as a `Classification` name such as
    /// `CLASSIFICATION_OFFICIAL_SENSITIVE`.
    #[serde(default)]
    pub classification: Option<String>,
    /// Handling instructions attached to every record of the dataset.
    #[serde(default)]
    pub handling_instructions: Vec<String>,
    /// The longest text kept from one source value, in bytes; longer values
    /// are cut and reported. Defaults to 4096.
    #[serde(default)]
    pub max_text_bytes: Option<usize>,
    /// The most people one search returns, whatever the caller asks for.
    /// Defaults to 100.
    #[serde(default)]
    pub max_search_results: Option<usize>,
    /// The most records of one kind read for one person; the excess is
    /// reported. Defaults to 500.
    #[serde(default)]
    pub max_records: Option<usize>,
    /// The most rows one person-level list query (names, addresses,
    /// identifiers) reads. Defaults to 50.
    #[serde(default)]
    pub max_list_rows: Option<usize>,
    /// The UTC offset the source's zoneless times are in, as `+HH:MM`.
    /// Defaults to `+00:00`.
    #[serde(default)]
    pub source_utc_offset: Option<String>,
    /// Named date and time formats, each a `time` format description such as
    /// `[day]/[month]/[year]`, for fields to refer to by name.
    #[serde(default)]
    pub formats: BTreeMap<String, String>,
    /// Named code lists translating legacy codes to common-model values.
    #[serde(default)]
    pub code_lists: BTreeMap<String, CodeList>,
    /// JSON over HTTP only: how the source splits long lists into pages.
    /// Without it only the first page is read.
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// JSON over HTTP only: the most pages read for one list. Defaults to 10.
    #[serde(default)]
    pub max_pages: Option<usize>,
    /// SQL and JSON over HTTP: the change feed, read by polling from a
    /// high-water mark. Without it the dataset offers no change feed (a CSV
    /// folder makes its own by comparing exports).
    #[serde(default)]
    pub changes: Option<ChangesMapping>,
    /// How people are found and read.
    pub person: PersonMapping,
    /// How each kind of record linked to a person is read; kinds left out
    /// are not offered by the dataset.
    #[serde(default)]
    pub records: RecordsMapping,
}

/// A translation from legacy codes to common-model values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeList {
    /// Legacy code to common-model value. For enum fields the value is the
    /// enum value's name, such as `RISK_LEVEL_HIGH`.
    pub codes: BTreeMap<String, String>,
    /// The value for codes not listed. Without it an unknown code makes the
    /// field invalid: the row is skipped if the field is required, and the
    /// field dropped otherwise, both reported.
    #[serde(default)]
    pub default: Option<String>,
    /// Whether `h` and `H` are different codes. Defaults to false.
    #[serde(default)]
    pub case_sensitive: bool,
}

/// How the source's people are searched for and read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonMapping {
    /// The person's source id as a template over the row's columns, such as
    /// `{NOM_ID}`.
    pub source_id: String,
    /// Whether source ids are integers (bound as such to `:source_id`, and
    /// ids that are not integers refused) or text. Defaults to text.
    #[serde(default)]
    pub source_id_type: SourceIdType,
    /// SQL only, required there: the search query. It may use the search
    /// parameters (`:family_name`, `:given_name`, `:given_name_prefix`,
    /// `:date_of_birth`, `:date_of_birth_iso`, `:postcode`,
    /// `:postcode_compact`, `:nhs_number`, `:pnc_id`, `:upn`, `:local_id`),
    /// each NULL when the caller did not give it, and must use `:limit`.
    #[serde(default)]
    pub search_sql: Option<String>,
    /// SQL only, required there: the query reading one person by
    /// `:source_id`; must use `:limit`.
    #[serde(default)]
    pub get_sql: Option<String>,
    /// JSON over HTTP only, required there: the search request. Its query
    /// templates may use the search parameters as `{family_name}` and so
    /// on, and `items` points at the array of people in the answer.
    #[serde(default)]
    pub search: Option<HttpRequest>,
    /// JSON over HTTP only, required there: the request reading one person,
    /// whose path uses `{source_id}`.
    #[serde(default)]
    pub get: Option<HttpRequest>,
    /// CSV folder only, required there: the file of people, one per row,
    /// by its name in the folder.
    #[serde(default)]
    pub file: Option<String>,
    /// The person's names, usual name first.
    #[serde(default)]
    pub names: Vec<NameMapping>,
    /// The date of birth.
    #[serde(default)]
    pub date_of_birth: Option<FieldSpec>,
    /// Gender as the source records it.
    #[serde(default)]
    pub gender: Option<FieldSpec>,
    /// The person's addresses, current first.
    #[serde(default)]
    pub addresses: Vec<AddressMapping>,
    /// The person's identifiers.
    #[serde(default)]
    pub identifiers: Vec<IdentifierMapping>,
    /// When the source last changed the person.
    #[serde(default)]
    pub updated_at: Option<FieldSpec>,
    /// The person record's classification, overriding the dataset's.
    #[serde(default)]
    pub classification: Option<FieldSpec>,
}

/// Whether a dataset's source ids are integers or text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceIdType {
    /// Any text.
    #[default]
    Text,
    /// A 64-bit signed integer.
    Integer,
}

/// One name, or with `sql`, one name per row of a list query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameMapping {
    /// SQL only: a list query over `:source_id` and `:limit`; without it
    /// the name is read from the person's own row.
    #[serde(default)]
    pub sql: Option<String>,
    /// JSON only: a pointer to an array in the person's object; one name is
    /// read from each element, with the fields' pointers relative to it.
    #[serde(default)]
    pub each: Option<String>,
    /// Given names; several columns are joined with spaces.
    #[serde(default)]
    pub given_names: Option<FieldSpec>,
    /// Family name.
    #[serde(default)]
    pub family_name: Option<FieldSpec>,
    /// How the name is used, as a `NameUse` name.
    #[serde(default, rename = "use")]
    pub name_use: Option<FieldSpec>,
}

/// One address, or with `sql`, one address per row of a list query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressMapping {
    /// SQL only: a list query over `:source_id` and `:limit`; without it
    /// the address is read from the person's own row.
    #[serde(default)]
    pub sql: Option<String>,
    /// JSON only: a pointer to an array in the person's object; one address
    /// is read from each element.
    #[serde(default)]
    pub each: Option<String>,
    /// Street lines, most specific first; empty lines are left out.
    #[serde(default)]
    pub lines: Vec<FieldSpec>,
    /// Town or city.
    #[serde(default)]
    pub locality: Option<FieldSpec>,
    /// Postcode, normalised; an invalid postcode is dropped and reported.
    #[serde(default)]
    pub postcode: Option<FieldSpec>,
    /// First day at the address.
    #[serde(default)]
    pub from: Option<FieldSpec>,
    /// Last day at the address.
    #[serde(default)]
    pub to: Option<FieldSpec>,
}

/// One identifier, or with `sql`, one identifier per row of a list query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierMapping {
    /// SQL only: a list query over `:source_id` and `:limit`; without it
    /// the identifier is read from the person's own row.
    #[serde(default)]
    pub sql: Option<String>,
    /// JSON only: a pointer to an array in the person's object; one
    /// identifier is read from each element.
    #[serde(default)]
    pub each: Option<String>,
    /// The scheme, as an `IdentifierScheme` name such as
    /// `IDENTIFIER_SCHEME_NHS_NUMBER`; it decides how the value is
    /// normalised and checked.
    pub scheme: String,
    /// The identifier; invalid values are dropped and reported.
    pub value: FieldSpec,
    /// For local identifiers, the issuing system.
    #[serde(default)]
    pub system: Option<FieldSpec>,
}

/// The record kinds a dataset offers, each with how to read it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsMapping {
    /// Incidents the person was involved in.
    #[serde(default)]
    pub incident: Option<RecordMapping<IncidentFields>>,
    /// Warning markers on the person.
    #[serde(default)]
    pub warning_marker: Option<RecordMapping<WarningMarkerFields>>,
    /// Safeguarding concerns and referrals.
    #[serde(default)]
    pub safeguarding_concern: Option<RecordMapping<SafeguardingConcernFields>>,
    /// Risk assessments.
    #[serde(default)]
    pub risk_assessment: Option<RecordMapping<RiskAssessmentFields>>,
    /// Relationships to other people.
    #[serde(default)]
    pub relationship: Option<RecordMapping<RelationshipFields>>,
}

/// How one kind of record is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordMapping<F> {
    /// SQL only, required there: the query over `:source_id` (the
    /// person's) and `:limit`, one row per record.
    #[serde(default)]
    pub sql: Option<String>,
    /// JSON over HTTP only, required there: the request for the person's
    /// records, whose path or query uses `{source_id}`; `items` points at
    /// the array of records in the answer.
    #[serde(default)]
    pub request: Option<HttpRequest>,
    /// CSV folder only, required there: the file of records, one per row.
    #[serde(default)]
    pub file: Option<String>,
    /// CSV folder only, required there: a template giving the source id of
    /// the person a row belongs to, such as `{CHILD_ID}`; it must render to
    /// the same text as the person's `source_id`.
    #[serde(default)]
    pub person_source_id: Option<String>,
    /// The record's source id as a template over the row's columns. It must
    /// be unique across the dataset's record kinds, so it usually names the
    /// table, such as `DASH_RISK/{RISK_ID}`.
    pub source_id: String,
    /// When the source last changed the record.
    #[serde(default)]
    pub updated_at: Option<FieldSpec>,
    /// The record's classification, overriding the dataset's.
    #[serde(default)]
    pub classification: Option<FieldSpec>,
    /// Handling instructions for every record of this kind, after the
    /// dataset's.
    #[serde(default)]
    pub handling_instructions: Vec<String>,
    /// Handling instructions read from the row; empty values are left out.
    #[serde(default)]
    pub handling_from: Vec<FieldSpec>,
    /// Sensitivity markers read from the row; empty values are left out.
    #[serde(default)]
    pub sensitivity_markers: Vec<FieldSpec>,
    /// The kind's own fields.
    pub fields: F,
}

/// Sources of `Incident` fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentFields {
    /// `incident.reference`.
    #[serde(default)]
    pub reference: Option<FieldSpec>,
    /// `incident.category`.
    #[serde(default)]
    pub category: Option<FieldSpec>,
    /// `incident.summary`.
    #[serde(default)]
    pub summary: Option<FieldSpec>,
    /// `incident.occurred_at`, a timestamp.
    #[serde(default)]
    pub occurred_at: Option<FieldSpec>,
    /// `incident.location`.
    #[serde(default)]
    pub location: Option<FieldSpec>,
    /// `incident.person_role`.
    #[serde(default)]
    pub person_role: Option<FieldSpec>,
}

/// Sources of `WarningMarker` fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarningMarkerFields {
    /// `warning_marker.marker`.
    #[serde(default)]
    pub marker: Option<FieldSpec>,
    /// `warning_marker.description`.
    #[serde(default)]
    pub description: Option<FieldSpec>,
    /// `warning_marker.from`, a date.
    #[serde(default)]
    pub from: Option<FieldSpec>,
    /// `warning_marker.until`, a date.
    #[serde(default)]
    pub until: Option<FieldSpec>,
}

/// Sources of `SafeguardingConcern` fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeguardingConcernFields {
    /// `safeguarding_concern.category`.
    #[serde(default)]
    pub category: Option<FieldSpec>,
    /// `safeguarding_concern.summary`.
    #[serde(default)]
    pub summary: Option<FieldSpec>,
    /// `safeguarding_concern.raised_at`, a timestamp.
    #[serde(default)]
    pub raised_at: Option<FieldSpec>,
    /// `safeguarding_concern.status`.
    #[serde(default)]
    pub status: Option<FieldSpec>,
    /// `safeguarding_concern.lead`.
    #[serde(default)]
    pub lead: Option<FieldSpec>,
}

/// Sources of `RiskAssessment` fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskAssessmentFields {
    /// `risk_assessment.framework`.
    #[serde(default)]
    pub framework: Option<FieldSpec>,
    /// `risk_assessment.level`, a `RiskLevel` name.
    #[serde(default)]
    pub level: Option<FieldSpec>,
    /// `risk_assessment.assessed_at`, a timestamp.
    #[serde(default)]
    pub assessed_at: Option<FieldSpec>,
    /// `risk_assessment.summary`.
    #[serde(default)]
    pub summary: Option<FieldSpec>,
}

/// Sources of `Relationship` fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationshipFields {
    /// The related person's source id in this dataset; the connector turns
    /// it into a person id by prefixing the dataset id.
    #[serde(default)]
    pub related_person_id: Option<FieldSpec>,
    /// `relationship.relationship`.
    #[serde(default)]
    pub relationship: Option<FieldSpec>,
    /// `relationship.related_name`.
    #[serde(default)]
    pub related_name: Option<FieldSpec>,
}

/// A change feed read by polling: each row of `sql` (or item of
/// `request`'s answer) says that a person's data changed, with a cursor
/// that only ever grows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesMapping {
    /// SQL only, required there: the changes after `:after` (NULL for
    /// "from the start"), in cursor order, at most `:limit` rows, such as
    /// `SELECT CHANGE_SEQ, NOM_ID FROM CHANGE_LOG WHERE (:after IS NULL OR
    /// CHANGE_SEQ > :after) ORDER BY CHANGE_SEQ LIMIT :limit`.
    #[serde(default)]
    pub sql: Option<String>,
    /// SQL only, required there: one row holding the latest cursor value,
    /// for a feed that starts "from now", such as `SELECT MAX(CHANGE_SEQ)
    /// AS CHANGE_SEQ FROM CHANGE_LOG LIMIT :limit`.
    #[serde(default)]
    pub head_sql: Option<String>,
    /// JSON over HTTP only, required there: the request for the changes
    /// after `{after}` (left out for "from the start"), in cursor order, at
    /// most `{limit}`; `items` points at the array of changes.
    #[serde(default)]
    pub request: Option<HttpRequest>,
    /// JSON over HTTP only, required there: the request whose answer (or
    /// the object at its `item`) holds the latest cursor at `cursor`, for
    /// a feed that starts "from now".
    #[serde(default)]
    pub head: Option<HttpRequest>,
    /// The column (a JSON pointer for `json-http`) holding each change's
    /// cursor. Its values MUST strictly increase in the order changes
    /// happen (a sequence, not a time two changes can share), or a change
    /// can be missed.
    pub cursor: String,
    /// Whether cursors are integers (bound as such) or text. Defaults to
    /// text.
    #[serde(default)]
    pub cursor_type: SourceIdType,
    /// The changed person's source id, as a template over the row's
    /// columns (JSON pointers for `json-http`), such as `{NOM_ID}`.
    pub person_source_id: String,
}

/// One request of a JSON over HTTP source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// The path, relative to the connector's `base_url`, with placeholders
    /// such as `{source_id}`; each value fills one path segment and is
    /// percent-encoded, so it can never change the path's shape.
    pub path: String,
    /// Query parameters, each a template such as `"{family_name}"`; a
    /// parameter whose placeholders are all absent is left out.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// A JSON pointer to the array of people or records in the answer; for
    /// `person.get` leave it out, the answer being one person.
    #[serde(default)]
    pub items: Option<String>,
    /// A JSON pointer, within each element of `items` (or the whole answer
    /// for `person.get`), to the object fields are read from, such as
    /// `/resource`. Defaults to the element itself.
    #[serde(default)]
    pub item: Option<String>,
}

/// How a JSON over HTTP source pages long lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "style", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Pagination {
    /// Numbered pages: `?page=1`, `?page=2`, … until a page comes back
    /// short or empty.
    Page {
        /// The page number's query parameter.
        page_param: String,
        /// The page size's query parameter, if the source takes one.
        #[serde(default)]
        size_param: Option<String>,
        /// The page size asked for (and expected); defaults to 50.
        #[serde(default)]
        size: Option<usize>,
        /// The first page's number; defaults to 1.
        #[serde(default)]
        first: Option<u64>,
    },
    /// An opaque cursor from each answer sent back for the next page.
    Cursor {
        /// The cursor's query parameter.
        param: String,
        /// A JSON pointer to the next cursor in an answer; absent, null or
        /// empty ends the list.
        next: String,
    },
    /// A link to the next page in each answer.
    NextLink {
        /// A JSON pointer to the link: either a URL string, or an array of
        /// `{ "relation": "next", "url": … }` objects (`rel`/`href` are
        /// read too), as FHIR and many APIs do.
        next: String,
    },
}

/// Where one field's value comes from and how it is converted.
///
/// Exactly one of `column`, `columns`, `template` and `value` is set. Text
/// is trimmed and empty text counts as absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSpec {
    /// One column, matched without regard to case (PostgreSQL folds
    /// unquoted names to lower case, SQLite keeps them); for CSV, a header;
    /// for JSON, a JSON pointer (`pointer` is accepted as a synonym).
    pub column: Option<String>,
    /// Several columns, their non-empty values joined by `separator`.
    pub columns: Vec<String>,
    /// The text between values of `columns`; defaults to one space.
    pub separator: Option<String>,
    /// A template such as `{ADDR_1}, {TOWN}`; `{{` and `}}` stand for braces.
    pub template: Option<String>,
    /// A constant.
    pub value: Option<String>,
    /// The name of a code list to translate the value through.
    pub codes: Option<String>,
    /// For date and timestamp fields, the name of a format from `formats`,
    /// `rfc3339`, `iso8601`, or an inline `time` format description. Integer
    /// columns are read as their decimal digits, so `[year][month][day]`
    /// reads `20130514`. Without a format, ISO 8601 is expected.
    pub format: Option<String>,
    /// The value when the source's is absent (NULL or empty).
    pub default: Option<String>,
    /// Whether the row is skipped when the value is absent or invalid.
    /// Otherwise only the field is dropped. Both are reported.
    pub required: bool,
    /// The longest text kept, in bytes, overriding `max_text_bytes`.
    pub max_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpecTable {
    #[serde(default, alias = "pointer")]
    column: Option<String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    codes: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    max_bytes: Option<usize>,
}

impl FieldSpec {
    /// A field read from one column as it is.
    pub fn column(name: impl Into<String>) -> Self {
        Self {
            column: Some(name.into()),
            ..Self::default()
        }
    }
}

impl<'de> Deserialize<'de> for FieldSpec {
    // Written by hand rather than `#[serde(untagged)]` so a typo inside the
    // table form is reported by name instead of "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = FieldSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name or a table such as `{ column = \"DOB\" }`")
            }

            fn visit_str<E: de::Error>(self, column: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec::column(column))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                let t = FieldSpecTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FieldSpec {
                    column: t.column,
                    columns: t.columns,
                    separator: t.separator,
                    template: t.template,
                    value: t.value,
                    codes: t.codes,
                    format: t.format,
                    default: t.default,
                    required: t.required,
                    max_bytes: t.max_bytes,
                })
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

impl Mapping {
    /// Every sensitivity marker a record read through this mapping can carry, or `None` when any
    /// text could be one.
    ///
    /// A marker is a constant (`value`) or comes through a code list (its values and default),
    /// and a field's own `default` may stand in; a marker read from a column or template without
    /// a code list is the source's text, which nothing here bounds. Empty values are left out,
    /// as they are from records. `liaison policy check` uses this to find operator rules that
    /// name a marker no record can carry.
    pub fn sensitivity_markers(&self) -> Option<BTreeSet<String>> {
        let r = &self.records;
        let kinds = [
            r.incident.as_ref().map(|k| &k.sensitivity_markers),
            r.warning_marker.as_ref().map(|k| &k.sensitivity_markers),
            r.safeguarding_concern
                .as_ref()
                .map(|k| &k.sensitivity_markers),
            r.risk_assessment.as_ref().map(|k| &k.sensitivity_markers),
            r.relationship.as_ref().map(|k| &k.sensitivity_markers),
        ];
        let mut markers = BTreeSet::new();
        for spec in kinds.into_iter().flatten().flatten() {
            let from_source =
                spec.column.is_some() || !spec.columns.is_empty() || spec.template.is_some();
            match &spec.codes {
                Some(name) => {
                    let codes = self.code_lists.get(name)?;
                    markers.extend(codes.codes.values().cloned());
                    markers.extend(codes.default.clone());
                }
                None if from_source => return None,
                None => markers.extend(spec.value.clone()),
            }
            markers.extend(spec.default.clone());
        }
        markers.retain(|m| !m.is_empty());
        Some(markers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        f: FieldSpec,
    }

    #[test]
    fn field_specs_read_both_forms() {
        let short: Holder = toml::from_str(r#"f = "SURNAME""#).unwrap();
        assert_eq!(short.f, FieldSpec::column("SURNAME"));
        let long: Holder =
            toml::from_str(r#"f = { column = "DOB", format = "dmy", required = true }"#).unwrap();
        assert_eq!(long.f.column.as_deref(), Some("DOB"));
        assert_eq!(long.f.format.as_deref(), Some("dmy"));
        assert!(long.f.required);
    }

    #[test]
    fn field_spec_typos_are_named() {
        let err = toml::from_str::<Holder>(r#"f = { colum = "DOB" }"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `colum`"), "{err}");
        let err = toml::from_str::<Holder>("f = 3").unwrap_err();
        assert!(
            err.to_string().contains("a column name or a table"),
            "{err}"
        );
    }

    fn mapping(records: &str) -> Mapping {
        let text = format!(
            "[code_lists.protective]\ncodes = {{ WP = \"witness-protection\", N = \"\" }}\n\
             default = \"\"\n\n[person]\nsource_id = \"{{ID}}\"\n\n{records}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn markers_from_constants_and_code_lists_are_known() {
        let none = mapping("");
        assert_eq!(none.sensitivity_markers(), Some(BTreeSet::new()));
        let coded = mapping(
            "[records.incident]\nsource_id = \"{ID}\"\nsensitivity_markers = [\n  \
             { column = \"PROT\", codes = \"protective\" },\n  { value = \"cse\" },\n  \
             { column = \"X\", codes = \"protective\", default = \"unmarked\" },\n]\n\
             [records.incident.fields]\n",
        );
        let expected: BTreeSet<String> = ["cse", "unmarked", "witness-protection"]
            .map(str::to_owned)
            .into();
        assert_eq!(coded.sensitivity_markers(), Some(expected));
    }

    #[test]
    fn markers_read_from_the_source_are_unbounded() {
        let raw = mapping(
            "[records.warning_marker]\nsource_id = \"{ID}\"\n\
             sensitivity_markers = [\"FLAG\"]\n[records.warning_marker.fields]\n",
        );
        assert_eq!(raw.sensitivity_markers(), None);
        let unknown_list = mapping(
            "[records.incident]\nsource_id = \"{ID}\"\n\
             sensitivity_markers = [{ column = \"P\", codes = \"nowhere\" }]\n\
             [records.incident.fields]\n",
        );
        assert_eq!(unknown_list.sensitivity_markers(), None);
    }
}
