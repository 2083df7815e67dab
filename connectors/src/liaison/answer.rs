//! A peer gateway's answer, checked like any source's rows before the local
//! gateway sees it.
//!
//! The peer is another agency's system: its answer is untrusted. Ids must
//! be the peer dataset's and are re-keyed to the local dataset; provenance
//! is pinned to the configured agency (a peer speaks for its own agency
//! only); identifiers and postcodes are normalised and dropped when they
//! fail; records must be about the person asked for and of the kind their
//! body says. What is dropped is reported as a [`RowProblem`], naming ids
//! and fields, never personal data.

use liaison_proto::v1::{self as pb, record::Body};

use crate::RowProblem;
use crate::normalise;

/// How ids move between the peer's dataset and the local one.
#[derive(Debug, Clone)]
pub(crate) struct Rekey {
    pub(crate) local: String,
    pub(crate) remote: String,
    pub(crate) agency: String,
    pub(crate) system: String,
}

impl Rekey {
    /// The source id in a peer id, if it is one of the peer dataset's.
    fn source_id<'a>(&self, id: &'a str) -> Option<&'a str> {
        id.strip_prefix(&self.remote)
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|s| !s.is_empty() && s.len() <= 256)
    }

    /// The peer's id for a local source id.
    pub(crate) fn remote_id(&self, source_id: &str) -> String {
        format!("{}:{source_id}", self.remote)
    }

    fn local_id(&self, source_id: &str) -> String {
        format!("{}:{source_id}", self.local)
    }

    fn provenance(&self, given: Option<pb::Provenance>, source_id: &str) -> pb::Provenance {
        let given = given.unwrap_or_default();
        pb::Provenance {
            agency_id: self.agency.clone(),
            dataset_id: self.local.clone(),
            system: self.system.clone(),
            source_id: source_id.to_owned(),
            updated_at: given.updated_at,
        }
    }

    /// Checks and re-keys one person; `None` (with the problem reported)
    /// when it cannot be used.
    pub(crate) fn person(
        &self,
        mut person: pb::Person,
        skipped: &mut Vec<RowProblem>,
    ) -> Option<pb::Person> {
        let Some(source_id) = self.source_id(&person.person_id).map(str::to_owned) else {
            skipped.push(RowProblem {
                source_id: String::new(),
                problem: "the peer returned a person whose id is not of its dataset; skipped"
                    .into(),
            });
            return None;
        };
        person.person_id = self.local_id(&source_id);
        person.provenance = Some(self.provenance(person.provenance.take(), &source_id));
        let mut dropped = 0;
        person.identifiers.retain_mut(|id| {
            let scheme = pb::IdentifierScheme::try_from(id.scheme)
                .unwrap_or(pb::IdentifierScheme::Unspecified);
            match normalise::identifier(scheme, &id.value) {
                Ok(value) if scheme != pb::IdentifierScheme::Unspecified => {
                    id.value = value;
                    true
                }
                _ => {
                    dropped += 1;
                    false
                }
            }
        });
        if dropped > 0 {
            skipped.push(RowProblem {
                source_id: source_id.clone(),
                problem: format!("{dropped} identifier(s) failed their check and were dropped"),
            });
        }
        for address in &mut person.addresses {
            if address.postcode.is_empty() {
                continue;
            }
            match normalise::postcode(&address.postcode) {
                Ok(postcode) => address.postcode = postcode,
                Err(why) => {
                    address.postcode.clear();
                    skipped.push(RowProblem {
                        source_id: source_id.clone(),
                        problem: format!("address.postcode dropped: {why}"),
                    });
                }
            }
        }
        if person.names.is_empty() {
            skipped.push(RowProblem {
                source_id,
                problem: "the peer returned a person without a name; skipped".into(),
            });
            return None;
        }
        Some(person)
    }

    /// Checks and re-keys one record of the person `local_person_id`
    /// (whose peer id is `remote_person_id`).
    pub(crate) fn record(
        &self,
        mut record: pb::Record,
        remote_person_id: &str,
        local_person_id: &str,
        skipped: &mut Vec<RowProblem>,
    ) -> Option<pb::Record> {
        let Some(source_id) = self.source_id(&record.record_id).map(str::to_owned) else {
            skipped.push(RowProblem {
                source_id: String::new(),
                problem: "the peer returned a record whose id is not of its dataset; skipped"
                    .into(),
            });
            return None;
        };
        if record.person_id != remote_person_id {
            skipped.push(RowProblem {
                source_id,
                problem: "the peer returned a record about another person; skipped".into(),
            });
            return None;
        }
        let kind = match &record.body {
            Some(Body::Incident(_)) => pb::RecordKind::Incident,
            Some(Body::WarningMarker(_)) => pb::RecordKind::WarningMarker,
            Some(Body::SafeguardingConcern(_)) => pb::RecordKind::SafeguardingConcern,
            Some(Body::RiskAssessment(_)) => pb::RecordKind::RiskAssessment,
            Some(Body::Relationship(_)) => pb::RecordKind::Relationship,
            None => pb::RecordKind::Unspecified,
        };
        if kind == pb::RecordKind::Unspecified || record.kind != kind as i32 {
            skipped.push(RowProblem {
                source_id,
                problem: "the peer returned a record whose kind does not match its body; skipped"
                    .into(),
            });
            return None;
        }
        if let Some(Body::Relationship(r)) = &mut record.body {
            // A related person the peer names is only reachable through
            // this connector, under the local dataset's id.
            r.related_person_id = match self.source_id(&r.related_person_id) {
                Some(s) => self.local_id(s),
                None => String::new(),
            };
        }
        record.record_id = self.local_id(&source_id);
        record.person_id = local_person_id.to_owned();
        record.provenance = Some(self.provenance(record.provenance.take(), &source_id));
        Some(record)
    }
}
