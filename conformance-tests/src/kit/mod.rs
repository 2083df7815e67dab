//! The connector test kit: a suite any connector configuration runs to
//! prove it maps its source correctly and keeps the connector contract
//! (`connectors/SPEC.md`).
//!
//! ```no_run
//! # async fn demo(connector: std::sync::Arc<dyn liaison_connectors::Connector>) {
//! use liaison_conformance::kit::{KitExpectations, run_kit};
//! let expectations =
//!     KitExpectations::from_file(std::path::Path::new("police-rms.kit.toml")).unwrap();
//! let report = run_kit(connector, expectations).await;
//! println!("{report}");
//! assert!(report.passed());
//! # }
//! ```
//!
//! Each check has a stable name (`search.by_family_name[100001]`,
//! `ids.record_person_id`, …) and, when it fails, says why. The checks:
//!
//! | check | what must hold |
//! |---|---|
//! | `descriptor.identity` | the dataset id is the expected one and well formed; agency, title and system are set; record kinds are listed once each, in order |
//! | `search.by_family_name`, `.by_given_name`, `.by_date_of_birth`, `.by_postcode`, `.by_identifier.<scheme>` | each known person is found by each key the expectations give, alongside their family name |
//! | `search.results_match` | every person a search returns holds the family name searched for |
//! | `search.limits` | no more than `limit` people come back; `limit` 0 returns no one |
//! | `search.no_criteria` | a search without criteria is refused as the caller's fault |
//! | `fetch.person` | each known person is fetched by source id, as the same person id |
//! | `fetch.mapped` | the fetched person holds the expected family and given name, date of birth, postcode and identifiers, normalised |
//! | `fetch.kinds` | asking for one kind returns only that kind; the kinds a person is known to have are there |
//! | `fetch.unoffered_kinds` | asking for kinds the dataset does not offer is not an error and returns none |
//! | `fetch.absent` / `fetch.invalid_id` | an id not held finds no one; an empty (or impossible) id is the caller's fault |
//! | `ids.person_id`, `ids.record_id`, `ids.record_person_id`, `ids.record_kind`, `ids.stable` | ids are `<dataset>:<source id>`, records point at the person fetched, `kind` names the body, and ids do not change between calls |
//! | `provenance.filled` | every person and record carries agency, dataset, system and source id, matching the descriptor |
//! | `minimisation.independent` | a fetch of some kinds returns exactly those records of a fetch of all kinds: connectors do not minimise or vary by request; the gateway minimises |
//! | `malformed.contained` | a person with malformed rows is fetched without error, the problems are reported, and none quotes the malformed values |
//! | `deadline.middleware` | behind the resilience middleware a call to a stalled connector ends with a deadline error within the deadline |
//! | `deadline.source_stall` | when the source itself can stall, that stall is bounded too |
//! | `deadline.cancellation_safe` | after calls dropped mid-flight the connector still answers |
//! | `changes.head` | where the connector offers a change feed: "now" is a cursor with no changes, and reading after it right away is neither an error nor a resynchronisation |
//! | `changes.invalid_cursor` | a cursor the feed never issued is the caller's fault |
//! | `changes.walk` | read from the expectations' `from` in small pages: pages are bounded, each ends at its last change's cursor, and the feed reaches its end |
//! | `changes.page_boundary` | the same changes arrive in one large page as in the small ones: nothing is lost where a page ends |
//! | `changes.grows` | resuming from any change's cursor yields exactly the changes after it, never an earlier one |

mod changes;
mod expectations;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use expectations::{
    ExpectationsError, KitExpectations, KnownChanges, KnownIdentifier, KnownPerson, MalformedPerson,
};
use liaison_connectors::{
    BoxFuture, Connector, ConnectorError, DatasetDescriptor, Fault, Fetched, Found, PersonQuery,
    ResilienceConfig, Resilient, normalise,
};
use liaison_proto::v1::record::Body;
use liaison_proto::v1::{IdentifierScheme, Person, Provenance, Record, RecordKind};

/// The outcome of one named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name, such as `search.by_postcode[100001]`.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// Why it failed, or what it saw when it passed.
    pub detail: String,
}

/// Every check the kit ran on one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KitReport {
    /// The dataset checked.
    pub dataset: String,
    /// The checks, in the order they ran.
    pub checks: Vec<CheckResult>,
}

impl KitReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    /// Whether a check whose name starts with `prefix` failed.
    pub fn failed(&self, prefix: &str) -> bool {
        self.checks
            .iter()
            .any(|c| !c.passed && c.name.starts_with(prefix))
    }

    fn check(&mut self, name: impl Into<String>, outcome: Result<String, String>) {
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.checks.push(CheckResult {
            name: name.into(),
            passed,
            detail,
        });
    }
}

impl fmt::Display for KitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().len();
        writeln!(
            f,
            "connector kit: dataset `{}`: {} passed, {failed} failed",
            self.dataset,
            self.checks.len() - failed
        )?;
        for check in &self.checks {
            if check.passed {
                writeln!(f, "  pass  {} ({})", check.name, check.detail)?;
            } else {
                writeln!(f, "  FAIL  {}: {}", check.name, check.detail)?;
            }
        }
        Ok(())
    }
}

/// Runs every check on `connector`, told what it holds by `expectations`.
/// The connector is called directly, and (for the deadline checks) behind
/// the resilience middleware.
pub async fn run_kit(connector: Arc<dyn Connector>, expectations: KitExpectations) -> KitReport {
    let mut report = KitReport {
        dataset: expectations.dataset.clone(),
        checks: Vec::new(),
    };
    let c = connector.as_ref();
    let descriptor = c.descriptor().clone();
    report.check(
        "descriptor.identity",
        descriptor_identity(&descriptor, &expectations),
    );

    let mut seen_people: Vec<Person> = Vec::new();
    let mut seen_records: Vec<(String, Record)> = Vec::new();

    for person in &expectations.people {
        search_checks(c, person, &mut report, &mut seen_people).await;
    }
    search_limits(c, &expectations, &mut report).await;

    for person in &expectations.people {
        fetch_checks(
            c,
            &descriptor,
            person,
            &mut report,
            &mut seen_people,
            &mut seen_records,
        )
        .await;
    }
    report.check("fetch.absent", fetch_absent(c, &expectations).await);
    report.check("fetch.invalid_id", fetch_invalid(c, &expectations).await);

    for person in &expectations.malformed {
        let outcome = malformed(c, person, &mut seen_people, &mut seen_records).await;
        report.check(
            format!("malformed.contained[{}]", person.source_id),
            outcome,
        );
    }

    id_checks(&descriptor, &seen_people, &seen_records, &mut report);

    let deadline = Duration::from_millis(expectations.deadline_ms.unwrap_or(500));
    report.check(
        "deadline.middleware",
        middleware_deadline(&descriptor, deadline).await,
    );
    if let Some(id) = &expectations.stalling_source_id {
        report.check(
            "deadline.source_stall",
            source_stall(connector.clone(), id, deadline).await,
        );
    }
    report.check(
        "deadline.cancellation_safe",
        cancellation_safe(c, &expectations).await,
    );
    changes::checks(c, expectations.changes.as_ref(), &mut report).await;
    report
}

fn descriptor_identity(d: &DatasetDescriptor, e: &KitExpectations) -> Result<String, String> {
    if d.id != e.dataset {
        return Err(format!("the dataset is `{}`, not `{}`", d.id, e.dataset));
    }
    let well_formed = !d.id.is_empty()
        && d.id.len() <= 64
        && d.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !well_formed {
        return Err(format!("dataset id `{}` is not well formed", d.id));
    }
    for (key, value) in [
        ("agency", &d.agency),
        ("title", &d.title),
        ("system", &d.system),
    ] {
        if value.trim().is_empty() {
            return Err(format!("the descriptor's {key} is empty"));
        }
    }
    let kinds: Vec<i32> = d.record_kinds.iter().map(|k| *k as i32).collect();
    if kinds.windows(2).any(|w| matches!(w, [a, b] if a >= b))
        || d.record_kinds.contains(&RecordKind::Unspecified)
    {
        return Err("record kinds are not listed once each in order".into());
    }
    Ok(format!("{} record kinds", kinds.len()))
}

fn query(person: &KnownPerson) -> PersonQuery {
    PersonQuery {
        family_name: Some(person.family_name.clone()),
        ..PersonQuery::default()
    }
}

async fn search_checks(
    c: &dyn Connector,
    person: &KnownPerson,
    report: &mut KitReport,
    seen: &mut Vec<Person>,
) {
    let id = &person.source_id;
    let mut keys: Vec<(String, PersonQuery)> =
        vec![(format!("search.by_family_name[{id}]"), query(person))];
    if let Some(given) = &person.given_name {
        let prefix: String = given.chars().take(2).collect();
        keys.push((
            format!("search.by_given_name[{id}]"),
            PersonQuery {
                given_name: Some(prefix.to_lowercase()),
                ..query(person)
            },
        ));
    }
    if let Some(date) = person.date() {
        keys.push((
            format!("search.by_date_of_birth[{id}]"),
            PersonQuery {
                date_of_birth: Some(date),
                ..query(person)
            },
        ));
    }
    if let Some(postcode) = &person.postcode {
        keys.push((
            format!("search.by_postcode[{id}]"),
            PersonQuery {
                postcode: Some(postcode.clone()),
                ..query(person)
            },
        ));
    }
    for identifier in person.model_identifiers() {
        let scheme =
            IdentifierScheme::try_from(identifier.scheme).map_or("unknown", |s| s.as_str_name());
        keys.push((
            format!("search.by_identifier.{scheme}[{id}]"),
            PersonQuery {
                identifiers: vec![identifier],
                ..PersonQuery::default()
            },
        ));
    }
    for (name, q) in keys {
        let outcome = match c.search(&q, 20).await {
            Err(e) => Err(format!("the search failed: {e}")),
            Ok(found) => {
                let hit = found
                    .persons
                    .iter()
                    .any(|p| source_of(p).is_some_and(|s| s == *id));
                seen.extend(found.persons.iter().cloned());
                if hit {
                    Ok(format!("{} found", found.persons.len()))
                } else {
                    Err(format!(
                        "`{id}` was not among the {} people found",
                        found.persons.len()
                    ))
                }
            }
        };
        report.check(name, outcome);
    }
    let family = person.family_name.to_lowercase();
    let outcome = match c.search(&query(person), 20).await {
        Err(e) => Err(format!("the search failed: {e}")),
        Ok(found) => match found.persons.iter().find(|p| {
            !p.names
                .iter()
                .any(|n| n.family_name.to_lowercase() == family)
        }) {
            Some(p) => Err(format!(
                "`{}` does not hold the family name searched for",
                p.person_id
            )),
            None => Ok(format!("{} people, all match", found.persons.len())),
        },
    };
    report.check(format!("search.results_match[{id}]"), outcome);
}

async fn search_limits(c: &dyn Connector, e: &KitExpectations, report: &mut KitReport) {
    let Some(person) = e.people.first() else {
        return;
    };
    let q = query(person);
    let mut outcome = Ok("limits 0, 1 and 2 kept".to_owned());
    for limit in [0, 1, 2] {
        match c.search(&q, limit).await {
            Err(err) => {
                outcome = Err(format!("a search with limit {limit} failed: {err}"));
                break;
            }
            Ok(found) if found.persons.len() > limit => {
                outcome = Err(format!(
                    "limit {limit} returned {} people",
                    found.persons.len()
                ));
                break;
            }
            Ok(found) if limit > 0 && found.persons.is_empty() => {
                outcome = Err(format!("limit {limit} returned no one"));
                break;
            }
            Ok(_) => {}
        }
    }
    report.check("search.limits", outcome);
    let outcome = match c.search(&PersonQuery::default(), 10).await {
        Err(err) if err.fault() == Fault::Caller => Ok(err.to_string()),
        Err(err) => Err(format!("refused, but not as the caller's fault: {err}")),
        Ok(found) => Err(format!(
            "a search without criteria returned {} people",
            found.persons.len()
        )),
    };
    report.check("search.no_criteria", outcome);
}

async fn fetch_checks(
    c: &dyn Connector,
    d: &DatasetDescriptor,
    person: &KnownPerson,
    report: &mut KitReport,
    seen_people: &mut Vec<Person>,
    seen_records: &mut Vec<(String, Record)>,
) {
    let id = &person.source_id;
    let all = match c.fetch(id, &[]).await {
        Err(e) => {
            report.check(format!("fetch.person[{id}]"), Err(format!("failed: {e}")));
            return;
        }
        Ok(all) => all,
    };
    let want = format!("{}:{id}", d.id);
    report.check(
        format!("fetch.person[{id}]"),
        match &all.person {
            Some(p) if p.person_id == want => Ok(format!("{} records", all.records.len())),
            Some(p) => Err(format!("fetched `{}` when asked for `{want}`", p.person_id)),
            None => Err("no person came back".into()),
        },
    );
    if let Some(p) = &all.person {
        report.check(format!("fetch.mapped[{id}]"), mapped(person, p));
    }
    seen_people.extend(all.person.iter().cloned());
    seen_records.extend(all.records.iter().map(|r| (want.clone(), r.clone())));

    let mut outcome = Ok(String::new());
    let mut independent = Ok("every kind's records equal the full fetch's".to_owned());
    for kind in &d.record_kinds {
        match c.fetch(id, &[*kind]).await {
            Err(e) => {
                outcome = Err(format!("fetching only {} failed: {e}", kind.as_str_name()));
                break;
            }
            Ok(some) => {
                if let Some(other) = some.records.iter().find(|r| r.kind != *kind as i32) {
                    outcome = Err(format!(
                        "asked for {} only, got `{}` of another kind",
                        kind.as_str_name(),
                        other.record_id
                    ));
                    break;
                }
                let expected: Vec<&Record> = all
                    .records
                    .iter()
                    .filter(|r| r.kind == *kind as i32)
                    .collect();
                let got: Vec<&Record> = some.records.iter().collect();
                if got != expected && independent.is_ok() {
                    independent = Err(format!(
                        "asking for {} only returned {} records where the full fetch has {}",
                        kind.as_str_name(),
                        got.len(),
                        expected.len()
                    ));
                }
                if some.person != all.person && independent.is_ok() {
                    independent = Err("the person differs with the kinds asked for".into());
                }
            }
        }
    }
    if outcome.is_ok() {
        let missing: Vec<&str> = person
            .kinds()
            .into_iter()
            .filter(|k| !all.records.iter().any(|r| r.kind == *k as i32))
            .map(|k| k.as_str_name())
            .collect();
        outcome = if missing.is_empty() {
            Ok(format!("{} kinds checked", d.record_kinds.len()))
        } else {
            Err(format!("no {} records came back", missing.join(", ")))
        };
    }
    report.check(format!("fetch.kinds[{id}]"), outcome);
    report.check(format!("minimisation.independent[{id}]"), independent);

    let unoffered: Vec<RecordKind> = [
        RecordKind::Incident,
        RecordKind::WarningMarker,
        RecordKind::SafeguardingConcern,
        RecordKind::RiskAssessment,
        RecordKind::Relationship,
    ]
    .into_iter()
    .filter(|k| !d.record_kinds.contains(k))
    .collect();
    if !unoffered.is_empty() {
        let outcome = match c.fetch(id, &unoffered).await {
            Err(e) => Err(format!("asking for kinds not offered failed: {e}")),
            Ok(f) if !f.records.is_empty() => {
                Err(format!("{} records of kinds not offered", f.records.len()))
            }
            Ok(_) => Ok("ignored".into()),
        };
        report.check(format!("fetch.unoffered_kinds[{id}]"), outcome);
    }

    let again = c.fetch(id, &[]).await;
    let outcome = match again {
        Err(e) => Err(format!("a second fetch failed: {e}")),
        Ok(again) => {
            let ids = |f: &Fetched| -> Vec<String> {
                f.person
                    .iter()
                    .map(|p| p.person_id.clone())
                    .chain(f.records.iter().map(|r| r.record_id.clone()))
                    .collect()
            };
            if ids(&again) == ids(&all) {
                Ok(format!("{} ids", ids(&all).len()))
            } else {
                Err("the ids differ between two fetches".into())
            }
        }
    };
    report.check(format!("ids.stable[{id}]"), outcome);
}

/// Whether the fetched person holds what the expectations say, in the
/// model's normalised spellings.
fn mapped(known: &KnownPerson, p: &Person) -> Result<String, String> {
    let family = known.family_name.to_lowercase();
    if !p
        .names
        .iter()
        .any(|n| n.family_name.to_lowercase() == family)
    {
        return Err(format!("no name has family name `{}`", known.family_name));
    }
    if let Some(given) = &known.given_name {
        let given = given.to_lowercase();
        if !p
            .names
            .iter()
            .any(|n| n.given_names.to_lowercase().starts_with(&given))
        {
            return Err(format!("no name has given name `{given}`"));
        }
    }
    if let Some(date) = known.date()
        && p.date_of_birth != Some(date)
    {
        return Err("the date of birth differs".into());
    }
    if let Some(postcode) = &known.postcode {
        let want = normalise::postcode(postcode).map_err(|why| format!("expectations: {why}"))?;
        if !p.addresses.iter().any(|a| a.postcode == want) {
            return Err(format!("no address has postcode `{want}`"));
        }
    }
    for identifier in known.model_identifiers() {
        let scheme = IdentifierScheme::try_from(identifier.scheme).unwrap_or_default();
        let want = normalise::identifier(scheme, &identifier.value)
            .map_err(|why| format!("expectations: {why}"))?;
        if !p
            .identifiers
            .iter()
            .any(|i| i.scheme == identifier.scheme && i.value == want)
        {
            return Err(format!("no {} identifier `{want}`", scheme.as_str_name()));
        }
    }
    Ok("names, date of birth, postcode and identifiers as expected".into())
}

async fn fetch_absent(c: &dyn Connector, e: &KitExpectations) -> Result<String, String> {
    match c.fetch(&e.absent_source_id, &[]).await {
        Err(err) => Err(format!("an id not held failed: {err}")),
        Ok(f) if f.person.is_some() || !f.records.is_empty() => Err(format!(
            "`{}` found someone or something",
            e.absent_source_id
        )),
        Ok(_) => Ok("no one".into()),
    }
}

async fn fetch_invalid(c: &dyn Connector, e: &KitExpectations) -> Result<String, String> {
    let mut ids = vec![String::new()];
    ids.extend(e.invalid_source_id.iter().cloned());
    for id in ids {
        match c.fetch(&id, &[]).await {
            Err(err) if err.fault() == Fault::Caller => {}
            Err(err) => {
                return Err(format!(
                    "`{id}` was refused, but not as the caller's fault: {err}"
                ));
            }
            Ok(_) => return Err(format!("`{id}` was not refused")),
        }
    }
    Ok("refused as the caller's fault".into())
}

async fn malformed(
    c: &dyn Connector,
    person: &MalformedPerson,
    seen_people: &mut Vec<Person>,
    seen_records: &mut Vec<(String, Record)>,
) -> Result<String, String> {
    let fetched = c
        .fetch(&person.source_id, &[])
        .await
        .map_err(|e| format!("the fetch failed: {e}"))?;
    if let Some(p) = &fetched.person {
        seen_people.push(p.clone());
        seen_records.extend(
            fetched
                .records
                .iter()
                .map(|r| (p.person_id.clone(), r.clone())),
        );
    }
    if fetched.skipped.len() < person.min_problems {
        return Err(format!(
            "{} problems reported, at least {} expected",
            fetched.skipped.len(),
            person.min_problems
        ));
    }
    for problem in &fetched.skipped {
        if let Some(quoted) = person
            .never_quoted
            .iter()
            .find(|q| problem.problem.contains(q.as_str()))
        {
            return Err(format!("a problem quotes `{quoted}`"));
        }
    }
    Ok(format!("{} problems reported", fetched.skipped.len()))
}

fn source_of(p: &Person) -> Option<&str> {
    p.person_id.split_once(':').map(|(_, s)| s)
}

fn body_kind(body: &Body) -> RecordKind {
    match body {
        Body::Incident(_) => RecordKind::Incident,
        Body::WarningMarker(_) => RecordKind::WarningMarker,
        Body::SafeguardingConcern(_) => RecordKind::SafeguardingConcern,
        Body::RiskAssessment(_) => RecordKind::RiskAssessment,
        Body::Relationship(_) => RecordKind::Relationship,
    }
}

fn provenance_ok(
    p: Option<&Provenance>,
    d: &DatasetDescriptor,
    source: &str,
) -> Result<(), String> {
    let Some(p) = p else {
        return Err("has no provenance".into());
    };
    if p.agency_id != d.agency || p.dataset_id != d.id || p.system.is_empty() {
        return Err(format!(
            "provenance names agency `{}`, dataset `{}`, system `{}`",
            p.agency_id, p.dataset_id, p.system
        ));
    }
    if p.source_id != source {
        return Err(format!(
            "provenance source id `{}` is not the id's `{source}`",
            p.source_id
        ));
    }
    Ok(())
}

fn id_checks(
    d: &DatasetDescriptor,
    people: &[Person],
    records: &[(String, Record)],
    report: &mut KitReport,
) {
    let prefix = format!("{}:", d.id);
    let mut person_ids = Ok(format!("{} people", people.len()));
    let mut provenance = Ok(format!(
        "{} people and {} records",
        people.len(),
        records.len()
    ));
    for p in people {
        let Some(source) = p.person_id.strip_prefix(&prefix).filter(|s| !s.is_empty()) else {
            person_ids = Err(format!("`{}` is not `{prefix}<source id>`", p.person_id));
            continue;
        };
        if let Err(why) = provenance_ok(p.provenance.as_ref(), d, source) {
            provenance = Err(format!("person `{}` {why}", p.person_id));
        }
    }
    let mut record_ids = Ok(format!("{} records", records.len()));
    let mut record_person = Ok(format!("{} records", records.len()));
    let mut record_kind = Ok(format!("{} records", records.len()));
    let mut unique = std::collections::HashSet::new();
    for (person_id, r) in records {
        match r.record_id.strip_prefix(&prefix).filter(|s| !s.is_empty()) {
            None => record_ids = Err(format!("`{}` is not `{prefix}<source id>`", r.record_id)),
            Some(source) => {
                if let Err(why) = provenance_ok(r.provenance.as_ref(), d, source) {
                    provenance = Err(format!("record `{}` {why}", r.record_id));
                }
            }
        }
        if !unique.insert((person_id.clone(), r.record_id.clone())) {
            record_ids = Err(format!("`{}` came back twice in one fetch", r.record_id));
        }
        if r.person_id != *person_id {
            record_person = Err(format!(
                "`{}` names person `{}` but was fetched for `{person_id}`",
                r.record_id, r.person_id
            ));
        }
        let body = r.body.as_ref().map(body_kind);
        if body.is_none_or(|k| k as i32 != r.kind) {
            record_kind = Err(format!("`{}`'s kind does not name its body", r.record_id));
        }
        if !d.record_kinds.iter().any(|k| *k as i32 == r.kind) {
            record_kind = Err(format!(
                "`{}` is of a kind the descriptor does not offer",
                r.record_id
            ));
        }
    }
    report.check("ids.person_id", person_ids);
    report.check("ids.record_id", record_ids);
    report.check("ids.record_person_id", record_person);
    report.check("ids.record_kind", record_kind);
    report.check("provenance.filled", provenance);
}

/// A connector whose every call stalls, standing in for a hung source.
#[derive(Debug)]
struct Stalled {
    descriptor: DatasetDescriptor,
}

impl Connector for Stalled {
    fn descriptor(&self) -> &DatasetDescriptor {
        &self.descriptor
    }

    fn search<'a>(
        &'a self,
        _query: &'a PersonQuery,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(std::future::pending())
    }

    fn fetch<'a>(
        &'a self,
        _source_id: &'a str,
        _kinds: &'a [RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(std::future::pending())
    }
}

fn resilience(deadline: Duration) -> ResilienceConfig {
    ResilienceConfig {
        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        max_attempts: 1,
        ..ResilienceConfig::default()
    }
}

async fn bounded<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, ConnectorError>>,
) -> Result<String, String> {
    let started = Instant::now();
    // The kit's own guard: a middleware that failed to bound the call must
    // not hang the kit.
    let outcome = tokio::time::timeout(deadline * 4, call).await;
    let took = started.elapsed();
    match outcome {
        Err(_) => Err(format!(
            "no answer within {} ms",
            (deadline * 4).as_millis()
        )),
        Ok(Ok(_)) => Err("a stalled call answered".into()),
        Ok(Err(ConnectorError::DeadlineExceeded { .. })) if took < deadline * 2 => {
            Ok(format!("ended after {} ms", took.as_millis()))
        }
        Ok(Err(e)) => Err(format!("ended after {} ms with: {e}", took.as_millis())),
    }
}

async fn middleware_deadline(d: &DatasetDescriptor, deadline: Duration) -> Result<String, String> {
    let stalled: Arc<dyn Connector> = Arc::new(Stalled {
        descriptor: d.clone(),
    });
    let resilient = Resilient::new(stalled, &resilience(deadline));
    bounded(deadline, resilient.fetch("1", &[])).await
}

async fn source_stall(
    connector: Arc<dyn Connector>,
    id: &str,
    deadline: Duration,
) -> Result<String, String> {
    let resilient = Resilient::new(connector, &resilience(deadline));
    bounded(deadline, resilient.fetch(id, &[])).await
}

async fn cancellation_safe(c: &dyn Connector, e: &KitExpectations) -> Result<String, String> {
    let Some(person) = e.people.first() else {
        return Ok("no known person to ask for".into());
    };
    let q = query(person);
    // Drop calls at their first await points, and a little later.
    for wait in [0, 1, 2, 5] {
        let _ = tokio::time::timeout(Duration::from_millis(wait), c.search(&q, 5)).await;
        let _ = tokio::time::timeout(Duration::from_millis(wait), c.fetch(&person.source_id, &[]))
            .await;
    }
    match c.fetch(&person.source_id, &[]).await {
        Ok(f) if f.person.is_some() => Ok("usable after 8 dropped calls".into()),
        Ok(_) => Err("after dropped calls the person is no longer found".into()),
        Err(err) => Err(format!("after dropped calls a fetch fails: {err}")),
    }
}
