//! Minimise: every person and record leaving the gateway is cut down to the
//! fields the agreement releases to the caller's roles, recursively through
//! nested messages, whatever the connector already did. A record with no
//! releasable field is not sent at all, and neither is a record carrying a
//! sensitivity marker the decision withholds (an operator's marker rule).
//! The stage also computes, for the audit entry, which fields left about
//! whom, a digest of exactly what was sent, and how many records were
//! withheld for their markers.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use liaison_policy::{Decision, FieldMask};
use liaison_proto::v1::{self as pb, record::Body};
use prost::Message;
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use super::{Answer, Authorized, BoxFuture, Payload};

/// Fields always sent with a person or record, because a recipient cannot
/// handle the data lawfully without them: what it is, where it came from,
/// and how it must be handled. They hold no personal data beyond a
/// reference.
pub const ENVELOPE: &[&str] = &[
    "person.person_id",
    "person.provenance",
    "person.classification",
    "record.record_id",
    "record.person_id",
    "record.kind",
    "record.provenance",
    "record.classification",
    "record.handling_instructions",
    "record.sensitivity_markers",
];

/// Every releasable field path. A test checks this against the published
/// descriptors, so a field added to the model cannot leak by default.
pub const PATHS: &[&str] = &[
    "person.names.given_names",
    "person.names.family_name",
    "person.names.use",
    "person.date_of_birth",
    "person.addresses.lines",
    "person.addresses.locality",
    "person.addresses.postcode",
    "person.addresses.from",
    "person.addresses.to",
    "person.identifiers.scheme",
    "person.identifiers.value",
    "person.identifiers.system",
    "person.gender",
    "incident.reference",
    "incident.category",
    "incident.summary",
    "incident.occurred_at",
    "incident.location",
    "incident.person_role",
    "warning_marker.marker",
    "warning_marker.description",
    "warning_marker.from",
    "warning_marker.until",
    "safeguarding_concern.category",
    "safeguarding_concern.summary",
    "safeguarding_concern.raised_at",
    "safeguarding_concern.status",
    "safeguarding_concern.lead",
    "risk_assessment.framework",
    "risk_assessment.level",
    "risk_assessment.assessed_at",
    "risk_assessment.summary",
    "relationship.related_person_id",
    "relationship.relationship",
    "relationship.related_name",
];

/// Adds the minimisation stage.
#[derive(Debug, Clone, Default)]
pub struct MinimiseLayer;

impl<S> Layer<S> for MinimiseLayer {
    type Service = Minimise<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Minimise { inner }
    }
}

/// The minimisation stage.
#[derive(Debug, Clone)]
pub struct Minimise<S> {
    inner: S,
}

impl<S> Service<Authorized> for Minimise<S>
where
    S: Service<Authorized, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFuture<Result<Answer, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Authorized) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let masks: BTreeMap<String, Arc<Decision>> = req.plan.iter().cloned().collect();
        Box::pin(async move {
            let mut answer = inner.call(req).await?;
            if let Ok(payload) = &mut answer.result {
                let minimised =
                    tracing::debug_span!("minimise").in_scope(|| minimise_payload(payload, &masks));
                answer.facts.disclosures = minimised.disclosures;
                answer.facts.withheld = minimised.withheld;
            }
            Ok(answer)
        })
    }
}

/// What minimising a payload disclosed and withheld, for the audit entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minimised {
    /// What left, per person and dataset.
    pub disclosures: Vec<pb::AuditDisclosure>,
    /// Records withheld for their sensitivity markers, per dataset, marker
    /// and rule.
    pub withheld: Vec<pb::WithheldRecords>,
}

/// Counts withheld records by (dataset, marker, rule).
#[derive(Default)]
struct Withheld(BTreeMap<(String, String, String), u32>);

impl Withheld {
    fn add(&mut self, dataset: &str, withholding: &liaison_policy::Withholding) {
        let count = self
            .0
            .entry((
                dataset.to_owned(),
                withholding.marker.clone(),
                withholding.rule_id.clone(),
            ))
            .or_default();
        *count = count.saturating_add(1);
    }

    fn into_records(self) -> Vec<pb::WithheldRecords> {
        self.0
            .into_iter()
            .map(
                |((dataset_id, marker, rule_id), records)| pb::WithheldRecords {
                    dataset_id,
                    marker,
                    rule_id,
                    records,
                },
            )
            .collect()
    }
}

/// Minimises a payload in place and returns what was disclosed and what
/// was withheld.
pub fn minimise_payload(
    payload: &mut Payload,
    masks: &BTreeMap<String, Arc<Decision>>,
) -> Minimised {
    let dataset_of = |id: &str| id.split_once(':').map_or(id, |(d, _)| d).to_owned();
    let mask_for = |id: &str| masks.get(&dataset_of(id)).map(|d| &d.mask);
    let mut withheld = Withheld::default();
    let mut disclosures = Vec::new();
    match payload {
        Payload::Search { matches, .. } => {
            matches.retain_mut(|m| {
                let Some(person) = m.person.as_mut() else {
                    return false;
                };
                let Some(mask) = mask_for(&person.person_id) else {
                    // INVARIANT: a person from a dataset policy did not allow
                    // is never sent.
                    return false;
                };
                let fields = minimise_person(person, mask);
                disclosures.push(disclosure(person, &[], fields));
                true
            });
        }
        Payload::Read {
            person, records, ..
        } => {
            let mut fields = BTreeSet::new();
            if let Some(p) = person.as_mut() {
                match mask_for(&p.person_id) {
                    Some(mask) => fields.extend(minimise_person(p, mask)),
                    None => *person = None,
                }
            }
            records.retain_mut(|r| {
                let dataset = dataset_of(&r.record_id);
                let Some(decision) = masks.get(&dataset) else {
                    return false;
                };
                // INVARIANT: a record carrying a marker the decision
                // withholds is never sent, whatever its fields.
                if let Some(withholding) = decision.withholding(&r.sensitivity_markers) {
                    withheld.add(&dataset, withholding);
                    return false;
                }
                match minimise_record(r, &decision.mask) {
                    Some(kept) => {
                        fields.extend(kept);
                        true
                    }
                    None => false,
                }
            });
            if let Some(p) = person.as_ref() {
                disclosures.push(disclosure(p, records, fields));
            } else if let Some(first) = records.first() {
                let stub = pb::Person {
                    person_id: first.person_id.clone(),
                    ..Default::default()
                };
                disclosures.push(disclosure(&stub, records, fields));
            }
        }
        // A subscription's start discloses nothing; each notification is
        // minimised as a `Read` when it is sent.
        Payload::Subscribed { .. } => {}
    }
    Minimised {
        disclosures,
        withheld: withheld.into_records(),
    }
}

fn disclosure(
    person: &pb::Person,
    records: &[pb::Record],
    fields: BTreeSet<&'static str>,
) -> pb::AuditDisclosure {
    let mut hasher = Sha256::new();
    hasher.update(person.encode_to_vec());
    for r in records {
        hasher.update(r.encode_to_vec());
    }
    pb::AuditDisclosure {
        dataset_id: person
            .person_id
            .split_once(':')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default(),
        person_id: person.person_id.clone(),
        record_ids: records.iter().map(|r| r.record_id.clone()).collect(),
        fields: fields.into_iter().map(str::to_owned).collect(),
        digest: hex::encode(hasher.finalize()),
    }
}

/// Clears fields the mask does not allow and remembers those it kept.
struct Cut<'a> {
    mask: &'a FieldMask,
    kept: BTreeSet<&'static str>,
}

impl Cut<'_> {
    fn field<T: Default + PartialEq>(&mut self, path: &'static str, value: &mut T) {
        if self.mask.allows(path) {
            if *value != T::default() {
                self.kept.insert(path);
            }
        } else {
            *value = T::default();
        }
    }

    /// A repeated nested message: each element is cut field by field and
    /// dropped if nothing is left of it.
    fn list<T: Default + PartialEq>(
        &mut self,
        items: &mut Vec<T>,
        mut cut: impl FnMut(&mut Self, &mut T),
    ) {
        items.retain_mut(|item| {
            cut(self, item);
            *item != T::default()
        });
    }
}

/// Minimises a person; returns the field paths that remain.
pub fn minimise_person(p: &mut pb::Person, mask: &FieldMask) -> BTreeSet<&'static str> {
    let mut c = Cut {
        mask,
        kept: BTreeSet::new(),
    };
    c.list(&mut p.names, |c, n| {
        c.field("person.names.given_names", &mut n.given_names);
        c.field("person.names.family_name", &mut n.family_name);
        if n.given_names.is_empty() && n.family_name.is_empty() {
            n.r#use = 0;
        }
        c.field("person.names.use", &mut n.r#use);
    });
    c.field("person.date_of_birth", &mut p.date_of_birth);
    c.list(&mut p.addresses, |c, a| {
        c.field("person.addresses.lines", &mut a.lines);
        c.field("person.addresses.locality", &mut a.locality);
        c.field("person.addresses.postcode", &mut a.postcode);
        c.field("person.addresses.from", &mut a.from);
        c.field("person.addresses.to", &mut a.to);
        if a.lines.is_empty() && a.locality.is_empty() && a.postcode.is_empty() {
            a.from = None;
            a.to = None;
        }
    });
    c.list(&mut p.identifiers, |c, i| {
        c.field("person.identifiers.value", &mut i.value);
        if i.value.is_empty() {
            // A scheme without its value discloses nothing useful and
            // would survive as a non-empty husk.
            i.scheme = 0;
            i.system.clear();
        }
        c.field("person.identifiers.scheme", &mut i.scheme);
        c.field("person.identifiers.system", &mut i.system);
    });
    c.field("person.gender", &mut p.gender);
    c.kept
}

/// Minimises a record; `None` when nothing of its body may be sent.
pub fn minimise_record(r: &mut pb::Record, mask: &FieldMask) -> Option<BTreeSet<&'static str>> {
    let mut c = Cut {
        mask,
        kept: BTreeSet::new(),
    };
    match r.body.as_mut()? {
        Body::Incident(i) => {
            c.field("incident.reference", &mut i.reference);
            c.field("incident.category", &mut i.category);
            c.field("incident.summary", &mut i.summary);
            c.field("incident.occurred_at", &mut i.occurred_at);
            c.field("incident.location", &mut i.location);
            c.field("incident.person_role", &mut i.person_role);
        }
        Body::WarningMarker(w) => {
            c.field("warning_marker.marker", &mut w.marker);
            c.field("warning_marker.description", &mut w.description);
            c.field("warning_marker.from", &mut w.from);
            c.field("warning_marker.until", &mut w.until);
        }
        Body::SafeguardingConcern(s) => {
            c.field("safeguarding_concern.category", &mut s.category);
            c.field("safeguarding_concern.summary", &mut s.summary);
            c.field("safeguarding_concern.raised_at", &mut s.raised_at);
            c.field("safeguarding_concern.status", &mut s.status);
            c.field("safeguarding_concern.lead", &mut s.lead);
        }
        Body::RiskAssessment(a) => {
            c.field("risk_assessment.framework", &mut a.framework);
            c.field("risk_assessment.level", &mut a.level);
            c.field("risk_assessment.assessed_at", &mut a.assessed_at);
            c.field("risk_assessment.summary", &mut a.summary);
        }
        Body::Relationship(rel) => {
            c.field("relationship.related_person_id", &mut rel.related_person_id);
            c.field("relationship.relationship", &mut rel.relationship);
            c.field("relationship.related_name", &mut rel.related_name);
        }
    }
    if c.kept.is_empty() {
        None
    } else {
        Some(c.kept)
    }
}

#[cfg(test)]
mod tests;
