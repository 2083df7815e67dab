//! Which field paths a person or record actually carries, in the notation
//! agreements use (`person.names`, `incident.summary`), so what came back
//! can be compared with what the agreement releases. A field is disclosed
//! when it holds anything other than its default.

use std::collections::BTreeSet;

use liaison_proto::v1::{self as pb, record::Body};

/// Fields that travel with every person or record whatever the agreement
/// says: identity of the item, provenance and handling. They hold no personal
/// data beyond a reference (`connectors/SPEC.md`, the gateway's envelope).
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

fn set<T: Default + PartialEq>(out: &mut BTreeSet<String>, path: &str, value: &T) {
    if *value != T::default() {
        out.insert(path.to_owned());
    }
}

/// Disclosed field paths of a person, envelope excluded.
pub fn person(p: &pb::Person) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for n in &p.names {
        set(&mut out, "person.names.given_names", &n.given_names);
        set(&mut out, "person.names.family_name", &n.family_name);
        set(&mut out, "person.names.use", &n.r#use);
    }
    set(&mut out, "person.date_of_birth", &p.date_of_birth);
    for a in &p.addresses {
        set(&mut out, "person.addresses.lines", &a.lines);
        set(&mut out, "person.addresses.locality", &a.locality);
        set(&mut out, "person.addresses.postcode", &a.postcode);
        set(&mut out, "person.addresses.from", &a.from);
        set(&mut out, "person.addresses.to", &a.to);
    }
    for i in &p.identifiers {
        set(&mut out, "person.identifiers.scheme", &i.scheme);
        set(&mut out, "person.identifiers.value", &i.value);
        set(&mut out, "person.identifiers.system", &i.system);
    }
    set(&mut out, "person.gender", &p.gender);
    out
}

/// Disclosed field paths of a record's body, envelope excluded.
pub fn record(r: &pb::Record) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match &r.body {
        Some(Body::Incident(i)) => {
            set(&mut out, "incident.reference", &i.reference);
            set(&mut out, "incident.category", &i.category);
            set(&mut out, "incident.summary", &i.summary);
            set(&mut out, "incident.occurred_at", &i.occurred_at);
            set(&mut out, "incident.location", &i.location);
            set(&mut out, "incident.person_role", &i.person_role);
        }
        Some(Body::WarningMarker(w)) => {
            set(&mut out, "warning_marker.marker", &w.marker);
            set(&mut out, "warning_marker.description", &w.description);
            set(&mut out, "warning_marker.from", &w.from);
            set(&mut out, "warning_marker.until", &w.until);
        }
        Some(Body::SafeguardingConcern(s)) => {
            set(&mut out, "safeguarding_concern.category", &s.category);
            set(&mut out, "safeguarding_concern.summary", &s.summary);
            set(&mut out, "safeguarding_concern.raised_at", &s.raised_at);
            set(&mut out, "safeguarding_concern.status", &s.status);
            set(&mut out, "safeguarding_concern.lead", &s.lead);
        }
        Some(Body::RiskAssessment(a)) => {
            set(&mut out, "risk_assessment.framework", &a.framework);
            set(&mut out, "risk_assessment.level", &a.level);
            set(&mut out, "risk_assessment.assessed_at", &a.assessed_at);
            set(&mut out, "risk_assessment.summary", &a.summary);
        }
        Some(Body::Relationship(rel)) => {
            set(
                &mut out,
                "relationship.related_person_id",
                &rel.related_person_id,
            );
            set(&mut out, "relationship.relationship", &rel.relationship);
            set(&mut out, "relationship.related_name", &rel.related_name);
        }
        None => {}
    }
    out
}

/// Whether `path` is released by a field set: named exactly, or under a
/// named message (`safeguarding_concern` releases
/// `safeguarding_concern.summary`).
pub fn released(path: &str, allowed: &BTreeSet<String>) -> bool {
    allowed.iter().any(|a| {
        path == a
            || path
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The fields an agreement releases for `dataset`, over every role: a client
/// cannot know which of its roles the gateway matched, so the check holds
/// the gateway to the widest grant, which any leak still exceeds.
pub fn agreement_fields(agreement: &pb::Agreement, dataset: Option<&str>) -> BTreeSet<String> {
    agreement
        .datasets
        .iter()
        .filter(|d| dataset.is_none_or(|id| d.dataset_id == id))
        .flat_map(|d| d.roles.iter())
        .flat_map(|r| r.fields.iter().cloned())
        .collect()
}

/// Paths in `disclosed` the field set does not release.
pub fn outside(disclosed: &BTreeSet<String>, allowed: &BTreeSet<String>) -> Vec<String> {
    disclosed
        .iter()
        .filter(|p| !released(p, allowed))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_message_name_releases_its_fields_and_nothing_beside_it() {
        let allowed: BTreeSet<String> = ["safeguarding_concern", "person.names"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(released("safeguarding_concern.summary", &allowed));
        assert!(released("person.names.family_name", &allowed));
        assert!(!released("person.names_extra", &allowed));
        assert!(!released("incident.summary", &allowed));
    }

    #[test]
    fn only_set_fields_count_as_disclosed() {
        let p = pb::Person {
            person_id: "x".into(),
            gender: "F".into(),
            names: vec![pb::PersonName {
                family_name: "Marsh".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got: Vec<_> = person(&p).into_iter().collect();
        assert_eq!(got, ["person.gender", "person.names.family_name"]);
    }
}
