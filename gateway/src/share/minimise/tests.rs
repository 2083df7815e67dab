use std::collections::BTreeMap;

use liaison_proto::FILE_DESCRIPTOR_SET;
use prost::Message;

use super::*;

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn date() -> Option<pb::Date> {
    Some(pb::Date {
        year: 2013,
        month: 5,
        day: 14,
    })
}

fn full_person() -> pb::Person {
    pb::Person {
        person_id: "ds:1".into(),
        names: vec![pb::PersonName {
            given_names: "Leah".into(),
            family_name: "Marsh".into(),
            r#use: pb::NameUse::Usual as i32,
        }],
        date_of_birth: date(),
        addresses: vec![pb::Address {
            lines: vec!["1 Mare Street".into()],
            locality: "London".into(),
            postcode: "E8 1DY".into(),
            from: date(),
            to: date(),
        }],
        identifiers: vec![pb::Identifier {
            scheme: pb::IdentifierScheme::NhsNumber as i32,
            value: "9434765919".into(),
            system: "nhs".into(),
        }],
        gender: "F".into(),
        provenance: Some(pb::Provenance {
            agency_id: "met-police".into(),
            dataset_id: "ds".into(),
            ..Default::default()
        }),
        classification: pb::Classification::OfficialSensitive as i32,
    }
}

fn records() -> Vec<pb::Record> {
    let envelope = |n: u32, kind: pb::RecordKind, body: Body| pb::Record {
        record_id: format!("ds:r{n}"),
        person_id: "ds:1".into(),
        kind: kind as i32,
        provenance: None,
        classification: 2,
        handling_instructions: vec!["handle with care".into()],
        sensitivity_markers: vec![],
        body: Some(body),
    };
    vec![
        envelope(
            1,
            pb::RecordKind::Incident,
            Body::Incident(pb::Incident {
                reference: "CAD/1".into(),
                category: "domestic-abuse".into(),
                summary: "s".into(),
                occurred_at: ts(1),
                location: "l".into(),
                person_role: "witness".into(),
            }),
        ),
        envelope(
            2,
            pb::RecordKind::WarningMarker,
            Body::WarningMarker(pb::WarningMarker {
                marker: "weapons".into(),
                description: "d".into(),
                from: date(),
                until: date(),
            }),
        ),
        envelope(
            3,
            pb::RecordKind::SafeguardingConcern,
            Body::SafeguardingConcern(pb::SafeguardingConcern {
                category: "neglect".into(),
                summary: "s".into(),
                raised_at: ts(2),
                status: "open".into(),
                lead: "MASH".into(),
            }),
        ),
        envelope(
            4,
            pb::RecordKind::RiskAssessment,
            Body::RiskAssessment(pb::RiskAssessment {
                framework: "DASH".into(),
                level: pb::RiskLevel::High as i32,
                assessed_at: ts(3),
                summary: "s".into(),
            }),
        ),
        envelope(
            5,
            pb::RecordKind::Relationship,
            Body::Relationship(pb::Relationship {
                related_person_id: "ds:2".into(),
                relationship: "parent".into(),
                related_name: "Kerry Marsh".into(),
            }),
        ),
    ]
}

#[test]
fn every_model_field_is_either_releasable_or_envelope() {
    let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let messages: BTreeMap<String, Vec<String>> = fds
        .file
        .iter()
        .flat_map(|f| f.message_type.iter())
        .map(|m| {
            (
                m.name().to_owned(),
                m.field.iter().map(|f| f.name().to_owned()).collect(),
            )
        })
        .collect();
    let prefixes = [
        ("Person", "person"),
        ("PersonName", "person.names"),
        ("Address", "person.addresses"),
        ("Identifier", "person.identifiers"),
        ("Incident", "incident"),
        ("WarningMarker", "warning_marker"),
        ("SafeguardingConcern", "safeguarding_concern"),
        ("RiskAssessment", "risk_assessment"),
        ("Relationship", "relationship"),
        ("Record", "record"),
    ];
    let bodies = [
        "incident",
        "warning_marker",
        "safeguarding_concern",
        "risk_assessment",
        "relationship",
    ];
    let nested = ["person.names", "person.addresses", "person.identifiers"];
    for (message, prefix) in prefixes {
        for field in &messages[message] {
            let path = format!("{prefix}.{field}");
            if nested.contains(&path.as_str())
                || (message == "Record" && bodies.contains(&field.as_str()))
            {
                continue;
            }
            assert!(
                PATHS.contains(&path.as_str()) || ENVELOPE.contains(&path.as_str()),
                "`{path}` is neither minimised nor declared envelope"
            );
        }
    }
}

#[test]
fn an_empty_mask_leaves_only_the_envelope() {
    let mask = FieldMask::new(Vec::<String>::new());
    let mut p = full_person();
    assert!(minimise_person(&mut p, &mask).is_empty());
    assert_eq!(
        p,
        pb::Person {
            person_id: "ds:1".into(),
            provenance: full_person().provenance,
            classification: 2,
            ..Default::default()
        }
    );
    for mut r in records() {
        assert!(minimise_record(&mut r, &mask).is_none(), "{r:?}");
    }
}

#[test]
fn a_full_mask_changes_nothing() {
    let mask = FieldMask::new(PATHS.iter().copied());
    let mut p = full_person();
    minimise_person(&mut p, &mask);
    assert_eq!(p, full_person());
    for (mut r, original) in records().into_iter().zip(records()) {
        minimise_record(&mut r, &mask).unwrap();
        assert_eq!(r, original);
    }
}

#[test]
fn naming_a_message_releases_its_fields_and_nothing_else() {
    let mask = FieldMask::new(["person.names", "incident.category", "safeguarding_concern"]);
    let mut p = full_person();
    let kept = minimise_person(&mut p, &mask);
    assert_eq!(p.names, full_person().names);
    assert!(
        p.date_of_birth.is_none()
            && p.addresses.is_empty()
            && p.identifiers.is_empty()
            && p.gender.is_empty()
    );
    assert_eq!(
        kept.into_iter().collect::<Vec<_>>(),
        [
            "person.names.family_name",
            "person.names.given_names",
            "person.names.use"
        ]
    );
    let mut rs = records();
    let incident = minimise_record(&mut rs[0], &mask).unwrap();
    assert_eq!(
        incident.into_iter().collect::<Vec<_>>(),
        ["incident.category"]
    );
    let Some(Body::Incident(i)) = &rs[0].body else {
        panic!()
    };
    assert_eq!(
        i,
        &pb::Incident {
            category: "domestic-abuse".into(),
            ..Default::default()
        }
    );
    assert!(
        minimise_record(&mut rs[1], &mask).is_none(),
        "no warning_marker field is released"
    );
    assert_eq!(minimise_record(&mut rs[2], &mask).unwrap().len(), 5);
}

#[test]
fn an_identifier_value_without_release_takes_its_scheme_with_it() {
    let mask = FieldMask::new(["person.identifiers.scheme"]);
    let mut p = full_person();
    minimise_person(&mut p, &mask);
    assert!(p.identifiers.is_empty());
}

#[test]
fn read_payloads_are_minimised_per_dataset_and_disclosures_name_what_left() {
    let mut engine_masks = BTreeMap::new();
    let decision = Decision {
        effect: liaison_policy::Effect::Allow,
        deny: None,
        matched: vec![],
        mask: FieldMask::new(["person.names", "incident.category"]),
        break_glass: false,
        withheld: vec![],
        obligations: vec![],
        policy_version: String::new(),
        isa_version: None,
        legal_basis: None,
    };
    engine_masks.insert("ds".to_owned(), Arc::new(decision));
    let mut other = records();
    other[0].record_id = "elsewhere:9".into();
    let mut payload = Payload::Read {
        person: Some(full_person()),
        records: vec![records()[0].clone(), other[0].clone(), records()[1].clone()],
        gaps: vec![],
    };
    let Minimised {
        disclosures,
        withheld,
    } = minimise_payload(&mut payload, &engine_masks);
    assert!(withheld.is_empty(), "{withheld:?}");
    let Payload::Read {
        person, records, ..
    } = &payload
    else {
        panic!()
    };
    assert_eq!(
        records.len(),
        1,
        "only the incident of the allowed dataset remains"
    );
    assert!(person.as_ref().unwrap().date_of_birth.is_none());
    assert_eq!(disclosures.len(), 1);
    assert_eq!(disclosures[0].record_ids, vec!["ds:r1".to_owned()]);
    assert_eq!(
        disclosures[0].fields,
        vec![
            "incident.category",
            "person.names.family_name",
            "person.names.given_names",
            "person.names.use"
        ]
    );
    assert_eq!(disclosures[0].digest.len(), 64);
}

#[test]
fn records_carrying_a_withheld_marker_are_not_sent_and_are_counted() {
    let decision = Decision {
        effect: liaison_policy::Effect::Allow,
        deny: None,
        matched: vec![],
        mask: FieldMask::new([
            "person.names",
            "incident",
            "warning_marker",
            "safeguarding_concern",
        ]),
        break_glass: false,
        withheld: vec![liaison_policy::Withholding {
            marker: "witness-protection".into(),
            rule_id: "no-witness-protection".into(),
        }],
        obligations: vec![],
        policy_version: String::new(),
        isa_version: None,
        legal_basis: None,
    };
    let masks = BTreeMap::from([("ds".to_owned(), Arc::new(decision))]);
    let mut marked = records();
    marked.truncate(3);
    marked[0].sensitivity_markers = vec![
        "child-sexual-exploitation".into(),
        "witness-protection".into(),
    ];
    marked[1].sensitivity_markers = vec!["witness-protection".into()];
    // A marker no rule names changes nothing.
    marked[2].sensitivity_markers = vec!["unheard-of".into()];
    let kept_id = marked[2].record_id.clone();
    let mut payload = Payload::Read {
        person: Some(full_person()),
        records: marked,
        gaps: vec![],
    };
    let Minimised {
        disclosures,
        withheld,
    } = minimise_payload(&mut payload, &masks);
    let Payload::Read { records, .. } = &payload else {
        panic!()
    };
    let sent: Vec<&str> = records.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(sent, vec![kept_id.as_str()]);
    assert_eq!(disclosures[0].record_ids, vec![kept_id.clone()]);
    assert_eq!(
        withheld,
        vec![pb::WithheldRecords {
            dataset_id: "ds".into(),
            marker: "witness-protection".into(),
            rule_id: "no-witness-protection".into(),
            records: 2,
        }]
    );
}
