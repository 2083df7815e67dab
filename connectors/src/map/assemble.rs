//! Builds common-model people and records from source rows.

use liaison_proto::v1::record::Body as RecordBody;
use liaison_proto::v1::{
    Address, Identifier, IdentifierScheme, Incident, Person, PersonName, Provenance, Record,
    Relationship, RiskAssessment, SafeguardingConcern, WarningMarker,
};
use prost_types::Timestamp;

use super::compile::{AddressPlan, Body, Dialect, IdentifierPlan, NamePlan, Plan, RecordPlan};
use super::reader::RowReader;
use super::row::Row;
use crate::RowProblem;
use crate::normalise;

/// What reading one row gave: the value unless the row was skipped, and
/// the problems either way.
#[derive(Debug)]
pub(crate) struct Read<T> {
    pub(crate) value: Option<T>,
    pub(crate) problems: Vec<RowProblem>,
}

impl<D: Dialect> Plan<D> {
    pub(crate) fn person_id(&self, source_id: &str) -> String {
        format!("{}:{source_id}", self.dataset)
    }

    fn provenance(&self, source_id: &str, updated_at: Option<Timestamp>) -> Provenance {
        Provenance {
            agency_id: self.agency.clone(),
            dataset_id: self.dataset.clone(),
            system: self.system.clone(),
            source_id: source_id.to_owned(),
            updated_at,
        }
    }

    /// Reads a person from a search or get row: everything except the list
    /// entries that have queries of their own.
    pub(crate) fn read_person(&self, row: &dyn Row) -> Read<(String, Person)> {
        let p = &self.person;
        let mut r = RowReader::new(row, self.offset);
        let source_id = match r.source_id(&p.source_id) {
            Ok(id) => id,
            Err(why) => {
                return Read {
                    value: None,
                    problems: vec![RowProblem {
                        source_id: String::new(),
                        problem: format!("person row has no usable source id: {why}; row skipped"),
                    }],
                };
            }
        };
        let mut person = Person {
            person_id: self.person_id(&source_id),
            ..Person::default()
        };
        for entry in p.names.iter().filter(|e| e.from.is_none()) {
            person.names.extend(read_name(&mut r, &entry.plan));
        }
        person.date_of_birth = r.date(p.date_of_birth.as_ref());
        for entry in p.addresses.iter().filter(|e| e.from.is_none()) {
            person.addresses.extend(read_address(&mut r, &entry.plan));
        }
        for entry in p.identifiers.iter().filter(|e| e.from.is_none()) {
            person
                .identifiers
                .extend(read_identifier(&mut r, &entry.plan, &self.system));
        }
        person.gender = r.text(p.gender.as_ref()).unwrap_or_default();
        let updated_at = r.timestamp(p.updated_at.as_ref());
        person.provenance = Some(self.provenance(&source_id, updated_at));
        person.classification = r
            .enumeration(p.classification.as_ref())
            .unwrap_or(self.classification);
        let problems = problems(&source_id, r.problems);
        Read {
            value: (!r.skip).then_some((source_id, person)),
            problems,
        }
    }

    /// Reads one record row for the person with `person_source_id`.
    pub(crate) fn read_record(
        &self,
        plan: &RecordPlan<D>,
        person_source_id: &str,
        row: &dyn Row,
    ) -> Read<Record> {
        let mut r = RowReader::new(row, self.offset);
        let source_id = match r.source_id(&plan.source_id) {
            Ok(id) => id,
            Err(why) => {
                return Read {
                    value: None,
                    problems: vec![RowProblem {
                        source_id: String::new(),
                        problem: format!(
                            "`{}` row for person `{person_source_id}` has no usable source id: {why}; row skipped",
                            plan.key
                        ),
                    }],
                };
            }
        };
        let updated_at = r.timestamp(plan.updated_at.as_ref());
        let classification = r
            .enumeration(plan.classification.as_ref())
            .unwrap_or(self.classification);
        let mut handling = self.handling.clone();
        handling.extend(plan.handling.iter().cloned());
        handling.extend(r.texts(&plan.handling_from));
        let markers = r.texts(&plan.markers);
        let body = self.read_body(&mut r, &plan.body);
        let record = Record {
            record_id: self.person_id(&source_id),
            person_id: self.person_id(person_source_id),
            kind: plan.kind as i32,
            provenance: Some(self.provenance(&source_id, updated_at)),
            classification,
            handling_instructions: handling,
            sensitivity_markers: markers,
            body: Some(body),
        };
        let problems = problems(&source_id, r.problems);
        Read {
            value: (!r.skip).then_some(record),
            problems,
        }
    }

    fn read_body(&self, r: &mut RowReader<'_>, body: &Body) -> RecordBody {
        let text = |r: &mut RowReader<'_>, f| r.text(f).unwrap_or_default();
        match body {
            Body::Incident {
                reference,
                category,
                summary,
                occurred_at,
                location,
                person_role,
            } => RecordBody::Incident(Incident {
                reference: text(r, reference.as_ref()),
                category: text(r, category.as_ref()),
                summary: text(r, summary.as_ref()),
                occurred_at: r.timestamp(occurred_at.as_ref()),
                location: text(r, location.as_ref()),
                person_role: text(r, person_role.as_ref()),
            }),
            Body::WarningMarker {
                marker,
                description,
                from,
                until,
            } => RecordBody::WarningMarker(WarningMarker {
                marker: text(r, marker.as_ref()),
                description: text(r, description.as_ref()),
                from: r.date(from.as_ref()),
                until: r.date(until.as_ref()),
            }),
            Body::SafeguardingConcern {
                category,
                summary,
                raised_at,
                status,
                lead,
            } => RecordBody::SafeguardingConcern(SafeguardingConcern {
                category: text(r, category.as_ref()),
                summary: text(r, summary.as_ref()),
                raised_at: r.timestamp(raised_at.as_ref()),
                status: text(r, status.as_ref()),
                lead: text(r, lead.as_ref()),
            }),
            Body::RiskAssessment {
                framework,
                level,
                assessed_at,
                summary,
            } => RecordBody::RiskAssessment(RiskAssessment {
                framework: text(r, framework.as_ref()),
                level: r.enumeration(level.as_ref()).unwrap_or_default(),
                assessed_at: r.timestamp(assessed_at.as_ref()),
                summary: text(r, summary.as_ref()),
            }),
            Body::Relationship {
                related_person_id,
                relationship,
                related_name,
            } => RecordBody::Relationship(Relationship {
                related_person_id: r
                    .text(related_person_id.as_ref())
                    .map(|id| self.person_id(&id))
                    .unwrap_or_default(),
                relationship: text(r, relationship.as_ref()),
                related_name: text(r, related_name.as_ref()),
            }),
        }
    }
}

fn problems(source_id: &str, problems: Vec<String>) -> Vec<RowProblem> {
    problems
        .into_iter()
        .map(|problem| RowProblem {
            source_id: source_id.to_owned(),
            problem,
        })
        .collect()
}

/// Reads a name; a name with neither part is left out.
pub(crate) fn read_name(r: &mut RowReader<'_>, plan: &NamePlan) -> Option<PersonName> {
    let given_names = r.text(plan.given_names.as_ref()).unwrap_or_default();
    let family_name = r.text(plan.family_name.as_ref()).unwrap_or_default();
    let name_use = r.enumeration(plan.name_use.as_ref()).unwrap_or_default();
    if given_names.is_empty() && family_name.is_empty() {
        return None;
    }
    Some(PersonName {
        given_names,
        family_name,
        r#use: name_use,
    })
}

/// Reads an address with its postcode normalised; an invalid postcode is
/// dropped and reported, and an address with nothing in it left out.
pub(crate) fn read_address(r: &mut RowReader<'_>, plan: &AddressPlan) -> Option<Address> {
    let lines = r.texts(&plan.lines);
    let locality = r.text(plan.locality.as_ref()).unwrap_or_default();
    let postcode = match (r.text(plan.postcode.as_ref()), plan.postcode.as_ref()) {
        (Some(raw), Some(field)) => match normalise::postcode(&raw) {
            Ok(postcode) => postcode,
            Err(why) => r.invalid(field, why).unwrap_or_default(),
        },
        _ => String::new(),
    };
    let from = r.date(plan.from.as_ref());
    let to = r.date(plan.to.as_ref());
    if lines.is_empty() && locality.is_empty() && postcode.is_empty() {
        return None;
    }
    Some(Address {
        lines,
        locality,
        postcode,
        from,
        to,
    })
}

/// Reads an identifier normalised for its scheme; an invalid one is
/// dropped and reported. Local identifiers without a system are taken to
/// be the dataset's own system's.
pub(crate) fn read_identifier(
    r: &mut RowReader<'_>,
    plan: &IdentifierPlan,
    dataset_system: &str,
) -> Option<Identifier> {
    let raw = r.text(Some(&plan.value))?;
    let value = match normalise::identifier(plan.scheme, &raw) {
        Ok(value) => value,
        Err(why) => return r.invalid(&plan.value, why),
    };
    let system = match (r.text(plan.system.as_ref()), plan.scheme) {
        (Some(system), _) => system,
        (None, IdentifierScheme::Local) => dataset_system.to_owned(),
        (None, _) => String::new(),
    };
    Some(Identifier {
        scheme: plan.scheme as i32,
        value,
        system,
    })
}
