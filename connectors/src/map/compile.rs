//! Turns a [`Mapping`] into a checked plan, once, when the connector is
//! built: every problem in the mapping is found before the first query, and
//! answering a query never has to look a name up again.
//!
//! The fields of the common model are compiled the same way for every kind
//! of connector; a [`Dialect`] compiles what differs: how people are
//! searched and read, and where list entries and records come from (SQL
//! statements, HTTP requests, files).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use liaison_proto::v1::{Classification, IdentifierScheme, NameUse, RecordKind, RiskLevel};
use time::UtcOffset;
use time::format_description::OwnedFormatItem;

use crate::mapping::{
    AddressMapping, CodeList, FieldSpec, HttpRequest, IdentifierMapping, Mapping, NameMapping,
    PersonMapping, RecordMapping, SourceIdType,
};

pub(crate) const DEFAULT_MAX_TEXT_BYTES: usize = 4096;
const DEFAULT_MAX_SEARCH_RESULTS: usize = 100;
const DEFAULT_MAX_RECORDS: usize = 500;
const DEFAULT_MAX_LIST_ROWS: usize = 50;

/// What one kind of connector compiles for itself.
pub(crate) trait Dialect: Sized {
    /// The connector kind, as in `kind = "…"`.
    const KIND: &'static str;
    /// How people are searched for and read.
    type Person: std::fmt::Debug;
    /// Where a list entry with a source of its own reads its rows.
    type List: std::fmt::Debug;
    /// Where a kind of record is read.
    type Records: std::fmt::Debug;

    /// The key naming a list entry's own source in this dialect, and its
    /// value, if the entry has one.
    fn list_source(entry: ListKeys<'_>) -> Option<(&'static str, &str)>;

    /// Compiles how people are read; `columns` are what the person's own
    /// fields read.
    fn person(c: &mut Compiler<'_>, p: &PersonMapping, columns: Vec<String>) -> Self::Person;

    /// Compiles a list entry's own source, named `key` (such as
    /// `person.addresses[0].sql`); `columns` are what its fields read.
    fn list(c: &mut Compiler<'_>, key: &str, source: &str, columns: Vec<String>) -> Self::List;

    /// Compiles where one kind of record is read; `key` is such as
    /// `records.incident`.
    fn records(
        c: &mut Compiler<'_>,
        key: &str,
        source: RecordSource<'_>,
        columns: Vec<String>,
    ) -> Self::Records;
}

/// The keys a list entry may name its own source with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListKeys<'m> {
    pub(crate) sql: Option<&'m str>,
    pub(crate) each: Option<&'m str>,
}

/// The keys a kind of record may name its source with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordSource<'m> {
    pub(crate) sql: Option<&'m str>,
    pub(crate) request: Option<&'m HttpRequest>,
    pub(crate) file: Option<&'m str>,
    pub(crate) person_source_id: Option<&'m str>,
}

/// A compiled mapping.
#[derive(Debug)]
pub(crate) struct Plan<D: Dialect> {
    pub(crate) dataset: String,
    pub(crate) agency: String,
    pub(crate) system: String,
    pub(crate) classification: i32,
    pub(crate) handling: Vec<String>,
    pub(crate) max_search_results: usize,
    pub(crate) max_records: usize,
    pub(crate) max_list_rows: usize,
    pub(crate) offset: UtcOffset,
    pub(crate) person: PersonPlan<D>,
    /// In `RecordKind` order.
    pub(crate) records: Vec<RecordPlan<D>>,
}

#[derive(Debug)]
pub(crate) struct PersonPlan<D: Dialect> {
    /// How the dialect searches for and reads people.
    pub(crate) access: D::Person,
    pub(crate) source_id: Template,
    pub(crate) source_id_type: SourceIdType,
    pub(crate) names: Vec<ListEntry<NamePlan, D::List>>,
    pub(crate) addresses: Vec<ListEntry<AddressPlan, D::List>>,
    pub(crate) identifiers: Vec<ListEntry<IdentifierPlan, D::List>>,
    pub(crate) date_of_birth: Option<Field>,
    pub(crate) gender: Option<Field>,
    pub(crate) updated_at: Option<Field>,
    pub(crate) classification: Option<Field>,
}

/// A name, address or identifier, read from the person's row or, with a
/// source of its own, from each row of that.
#[derive(Debug)]
pub(crate) struct ListEntry<T, L> {
    pub(crate) from: Option<L>,
    pub(crate) plan: T,
}

#[derive(Debug)]
pub(crate) struct NamePlan {
    pub(crate) given_names: Option<Field>,
    pub(crate) family_name: Option<Field>,
    pub(crate) name_use: Option<Field>,
}

#[derive(Debug)]
pub(crate) struct AddressPlan {
    pub(crate) lines: Vec<Field>,
    pub(crate) locality: Option<Field>,
    pub(crate) postcode: Option<Field>,
    pub(crate) from: Option<Field>,
    pub(crate) to: Option<Field>,
}

#[derive(Debug)]
pub(crate) struct IdentifierPlan {
    pub(crate) scheme: IdentifierScheme,
    pub(crate) value: Field,
    pub(crate) system: Option<Field>,
}

#[derive(Debug)]
pub(crate) struct RecordPlan<D: Dialect> {
    pub(crate) kind: RecordKind,
    pub(crate) from: D::Records,
    /// The mapping's name for the kind, such as `records.incident`.
    pub(crate) key: String,
    pub(crate) source_id: Template,
    pub(crate) updated_at: Option<Field>,
    pub(crate) classification: Option<Field>,
    pub(crate) handling: Vec<String>,
    pub(crate) handling_from: Vec<Field>,
    pub(crate) markers: Vec<Field>,
    pub(crate) body: Body,
}

#[derive(Debug)]
pub(crate) enum Body {
    Incident {
        reference: Option<Field>,
        category: Option<Field>,
        summary: Option<Field>,
        occurred_at: Option<Field>,
        location: Option<Field>,
        person_role: Option<Field>,
    },
    WarningMarker {
        marker: Option<Field>,
        description: Option<Field>,
        from: Option<Field>,
        until: Option<Field>,
    },
    SafeguardingConcern {
        category: Option<Field>,
        summary: Option<Field>,
        raised_at: Option<Field>,
        status: Option<Field>,
        lead: Option<Field>,
    },
    RiskAssessment {
        framework: Option<Field>,
        level: Option<Field>,
        assessed_at: Option<Field>,
        summary: Option<Field>,
    },
    Relationship {
        related_person_id: Option<Field>,
        relationship: Option<Field>,
        related_name: Option<Field>,
    },
}

/// A compiled [`FieldSpec`].
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) source: Source,
    pub(crate) codes: Option<Arc<Codes>>,
    pub(crate) format: Option<Arc<Format>>,
    pub(crate) default: Option<String>,
    pub(crate) required: bool,
    pub(crate) max_bytes: usize,
    pub(crate) target: Target,
    /// How problems name the field: ``person.date_of_birth` (column `DOB`)`.
    pub(crate) label: String,
}

#[derive(Debug)]
pub(crate) enum Source {
    Column(String),
    Columns(Vec<String>, String),
    Template(Template),
    Value(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Column(String),
}

#[derive(Debug)]
pub(crate) struct Codes {
    pub(crate) name: String,
    map: HashMap<String, String>,
    default: Option<String>,
    case_sensitive: bool,
}

/// A date or time format.
#[derive(Debug)]
pub(crate) enum Format {
    Rfc3339,
    Iso8601,
    Description {
        items: OwnedFormatItem,
        text: String,
        shape: Shape,
    },
}

/// What a format description can produce, decided from its components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Date,
    DateTime,
    DateTimeOffset,
}

/// The type of common-model field a value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Text,
    Date,
    Timestamp,
    Enum(EnumKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnumKind {
    Classification,
    RiskLevel,
    NameUse,
}

impl EnumKind {
    pub(crate) fn parse(self, name: &str) -> Option<i32> {
        match self {
            Self::Classification => Classification::from_str_name(name).map(|v| v as i32),
            Self::RiskLevel => RiskLevel::from_str_name(name).map(|v| v as i32),
            Self::NameUse => NameUse::from_str_name(name).map(|v| v as i32),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Classification => "Classification",
            Self::RiskLevel => "RiskLevel",
            Self::NameUse => "NameUse",
        }
    }
}

impl Codes {
    /// The common-model value for `code`, or `None` when it is unknown and
    /// the list has no default.
    pub(crate) fn translate(&self, code: &str) -> Option<&str> {
        let found = if self.case_sensitive {
            self.map.get(code)
        } else {
            self.map.get(&code.to_uppercase())
        };
        found.or(self.default.as_ref()).map(String::as_str)
    }
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut column = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => column.push(ch),
                            None => return Err(format!("template `{text}` has an unclosed `{{`")),
                        }
                    }
                    let column = column.trim().to_owned();
                    if column.is_empty() {
                        return Err(format!("template `{text}` names an empty column"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Column(column));
                }
                '}' => return Err(format!("template `{text}` has an unopened `}}`")),
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    pub(crate) fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            Part::Text(_) => None,
        })
    }
}

impl Source {
    fn columns(&self) -> Vec<String> {
        match self {
            Self::Column(c) => vec![c.clone()],
            Self::Columns(cs, _) => cs.clone(),
            Self::Template(t) => t.columns().map(str::to_owned).collect(),
            Self::Value(_) => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Column(c) => format!("column `{c}`"),
            Self::Columns(cs, _) => format!("columns `{}`", cs.join("`, `")),
            Self::Template(_) => "template".to_owned(),
            Self::Value(_) => "constant".to_owned(),
        }
    }
}

/// Compiles and checks a mapping, listing every problem found.
pub(crate) fn compile<D: Dialect>(
    mapping: &Mapping,
    dataset: &str,
    agency: &str,
    system: &str,
) -> Result<Plan<D>, Vec<String>> {
    let mut c = Compiler::new(mapping);
    let plan = c.plan::<D>(mapping, dataset, agency, system);
    if c.problems.is_empty() {
        Ok(plan)
    } else {
        Err(c.problems)
    }
}

/// Compiles fields against a mapping's formats and code lists, collecting
/// problems.
#[derive(Debug)]
pub(crate) struct Compiler<'m> {
    problems: Vec<String>,
    formats: BTreeMap<&'m str, Arc<Format>>,
    code_lists: BTreeMap<&'m str, Arc<Codes>>,
    max_text_bytes: usize,
}

impl<'m> Compiler<'m> {
    pub(crate) fn new(mapping: &'m Mapping) -> Self {
        let mut c = Self {
            problems: Vec::new(),
            formats: BTreeMap::new(),
            code_lists: BTreeMap::new(),
            max_text_bytes: mapping.max_text_bytes.unwrap_or(DEFAULT_MAX_TEXT_BYTES),
        };
        for (name, text) in &mapping.formats {
            match description(text) {
                Ok(format) => {
                    c.formats.insert(name, Arc::new(format));
                }
                Err(why) => c.problem(&format!("formats.{name}"), why),
            }
        }
        for (name, list) in &mapping.code_lists {
            c.code_lists.insert(name, Arc::new(codes(name, list)));
        }
        c
    }

    /// A compiler for parts of a mapping outside the common plan (a
    /// `json-http` change feed's requests), whose problems the caller
    /// collects with [`Compiler::into_problems`].
    pub(crate) fn detached() -> Compiler<'static> {
        Compiler {
            problems: Vec::new(),
            formats: BTreeMap::new(),
            code_lists: BTreeMap::new(),
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
        }
    }

    /// The problems found.
    pub(crate) fn into_problems(self) -> Vec<String> {
        self.problems
    }

    pub(crate) fn problem(&mut self, key: &str, why: impl std::fmt::Display) {
        self.problems.push(format!("{key}: {why}"));
    }

    /// Refuses a key that only another kind of connector reads.
    fn only_for<D: Dialect>(&mut self, key: &str, present: bool, kind: &str) {
        if present && D::KIND != kind {
            self.problem(key, format!("is only read by `{kind}` connectors"));
        }
    }

    fn positive(&mut self, key: &str, value: Option<usize>, default: usize) -> usize {
        match value {
            Some(0) => {
                self.problem(key, "must be at least 1");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    fn enum_value(&mut self, key: &str, kind: EnumKind, name: &str) -> i32 {
        kind.parse(name).unwrap_or_else(|| {
            self.problem(key, format!("`{name}` is not a `{}` value", kind.name()));
            0
        })
    }

    fn plan<D: Dialect>(
        &mut self,
        m: &Mapping,
        dataset: &str,
        agency: &str,
        system: &str,
    ) -> Plan<D> {
        if m.max_text_bytes == Some(0) {
            self.problem("max_text_bytes", "must be at least 1");
        }
        let max_search_results = self.positive(
            "max_search_results",
            m.max_search_results,
            DEFAULT_MAX_SEARCH_RESULTS,
        );
        let max_records = self.positive("max_records", m.max_records, DEFAULT_MAX_RECORDS);
        let max_list_rows = self.positive("max_list_rows", m.max_list_rows, DEFAULT_MAX_LIST_ROWS);
        let classification = match &m.classification {
            Some(name) => self.enum_value("classification", EnumKind::Classification, name),
            None => Classification::Unspecified as i32,
        };
        let offset = match &m.source_utc_offset {
            None => UtcOffset::UTC,
            Some(text) => utc_offset(text).unwrap_or_else(|why| {
                self.problem("source_utc_offset", why);
                UtcOffset::UTC
            }),
        };
        for (key, list) in &m.code_lists {
            if list.codes.is_empty() {
                self.problem(&format!("code_lists.{key}"), "lists no codes");
            }
        }
        if m.handling_instructions.iter().any(|h| h.trim().is_empty()) {
            self.problem("handling_instructions", "holds an empty instruction");
        }
        self.only_for::<D>("pagination", m.pagination.is_some(), "json-http");
        if m.changes.is_some() && D::KIND == "csv-folder" {
            self.problem(
                "changes",
                "is not read by `csv-folder` connectors, which compare exports instead",
            );
        }
        self.only_for::<D>("max_pages", m.max_pages.is_some(), "json-http");
        if m.max_pages == Some(0) {
            self.problem("max_pages", "must be at least 1");
        }
        let person = self.person::<D>(m);
        let records = self.records::<D>(m);
        Plan {
            dataset: dataset.to_owned(),
            agency: agency.to_owned(),
            system: system.to_owned(),
            classification,
            handling: m.handling_instructions.clone(),
            max_search_results,
            max_records,
            max_list_rows,
            offset,
            person,
            records,
        }
    }

    /// Parses a template, reporting only its syntax; `names` gets the
    /// placeholders it uses.
    pub(crate) fn template_of(
        &mut self,
        key: &str,
        text: &str,
        names: &mut Vec<String>,
    ) -> Template {
        match Template::parse(text) {
            Ok(t) => {
                names.extend(t.columns().map(str::to_owned));
                t
            }
            Err(why) => {
                self.problem(key, why);
                Template { parts: Vec::new() }
            }
        }
    }

    pub(crate) fn template(&mut self, key: &str, text: &str, cols: &mut Vec<String>) -> Template {
        match Template::parse(text) {
            Ok(t) => {
                if t.columns().next().is_none() {
                    self.problem(key, "names no column, so every row would get the same id");
                }
                cols.extend(t.columns().map(str::to_owned));
                t
            }
            Err(why) => {
                self.problem(key, why);
                Template { parts: Vec::new() }
            }
        }
    }

    fn person<D: Dialect>(&mut self, m: &Mapping) -> PersonPlan<D> {
        let p = &m.person;
        self.only_for::<D>("person.search_sql", p.search_sql.is_some(), "sql");
        self.only_for::<D>("person.get_sql", p.get_sql.is_some(), "sql");
        self.only_for::<D>("person.search", p.search.is_some(), "json-http");
        self.only_for::<D>("person.get", p.get.is_some(), "json-http");
        self.only_for::<D>("person.file", p.file.is_some(), "csv-folder");
        let mut cols = Vec::new();
        let source_id = self.template("person.source_id", &p.source_id, &mut cols);
        let date_of_birth = self.opt_field(
            p.date_of_birth.as_ref(),
            "person.date_of_birth",
            Target::Date,
            &mut cols,
        );
        let gender = self.opt_field(p.gender.as_ref(), "person.gender", Target::Text, &mut cols);
        let updated_at = self.opt_field(
            p.updated_at.as_ref(),
            "person.updated_at",
            Target::Timestamp,
            &mut cols,
        );
        let classification = self.opt_field(
            p.classification.as_ref(),
            "person.classification",
            Target::Enum(EnumKind::Classification),
            &mut cols,
        );
        if p.names.is_empty() {
            self.problem(
                "person.names",
                "maps no name, so no one could be recognised",
            );
        }
        let names = p
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                self.list_entry::<D, _>(
                    &format!("person.names[{i}]"),
                    ListKeys {
                        sql: n.sql.as_deref(),
                        each: n.each.as_deref(),
                    },
                    &mut cols,
                    |c, key, cols| c.name(key, n, cols),
                )
            })
            .collect();
        let addresses = p
            .addresses
            .iter()
            .enumerate()
            .map(|(i, a)| {
                self.list_entry::<D, _>(
                    &format!("person.addresses[{i}]"),
                    ListKeys {
                        sql: a.sql.as_deref(),
                        each: a.each.as_deref(),
                    },
                    &mut cols,
                    |c, key, cols| c.address(key, a, cols),
                )
            })
            .collect();
        let mut identifiers = Vec::new();
        for (i, idm) in p.identifiers.iter().enumerate() {
            let key = format!("person.identifiers[{i}]");
            let keys = ListKeys {
                sql: idm.sql.as_deref(),
                each: idm.each.as_deref(),
            };
            let entry = self.list_entry::<D, _>(&key, keys, &mut cols, |c, key, cols| {
                c.identifier(key, idm, cols)
            });
            if let Some(plan) = entry.plan {
                identifiers.push(ListEntry {
                    from: entry.from,
                    plan,
                });
            }
        }
        let access = D::person(self, p, cols);
        PersonPlan {
            access,
            source_id,
            source_id_type: p.source_id_type,
            names,
            addresses,
            identifiers,
            date_of_birth,
            gender,
            updated_at,
            classification,
        }
    }

    /// Compiles one list entry; its fields' columns go to its own source
    /// if it has one, or to the person row's columns if not.
    fn list_entry<D: Dialect, T>(
        &mut self,
        key: &str,
        keys: ListKeys<'_>,
        person_cols: &mut Vec<String>,
        build: impl FnOnce(&mut Self, &str, &mut Vec<String>) -> T,
    ) -> ListEntry<T, D::List> {
        self.only_for::<D>(&format!("{key}.sql"), keys.sql.is_some(), "sql");
        self.only_for::<D>(&format!("{key}.each"), keys.each.is_some(), "json-http");
        match D::list_source(keys) {
            Some((name, source)) => {
                let mut cols = Vec::new();
                let plan = build(self, key, &mut cols);
                let from = D::list(self, &format!("{key}.{name}"), source, cols);
                ListEntry {
                    from: Some(from),
                    plan,
                }
            }
            None => ListEntry {
                from: None,
                plan: build(self, key, person_cols),
            },
        }
    }

    fn name(&mut self, key: &str, n: &NameMapping, cols: &mut Vec<String>) -> NamePlan {
        if n.given_names.is_none() && n.family_name.is_none() {
            self.problem(key, "maps neither `given_names` nor `family_name`");
        }
        NamePlan {
            given_names: self.opt_field(
                n.given_names.as_ref(),
                &format!("{key}.given_names"),
                Target::Text,
                cols,
            ),
            family_name: self.opt_field(
                n.family_name.as_ref(),
                &format!("{key}.family_name"),
                Target::Text,
                cols,
            ),
            name_use: self.opt_field(
                n.name_use.as_ref(),
                &format!("{key}.use"),
                Target::Enum(EnumKind::NameUse),
                cols,
            ),
        }
    }

    fn address(&mut self, key: &str, a: &AddressMapping, cols: &mut Vec<String>) -> AddressPlan {
        let lines = a
            .lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| self.field(l, &format!("{key}.lines[{i}]"), Target::Text, cols))
            .collect();
        AddressPlan {
            lines,
            locality: self.opt_field(
                a.locality.as_ref(),
                &format!("{key}.locality"),
                Target::Text,
                cols,
            ),
            postcode: self.opt_field(
                a.postcode.as_ref(),
                &format!("{key}.postcode"),
                Target::Text,
                cols,
            ),
            from: self.opt_field(a.from.as_ref(), &format!("{key}.from"), Target::Date, cols),
            to: self.opt_field(a.to.as_ref(), &format!("{key}.to"), Target::Date, cols),
        }
    }

    fn identifier(
        &mut self,
        key: &str,
        idm: &IdentifierMapping,
        cols: &mut Vec<String>,
    ) -> Option<IdentifierPlan> {
        let scheme = match IdentifierScheme::from_str_name(&idm.scheme) {
            Some(IdentifierScheme::Unspecified) | None => {
                self.problem(
                    &format!("{key}.scheme"),
                    format!(
                        "`{}` is not an `IdentifierScheme` value other than unspecified",
                        idm.scheme
                    ),
                );
                None
            }
            Some(scheme) => Some(scheme),
        };
        let value = self.field(&idm.value, &format!("{key}.value"), Target::Text, cols);
        let system = self.opt_field(
            idm.system.as_ref(),
            &format!("{key}.system"),
            Target::Text,
            cols,
        );
        Some(IdentifierPlan {
            scheme: scheme?,
            value: value?,
            system,
        })
    }

    fn records<D: Dialect>(&mut self, m: &Mapping) -> Vec<RecordPlan<D>> {
        let r = &m.records;
        let mut plans = Vec::new();
        if let Some(rm) = &r.incident {
            let plan =
                self.record::<D, _>(RecordKind::Incident, "records.incident", rm, |c, cols| {
                    let f = &rm.fields;
                    let k = "incident";
                    Body::Incident {
                        reference: c.opt_field(
                            f.reference.as_ref(),
                            &format!("{k}.reference"),
                            Target::Text,
                            cols,
                        ),
                        category: c.opt_field(
                            f.category.as_ref(),
                            &format!("{k}.category"),
                            Target::Text,
                            cols,
                        ),
                        summary: c.opt_field(
                            f.summary.as_ref(),
                            &format!("{k}.summary"),
                            Target::Text,
                            cols,
                        ),
                        occurred_at: c.opt_field(
                            f.occurred_at.as_ref(),
                            &format!("{k}.occurred_at"),
                            Target::Timestamp,
                            cols,
                        ),
                        location: c.opt_field(
                            f.location.as_ref(),
                            &format!("{k}.location"),
                            Target::Text,
                            cols,
                        ),
                        person_role: c.opt_field(
                            f.person_role.as_ref(),
                            &format!("{k}.person_role"),
                            Target::Text,
                            cols,
                        ),
                    }
                });
            plans.push(plan);
        }
        if let Some(rm) = &r.warning_marker {
            let plan = self.record::<D, _>(
                RecordKind::WarningMarker,
                "records.warning_marker",
                rm,
                |c, cols| {
                    let f = &rm.fields;
                    let k = "warning_marker";
                    Body::WarningMarker {
                        marker: c.opt_field(
                            f.marker.as_ref(),
                            &format!("{k}.marker"),
                            Target::Text,
                            cols,
                        ),
                        description: c.opt_field(
                            f.description.as_ref(),
                            &format!("{k}.description"),
                            Target::Text,
                            cols,
                        ),
                        from: c.opt_field(
                            f.from.as_ref(),
                            &format!("{k}.from"),
                            Target::Date,
                            cols,
                        ),
                        until: c.opt_field(
                            f.until.as_ref(),
                            &format!("{k}.until"),
                            Target::Date,
                            cols,
                        ),
                    }
                },
            );
            plans.push(plan);
        }
        if let Some(rm) = &r.safeguarding_concern {
            let plan = self.record::<D, _>(
                RecordKind::SafeguardingConcern,
                "records.safeguarding_concern",
                rm,
                |c, cols| {
                    let f = &rm.fields;
                    let k = "safeguarding_concern";
                    Body::SafeguardingConcern {
                        category: c.opt_field(
                            f.category.as_ref(),
                            &format!("{k}.category"),
                            Target::Text,
                            cols,
                        ),
                        summary: c.opt_field(
                            f.summary.as_ref(),
                            &format!("{k}.summary"),
                            Target::Text,
                            cols,
                        ),
                        raised_at: c.opt_field(
                            f.raised_at.as_ref(),
                            &format!("{k}.raised_at"),
                            Target::Timestamp,
                            cols,
                        ),
                        status: c.opt_field(
                            f.status.as_ref(),
                            &format!("{k}.status"),
                            Target::Text,
                            cols,
                        ),
                        lead: c.opt_field(
                            f.lead.as_ref(),
                            &format!("{k}.lead"),
                            Target::Text,
                            cols,
                        ),
                    }
                },
            );
            plans.push(plan);
        }
        if let Some(rm) = &r.risk_assessment {
            let plan = self.record::<D, _>(
                RecordKind::RiskAssessment,
                "records.risk_assessment",
                rm,
                |c, cols| {
                    let f = &rm.fields;
                    let k = "risk_assessment";
                    Body::RiskAssessment {
                        framework: c.opt_field(
                            f.framework.as_ref(),
                            &format!("{k}.framework"),
                            Target::Text,
                            cols,
                        ),
                        level: c.opt_field(
                            f.level.as_ref(),
                            &format!("{k}.level"),
                            Target::Enum(EnumKind::RiskLevel),
                            cols,
                        ),
                        assessed_at: c.opt_field(
                            f.assessed_at.as_ref(),
                            &format!("{k}.assessed_at"),
                            Target::Timestamp,
                            cols,
                        ),
                        summary: c.opt_field(
                            f.summary.as_ref(),
                            &format!("{k}.summary"),
                            Target::Text,
                            cols,
                        ),
                    }
                },
            );
            plans.push(plan);
        }
        if let Some(rm) = &r.relationship {
            let plan = self.record::<D, _>(
                RecordKind::Relationship,
                "records.relationship",
                rm,
                |c, cols| {
                    let f = &rm.fields;
                    let k = "relationship";
                    Body::Relationship {
                        related_person_id: c.opt_field(
                            f.related_person_id.as_ref(),
                            &format!("{k}.related_person_id"),
                            Target::Text,
                            cols,
                        ),
                        relationship: c.opt_field(
                            f.relationship.as_ref(),
                            &format!("{k}.relationship"),
                            Target::Text,
                            cols,
                        ),
                        related_name: c.opt_field(
                            f.related_name.as_ref(),
                            &format!("{k}.related_name"),
                            Target::Text,
                            cols,
                        ),
                    }
                },
            );
            plans.push(plan);
        }
        plans
    }

    fn record<D: Dialect, F>(
        &mut self,
        kind: RecordKind,
        key: &str,
        rm: &RecordMapping<F>,
        body: impl FnOnce(&mut Self, &mut Vec<String>) -> Body,
    ) -> RecordPlan<D> {
        self.only_for::<D>(&format!("{key}.sql"), rm.sql.is_some(), "sql");
        self.only_for::<D>(&format!("{key}.request"), rm.request.is_some(), "json-http");
        self.only_for::<D>(&format!("{key}.file"), rm.file.is_some(), "csv-folder");
        self.only_for::<D>(
            &format!("{key}.person_source_id"),
            rm.person_source_id.is_some(),
            "csv-folder",
        );
        let mut cols = Vec::new();
        let source_id = self.template(&format!("{key}.source_id"), &rm.source_id, &mut cols);
        let prefix = key.trim_start_matches("records.");
        let updated_at = self.opt_field(
            rm.updated_at.as_ref(),
            &format!("{prefix}.updated_at"),
            Target::Timestamp,
            &mut cols,
        );
        let classification = self.opt_field(
            rm.classification.as_ref(),
            &format!("{prefix}.classification"),
            Target::Enum(EnumKind::Classification),
            &mut cols,
        );
        if rm.handling_instructions.iter().any(|h| h.trim().is_empty()) {
            self.problem(
                &format!("{key}.handling_instructions"),
                "holds an empty instruction",
            );
        }
        let handling_from = rm
            .handling_from
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                self.field(
                    f,
                    &format!("{prefix}.handling_from[{i}]"),
                    Target::Text,
                    &mut cols,
                )
            })
            .collect();
        let markers = rm
            .sensitivity_markers
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                self.field(
                    f,
                    &format!("{prefix}.sensitivity_markers[{i}]"),
                    Target::Text,
                    &mut cols,
                )
            })
            .collect();
        let body = body(self, &mut cols);
        let source = RecordSource {
            sql: rm.sql.as_deref(),
            request: rm.request.as_ref(),
            file: rm.file.as_deref(),
            person_source_id: rm.person_source_id.as_deref(),
        };
        let from = D::records(self, key, source, cols);
        RecordPlan {
            kind,
            from,
            key: key.to_owned(),
            source_id,
            updated_at,
            classification,
            handling: rm.handling_instructions.clone(),
            handling_from,
            markers,
            body,
        }
    }

    pub(crate) fn opt_field(
        &mut self,
        spec: Option<&FieldSpec>,
        path: &str,
        target: Target,
        cols: &mut Vec<String>,
    ) -> Option<Field> {
        self.field(spec?, path, target, cols)
    }

    pub(crate) fn field(
        &mut self,
        spec: &FieldSpec,
        path: &str,
        target: Target,
        cols: &mut Vec<String>,
    ) -> Option<Field> {
        let set = [
            spec.column.is_some(),
            !spec.columns.is_empty(),
            spec.template.is_some(),
            spec.value.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            self.problem(
                path,
                "needs exactly one of `column`, `columns`, `template` and `value`",
            );
            return None;
        }
        let source = if let Some(c) = &spec.column {
            Source::Column(c.clone())
        } else if !spec.columns.is_empty() {
            Source::Columns(
                spec.columns.clone(),
                spec.separator.clone().unwrap_or_else(|| " ".into()),
            )
        } else if let Some(t) = &spec.template {
            match Template::parse(t) {
                Ok(t) => Source::Template(t),
                Err(why) => {
                    self.problem(path, why);
                    return None;
                }
            }
        } else {
            Source::Value(spec.value.clone().unwrap_or_default())
        };
        if spec.separator.is_some() && spec.columns.is_empty() {
            self.problem(path, "has a `separator` but no `columns`");
        }
        cols.extend(source.columns());

        let codes = match &spec.codes {
            None => None,
            Some(name) => match self.code_lists.get(name.as_str()) {
                Some(codes) => Some(codes.clone()),
                None => {
                    self.problem(
                        path,
                        format!("names code list `{name}`, which is not defined"),
                    );
                    None
                }
            },
        };
        let format = match (&spec.format, target) {
            (None, _) => None,
            (Some(name), Target::Date | Target::Timestamp) => self.format(path, name),
            (Some(_), _) => {
                self.problem(path, "has a `format` but is not a date or timestamp");
                None
            }
        };
        if matches!(target, Target::Date | Target::Timestamp) && codes.is_some() {
            self.problem(path, "translates a date through a code list");
        }
        if let Target::Enum(kind) = target {
            let mut outputs: Vec<&str> = Vec::new();
            if let Some(codes) = &codes {
                outputs.extend(codes.map.values().map(String::as_str));
                outputs.extend(codes.default.as_deref());
            } else if let Source::Value(v) = &source {
                outputs.push(v);
            }
            outputs.extend(spec.default.as_deref());
            for output in outputs {
                if kind.parse(output).is_none() {
                    self.problem(path, format!("`{output}` is not a `{}` value", kind.name()));
                }
            }
        }
        if spec.max_bytes == Some(0) {
            self.problem(path, "`max_bytes` must be at least 1");
        }
        let label = format!("`{path}` ({})", source.describe());
        Some(Field {
            source,
            codes,
            format,
            default: spec.default.clone(),
            required: spec.required,
            max_bytes: spec.max_bytes.unwrap_or(self.max_text_bytes).max(1),
            target,
            label,
        })
    }

    fn format(&mut self, path: &str, name: &str) -> Option<Arc<Format>> {
        if let Some(format) = self.formats.get(name) {
            return Some(format.clone());
        }
        match name {
            "rfc3339" => Some(Arc::new(Format::Rfc3339)),
            "iso8601" => Some(Arc::new(Format::Iso8601)),
            text if text.contains('[') => match description(text) {
                Ok(format) => Some(Arc::new(format)),
                Err(why) => {
                    self.problem(path, why);
                    None
                }
            },
            _ => {
                self.problem(
                    path,
                    format!("names format `{name}`, which is neither defined in `formats` nor `rfc3339` or `iso8601`"),
                );
                None
            }
        }
    }
}

fn codes(name: &str, list: &CodeList) -> Codes {
    let key = |k: &str| {
        if list.case_sensitive {
            k.trim().to_owned()
        } else {
            k.trim().to_uppercase()
        }
    };
    Codes {
        name: name.to_owned(),
        map: list
            .codes
            .iter()
            .map(|(k, v)| (key(k), v.clone()))
            .collect(),
        default: list.default.clone(),
        case_sensitive: list.case_sensitive,
    }
}

fn description(text: &str) -> Result<Format, String> {
    let items = time::format_description::parse_owned::<2>(text)
        .map_err(|e| format!("`{text}` is not a format description: {e}"))?;
    let shape = shape(&items)
        .ok_or_else(|| format!("`{text}` cannot both write and read back a whole date or time"))?;
    Ok(Format::Description {
        items,
        text: text.to_owned(),
        shape,
    })
}

/// Decides what a format can produce, so parse errors are reported against
/// the right type rather than the last one tried: a format that can write a
/// date and read it back is a date format, and so on for times.
fn shape(items: &OwnedFormatItem) -> Option<Shape> {
    let sample = time::macros::datetime!(2013-05-14 13:45:30 +01:00);
    // Formats may be coarser than the sample (no seconds, say), so compare
    // what they write rather than the values read back.
    let round_trips = |shape: Shape| match shape {
        Shape::Date => sample.date().format(items).is_ok_and(|text| {
            time::Date::parse(&text, items).is_ok_and(|d| d.format(items).ok() == Some(text))
        }),
        Shape::DateTime => {
            let naive = time::PrimitiveDateTime::new(sample.date(), sample.time());
            naive.format(items).is_ok_and(|text| {
                time::PrimitiveDateTime::parse(&text, items)
                    .is_ok_and(|d| d.format(items).ok() == Some(text))
            })
        }
        Shape::DateTimeOffset => sample.format(items).is_ok_and(|text| {
            time::OffsetDateTime::parse(&text, items)
                .is_ok_and(|d| d.format(items).ok() == Some(text))
        }),
    };
    [Shape::Date, Shape::DateTime, Shape::DateTimeOffset]
        .into_iter()
        .find(|shape| round_trips(*shape))
}

fn utc_offset(text: &str) -> Result<UtcOffset, String> {
    let format = time::macros::format_description!(
        version = 2,
        "[offset_hour sign:mandatory]:[offset_minute]"
    );
    UtcOffset::parse(text, &format)
        .map_err(|_| format!("`{text}` is not an offset such as `+01:00`"))
}

/// Compiles one field against a mapping's formats and code lists.
#[cfg(test)]
pub(crate) fn test_field(
    mapping: &Mapping,
    spec: &FieldSpec,
    target: Target,
) -> Result<Field, Vec<String>> {
    let mut c = Compiler::new(mapping);
    let field = c.field(spec, "test.field", target, &mut Vec::new());
    match field {
        Some(field) if c.problems.is_empty() => Ok(field),
        _ => Err(c.problems),
    }
}

#[cfg(test)]
mod tests;
