//! Reading a complete export into an in-memory index: every row mapped
//! once, when the export is read, so a search or fetch is a lookup.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use liaison_proto::v1::{Person, Record, RecordKind};

use prost::Message;
use sha2::{Digest, Sha256};

use super::dialect::{Csv, CsvFile};
use super::feed::{Sha, snapshot_digest};
use crate::map::compile::{Plan, RecordPlan};
use crate::map::reader::RowReader;
use crate::map::row::{Cell, ResultSet};
use crate::map::search::{SearchTerms, calendar_date};
use crate::{ConnectorError, RowProblem};

/// How the folder is read.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) folder: PathBuf,
    pub(crate) settle: Duration,
    pub(crate) require_done_marker: bool,
    pub(crate) max_rows: usize,
    pub(crate) max_file_bytes: u64,
    pub(crate) delimiter: u8,
}

/// The index in service, if any, and how many have been read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) index: Option<Arc<Index>>,
    pub(crate) generation: u64,
}

/// What a look at the folder found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing changed since the index in service was read.
    Unchanged,
    /// A changed file is not complete yet; look again after `retry_in`.
    NotReady { retry_in: Duration },
    /// A new export was read.
    Loaded(Box<Index>),
}

/// What an index was read from, and what it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Counts the exports read since the connector started, from 1.
    pub generation: u64,
    /// Data rows read per file, by file name.
    pub rows: BTreeMap<String, usize>,
    /// People indexed.
    pub people: usize,
    /// Records indexed.
    pub records: usize,
    /// Rows skipped and values dropped or cut, in file and line order.
    pub problems: Vec<LoadProblem>,
}

/// A row of an export that was skipped, or kept without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    /// The file's name in the folder.
    pub file: String,
    /// The line the row starts on (1 is the header); 0 for the whole file.
    pub line: u64,
    /// The row's source id, or empty when it has none.
    pub source_id: String,
    /// What was wrong and what was done about it; never quotes personal
    /// data.
    pub problem: String,
}

/// A read export.
#[derive(Debug)]
pub(crate) struct Index {
    pub(crate) report: LoadReport,
    versions: BTreeMap<String, Option<Version>>,
    people: Vec<Indexed<Person>>,
    by_id: HashMap<String, usize>,
    by_family: HashMap<String, Vec<usize>>,
    by_given: BTreeMap<String, Vec<usize>>,
    by_dob: HashMap<time::Date, Vec<usize>>,
    by_postcode: HashMap<String, Vec<usize>>,
    by_identifier: HashMap<(i32, String), Vec<usize>>,
    /// By person source id, then kind in `RecordKind` order.
    records: HashMap<String, BTreeMap<i32, Vec<Indexed<Record>>>>,
    /// Each person's content digest, by source id, for the change feed.
    pub(crate) digests: BTreeMap<String, Sha>,
    /// The digest of every person's, in source id order: two exports that
    /// map to the same people have the same digest.
    pub(crate) digest: Sha,
}

/// A mapped person or record with the problems its row had.
#[derive(Debug, Clone)]
pub(crate) struct Indexed<T> {
    pub(crate) value: T,
    pub(crate) problems: Vec<RowProblem>,
}

/// Size and modification time: a file whose either changes is another
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    len: u64,
    modified: SystemTime,
}

/// One file's rows, read before mapping.
struct Rows {
    set: ResultSet,
    lines: Vec<u64>,
}

impl Index {
    /// The person with this source id.
    pub(crate) fn person(&self, source_id: &str) -> Option<&Indexed<Person>> {
        self.by_id.get(source_id).and_then(|i| self.people.get(*i))
    }

    /// A person's records, kind by kind.
    pub(crate) fn records(
        &self,
        source_id: &str,
    ) -> impl Iterator<Item = (RecordKind, &[Indexed<Record>])> {
        self.records
            .get(source_id)
            .into_iter()
            .flat_map(|kinds| kinds.iter())
            .filter_map(|(kind, records)| {
                Some((RecordKind::try_from(*kind).ok()?, records.as_slice()))
            })
    }

    /// The people who may match `terms`, in file order: those under the
    /// most selective key the query gives, so a search reads a key's
    /// people, never the whole export.
    pub(crate) fn candidates(&self, terms: &SearchTerms) -> Vec<&Indexed<Person>> {
        let mut keyed: Vec<&[usize]> = Vec::new();
        let none: &[usize] = &[];
        for (scheme, value, _) in &terms.identifiers {
            keyed.push(
                self.by_identifier
                    .get(&(*scheme as i32, value.clone()))
                    .map_or(none, Vec::as_slice),
            );
        }
        if let Some(dob) = terms.date_of_birth {
            keyed.push(self.by_dob.get(&dob).map_or(none, Vec::as_slice));
        }
        if let Some(postcode) = &terms.postcode {
            keyed.push(self.by_postcode.get(postcode).map_or(none, Vec::as_slice));
        }
        if let Some(family) = &terms.family_name {
            keyed.push(
                self.by_family
                    .get(&family.to_lowercase())
                    .map_or(none, Vec::as_slice),
            );
        }
        let mut chosen: Vec<usize> = match keyed.into_iter().min_by_key(|k| k.len()) {
            Some(smallest) => smallest.to_vec(),
            None => {
                // Only a given name: the people whose given names start
                // with it, found by range in sorted order.
                let prefix = terms
                    .given_name
                    .as_deref()
                    .unwrap_or_default()
                    .to_lowercase();
                self.by_given
                    .range(prefix.clone()..)
                    .take_while(|(name, _)| name.starts_with(&prefix))
                    .flat_map(|(_, people)| people.iter().copied())
                    .collect()
            }
        };
        chosen.sort_unstable();
        chosen.dedup();
        chosen.iter().filter_map(|i| self.people.get(*i)).collect()
    }
}

/// Looks at the folder and reads the export if it changed and is complete.
pub(crate) fn refresh(
    settings: &Settings,
    plan: &Plan<Csv>,
    current: Option<&Index>,
    generation: u64,
) -> Result<Outcome, ConnectorError> {
    let dataset = &plan.dataset;
    let unreachable = |reason: String| ConnectorError::Unreachable {
        dataset: dataset.clone(),
        reason,
    };
    let files: Vec<&CsvFile> = std::iter::once(&plan.person.access)
        .chain(plan.records.iter().map(|r| &r.from.file))
        .collect();
    let mut versions = BTreeMap::new();
    let now = SystemTime::now();
    let mut wait = Duration::ZERO;
    for file in &files {
        let path = settings.folder.join(&file.name);
        let version = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Some(Version {
                len: meta.len(),
                modified: meta.modified().unwrap_or(now),
            }),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(unreachable(format!("cannot read `{}`: {e}", file.name)));
            }
        };
        if let Some(v) = version {
            let age = now.duration_since(v.modified).unwrap_or_default();
            if age < settings.settle {
                wait = wait.max(settings.settle - age);
            }
            if settings.require_done_marker && !marked_done(&path, v.modified) {
                wait = wait.max(settings.settle.max(Duration::from_millis(100)));
            }
            if v.len > settings.max_file_bytes {
                return Err(unreachable(format!(
                    "`{}` is larger than {} bytes and is not read",
                    file.name, settings.max_file_bytes
                )));
            }
        }
        versions.insert(file.name.clone(), version);
    }
    if current.is_some_and(|index| index.versions == versions) {
        return Ok(Outcome::Unchanged);
    }
    if versions
        .get(&plan.person.access.name)
        .is_none_or(Option::is_none)
    {
        return match current {
            // Between an exporter removing the old file and renaming the new
            // one into place; the index in service stays.
            Some(_) => Ok(Outcome::Unchanged),
            None => Err(unreachable(format!(
                "`{}` is not in the folder",
                plan.person.access.name
            ))),
        };
    }
    if wait > Duration::ZERO {
        return Ok(Outcome::NotReady { retry_in: wait });
    }
    let index = read(settings, plan, versions, generation + 1)?;
    Ok(Outcome::Loaded(Box::new(index)))
}

/// Whether `<path>.done` exists and was written no earlier than the file.
fn marked_done(path: &Path, modified: SystemTime) -> bool {
    let mut marker = path.as_os_str().to_owned();
    marker.push(".done");
    std::fs::metadata(marker)
        .and_then(|m| m.modified())
        .is_ok_and(|m| m >= modified)
}

fn read(
    settings: &Settings,
    plan: &Plan<Csv>,
    versions: BTreeMap<String, Option<Version>>,
    generation: u64,
) -> Result<Index, ConnectorError> {
    let mut report = LoadReport {
        generation,
        rows: BTreeMap::new(),
        people: 0,
        records: 0,
        problems: Vec::new(),
    };
    let mut index = Index {
        report: report.clone(),
        versions,
        people: Vec::new(),
        by_id: HashMap::new(),
        by_family: HashMap::new(),
        by_given: BTreeMap::new(),
        by_dob: HashMap::new(),
        by_postcode: HashMap::new(),
        by_identifier: HashMap::new(),
        records: HashMap::new(),
        digests: BTreeMap::new(),
        digest: [0; 32],
    };

    let person_file = &plan.person.access;
    let rows = read_rows(settings, plan, person_file, &mut report)?;
    report
        .rows
        .insert(person_file.name.clone(), rows.lines.len());
    for (row, line) in rows.set.iter().zip(&rows.lines) {
        let read = plan.read_person(&row);
        let problems = located(&person_file.name, *line, read.problems, &mut report);
        let Some((source_id, person)) = read.value else {
            continue;
        };
        if index.by_id.contains_key(&source_id) {
            report.problems.push(LoadProblem {
                file: person_file.name.clone(),
                line: *line,
                source_id: source_id.clone(),
                problem: "the source id is on an earlier row too; row skipped".into(),
            });
            continue;
        }
        let at = index.people.len();
        index.by_id.insert(source_id, at);
        for name in &person.names {
            if !name.family_name.is_empty() {
                index
                    .by_family
                    .entry(name.family_name.to_lowercase())
                    .or_default()
                    .push(at);
            }
            if !name.given_names.is_empty() {
                index
                    .by_given
                    .entry(name.given_names.to_lowercase())
                    .or_default()
                    .push(at);
            }
        }
        if let Some(dob) = person.date_of_birth.as_ref().and_then(calendar_date) {
            index.by_dob.entry(dob).or_default().push(at);
        }
        for address in person.addresses.iter().filter(|a| !a.postcode.is_empty()) {
            index
                .by_postcode
                .entry(address.postcode.clone())
                .or_default()
                .push(at);
        }
        for identifier in &person.identifiers {
            index
                .by_identifier
                .entry((identifier.scheme, identifier.value.clone()))
                .or_default()
                .push(at);
        }
        index.people.push(Indexed {
            value: person,
            problems,
        });
    }
    report.people = index.people.len();

    for record_plan in &plan.records {
        read_records(settings, plan, record_plan, &mut index, &mut report)?;
    }
    index.report = report;
    index.digests = person_digests(&index);
    index.digest = snapshot_digest(&index.digests);
    Ok(index)
}

/// Each person's digest over what the mapping made of their rows: the
/// person, then their records' encodings in sorted order, so reordering an
/// export's rows or changing a column the mapping does not read is no
/// change, and any mapped value that differs is.
fn person_digests(index: &Index) -> BTreeMap<String, Sha> {
    index
        .by_id
        .iter()
        .filter_map(|(id, at)| {
            let person = index.people.get(*at)?;
            let mut hash = Sha256::new();
            hash.update(person.value.encode_to_vec());
            let mut records: Vec<Vec<u8>> = index
                .records
                .get(id)
                .into_iter()
                .flat_map(|kinds| kinds.values().flatten())
                .map(|r| r.value.encode_to_vec())
                .collect();
            records.sort_unstable();
            for record in records {
                hash.update((record.len() as u64).to_be_bytes());
                hash.update(record);
            }
            Some((id.clone(), hash.finalize().into()))
        })
        .collect()
}

fn read_records(
    settings: &Settings,
    plan: &Plan<Csv>,
    record_plan: &RecordPlan<Csv>,
    index: &mut Index,
    report: &mut LoadReport,
) -> Result<(), ConnectorError> {
    let file = &record_plan.from.file;
    if index.versions.get(&file.name).is_none_or(Option::is_none) {
        report.problems.push(LoadProblem {
            file: file.name.clone(),
            line: 0,
            source_id: String::new(),
            problem: format!(
                "the file is not in the folder, so there are no `{}` records",
                record_plan.key.trim_start_matches("records.")
            ),
        });
        return Ok(());
    }
    let rows = read_rows(settings, plan, file, report)?;
    report.rows.insert(file.name.clone(), rows.lines.len());
    for (row, line) in rows.set.iter().zip(&rows.lines) {
        let owner = RowReader::new(&row, plan.offset).source_id(&record_plan.from.person_source_id);
        let owner = match owner {
            Ok(owner) if index.by_id.contains_key(&owner) => owner,
            Ok(owner) => {
                report.problems.push(LoadProblem {
                    file: file.name.clone(),
                    line: *line,
                    source_id: String::new(),
                    problem: format!(
                        "the row is for person `{}`, who is not in `{}`; row skipped",
                        crate::error::excerpt(&owner, 64),
                        plan.person.access.name
                    ),
                });
                continue;
            }
            Err(why) => {
                report.problems.push(LoadProblem {
                    file: file.name.clone(),
                    line: *line,
                    source_id: String::new(),
                    problem: format!("`{}.person_source_id`: {why}; row skipped", record_plan.key),
                });
                continue;
            }
        };
        let read = plan.read_record(record_plan, &owner, &row);
        let problems = located(&file.name, *line, read.problems, report);
        if let Some(record) = read.value {
            report.records += 1;
            index
                .records
                .entry(owner)
                .or_default()
                .entry(record_plan.kind as i32)
                .or_default()
                .push(Indexed {
                    value: record,
                    problems,
                });
        }
    }
    Ok(())
}

/// Adds file and line to a row's problems, and copies them to the report.
fn located(
    file: &str,
    line: u64,
    problems: Vec<RowProblem>,
    report: &mut LoadReport,
) -> Vec<RowProblem> {
    problems
        .into_iter()
        .map(|p| {
            report.problems.push(LoadProblem {
                file: file.to_owned(),
                line,
                source_id: p.source_id.clone(),
                problem: p.problem.clone(),
            });
            RowProblem {
                source_id: p.source_id,
                problem: format!("`{file}` line {line}: {}", p.problem),
            }
        })
        .collect()
}

/// Reads a file's rows as text cells, checking its header names every
/// column the mapping reads. Rows that are not well-formed CSV are skipped
/// and reported; reading stops at `max_rows`.
fn read_rows(
    settings: &Settings,
    plan: &Plan<Csv>,
    file: &CsvFile,
    report: &mut LoadReport,
) -> Result<Rows, ConnectorError> {
    let path = settings.folder.join(&file.name);
    let unreachable = |e: &dyn std::fmt::Display| ConnectorError::Unreachable {
        dataset: plan.dataset.clone(),
        reason: format!("cannot read `{}`: {e}", file.name),
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(settings.delimiter)
        .has_headers(true)
        .flexible(false)
        .from_path(&path)
        .map_err(|e| unreachable(&e))?;
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| unreachable(&e))?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = String::from_utf8_lossy(h);
            // A byte-order mark is not part of the first column's name.
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                &h
            };
            h.trim().to_owned()
        })
        .collect();
    let have: std::collections::HashSet<String> =
        headers.iter().map(|h| h.to_lowercase()).collect();
    let missing: Vec<&str> = file
        .columns
        .iter()
        .filter(|c| !have.contains(&c.to_lowercase()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let plural = if missing.len() == 1 { "" } else { "s" };
        return Err(ConnectorError::Mapping {
            dataset: plan.dataset.clone(),
            message: format!(
                "`{}` has no column{plural} `{}`",
                file.name,
                missing.join("`, `")
            ),
        });
    }
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                if rows.len() >= settings.max_rows {
                    report.problems.push(LoadProblem {
                        file: file.name.clone(),
                        line: record.position().map_or(line, csv::Position::line),
                        source_id: String::new(),
                        problem: format!(
                            "the file has more than {} rows; the rest were not read",
                            settings.max_rows
                        ),
                    });
                    break;
                }
                lines.push(record.position().map_or(line, csv::Position::line));
                rows.push(
                    record
                        .iter()
                        .map(|field| match std::str::from_utf8(field) {
                            Ok(text) => Cell::Text(text.to_owned()),
                            Err(_) => Cell::Bytes(field.to_vec()),
                        })
                        .collect(),
                );
            }
            Err(e) => {
                let line = e.position().map_or(line, csv::Position::line);
                let problem = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!(
                        "the row has {len} fields where the header has {expected_len}; row skipped"
                    ),
                    csv::ErrorKind::Io(io) => return Err(unreachable(io)),
                    _ => "the row is not well-formed csv; row skipped".to_owned(),
                };
                report.problems.push(LoadProblem {
                    file: file.name.clone(),
                    line,
                    source_id: String::new(),
                    problem,
                });
            }
        }
    }
    Ok(Rows {
        set: ResultSet::new(&headers, rows),
        lines,
    })
}
