use std::sync::Arc;

use liaison_policy::Action;
use liaison_proto::v1 as pb;

use super::*;
use crate::identity::Principal;

fn principal() -> Arc<Principal> {
    Arc::new(Principal {
        agency: "hackney-childrens".into(),
        subject: "u1".into(),
        display_name: None,
        roles: vec!["social-worker".into()],
        team: None,
        vetting: None,
        client_id: None,
        issuer: "https://idp".into(),
        is_system: false,
    })
}

fn context() -> pb::ShareContext {
    pb::ShareContext {
        purpose: "safeguarding-children".into(),
        justification: "Section 47 enquiry after a school referral".into(),
        isa_id: "met-hackney-children".into(),
        ..Default::default()
    }
}

fn search(context: Option<pb::ShareContext>, query: pb::PersonQuery) -> ShareCall {
    ShareCall {
        principal: principal(),
        method: "/liaison.v1.SharingService/SearchPersons",
        action: Action::Search,
        context,
        operation: Operation::Search {
            query: Some(query),
            dataset_ids: vec![],
            page_size: 0,
        },
        client_address: String::new(),
        trace_id: String::new(),
        deadline: None,
    }
}

fn marsh() -> pb::PersonQuery {
    pb::PersonQuery {
        family_name: "Marsh".into(),
        date_of_birth: Some(pb::Date {
            year: 2013,
            month: 5,
            day: 14,
        }),
        ..Default::default()
    }
}

fn missing(call: ShareCall) -> (String, &'static str) {
    match validate(call).unwrap_err() {
        GatewayError::ContextMissing { field, reason } => (field.to_owned(), reason),
        GatewayError::InvalidField { field, .. } => (field, "INVALID_FIELD"),
        GatewayError::QueryTooBroad => ("query".into(), "QUERY_TOO_BROAD"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_complete_search_validates() {
    let v = validate(search(Some(context()), marsh())).unwrap();
    assert_eq!(v.context.purpose, "safeguarding-children");
    assert!(!v.context.correlation_id.is_empty());
    assert!(matches!(
        v.operation,
        ValidOperation::Search { page_size: 20, .. }
    ));
}

#[test]
fn no_context_at_all_names_the_purpose() {
    assert_eq!(
        missing(search(None, marsh())),
        ("context.purpose".into(), "PURPOSE_MISSING")
    );
}

#[test]
fn each_context_field_is_required() {
    let mut c = context();
    c.purpose = "  ".into();
    assert_eq!(
        missing(search(Some(c), marsh())),
        ("context.purpose".into(), "PURPOSE_MISSING")
    );
    let mut c = context();
    c.justification = "n/a".into();
    assert_eq!(
        missing(search(Some(c), marsh())),
        ("context.justification".into(), "JUSTIFICATION_MISSING")
    );
    let mut c = context();
    c.isa_id = String::new();
    assert_eq!(
        missing(search(Some(c), marsh())),
        ("context.isa_id".into(), "ISA_MISSING")
    );
}

#[test]
fn oversized_fields_are_invalid() {
    let mut c = context();
    c.justification = "x".repeat(2_001);
    assert_eq!(missing(search(Some(c), marsh())).0, "context.justification");
    let mut c = context();
    c.case_reference = "x".repeat(201);
    assert_eq!(
        missing(search(Some(c), marsh())).0,
        "context.case_reference"
    );
}

#[test]
fn a_family_name_alone_is_too_broad() {
    let q = pb::PersonQuery {
        family_name: "Marsh".into(),
        ..Default::default()
    };
    assert_eq!(missing(search(Some(context()), q)).1, "QUERY_TOO_BROAD");
}

#[test]
fn an_identifier_alone_is_specific_enough() {
    let q = pb::PersonQuery {
        identifiers: vec![pb::Identifier {
            scheme: pb::IdentifierScheme::NhsNumber as i32,
            value: "9434765919".into(),
            system: String::new(),
        }],
        ..Default::default()
    };
    validate(search(Some(context()), q)).unwrap();
}

#[test]
fn an_impossible_date_of_birth_is_invalid() {
    let mut q = marsh();
    q.date_of_birth = Some(pb::Date {
        year: 2013,
        month: 2,
        day: 30,
    });
    assert_eq!(missing(search(Some(context()), q)).0, "query.date_of_birth");
    let mut q = marsh();
    q.date_of_birth = Some(pb::Date {
        year: 2013,
        month: 13,
        day: 1,
    });
    assert_eq!(missing(search(Some(context()), q)).0, "query.date_of_birth");
}

#[test]
fn page_size_is_bounded() {
    let mut call = search(Some(context()), marsh());
    call.operation = Operation::Search {
        query: Some(marsh()),
        dataset_ids: vec![],
        page_size: 101,
    };
    assert_eq!(missing(call).0, "page_size");
}

#[test]
fn a_read_needs_a_dataset_qualified_person_id() {
    let mut call = search(Some(context()), marsh());
    call.action = Action::Read;
    for bad in ["", "12345", ":12", "ds:"] {
        call.operation = Operation::Read {
            person_id: bad.into(),
            kinds: vec![],
        };
        assert_eq!(missing(call.clone()).0, "person_id", "{bad}");
    }
    call.operation = Operation::Read {
        person_id: "met-police.records:1001".into(),
        kinds: vec![pb::RecordKind::Incident as i32],
    };
    let v = validate(call.clone()).unwrap();
    match v.operation {
        ValidOperation::Read {
            dataset_id,
            source_id,
            kinds,
            ..
        } => {
            assert_eq!(dataset_id, "met-police.records");
            assert_eq!(source_id, "1001");
            assert_eq!(kinds, vec![pb::RecordKind::Incident]);
        }
        other => panic!("{other:?}"),
    }
    call.operation = Operation::Read {
        person_id: "met-police.records:1001".into(),
        kinds: vec![99],
    };
    assert_eq!(missing(call).0, "kinds");
}

#[test]
fn a_break_glass_reason_is_required_trimmed_and_at_least_20_characters() {
    let with = |reason: &str| {
        search(
            Some(pb::ShareContext {
                break_glass: Some(pb::BreakGlass {
                    reason: reason.into(),
                }),
                ..context()
            }),
            marsh(),
        )
    };
    let expected = (
        "context.break_glass.reason".to_owned(),
        "BREAK_GLASS_REASON_MISSING",
    );
    assert_eq!(missing(with("")), expected);
    assert_eq!(missing(with("   it is urgent!!    ")), expected);
    assert_eq!(missing(with(&"x".repeat(19))), expected);
    assert_eq!(
        missing(with(&"x".repeat(2_001))),
        ("context.break_glass.reason".to_owned(), "INVALID_FIELD")
    );
    let v = validate(with("  Child missing overnight with a high-risk adult \n")).unwrap();
    assert_eq!(
        v.context.break_glass.as_deref(),
        Some("Child missing overnight with a high-risk adult")
    );
    assert_eq!(
        validate(with(&"x".repeat(20)))
            .unwrap()
            .context
            .break_glass
            .map(|r| r.len()),
        Some(20)
    );
    let normal = validate(search(Some(context()), marsh())).unwrap();
    assert_eq!(normal.context.break_glass, None);
}

fn subscribe(person_ids: &[&str], resume: Resume) -> ShareCall {
    ShareCall {
        method: "/liaison.v1.SharingService/Subscribe",
        action: Action::Subscribe,
        operation: Operation::Subscribe {
            person_ids: person_ids.iter().map(|p| (*p).to_owned()).collect(),
            resume,
        },
        ..search(Some(context()), marsh())
    }
}

fn refused_field(call: ShareCall) -> String {
    match validate(call) {
        Err(GatewayError::InvalidField { field, .. }) => field,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_subscription_groups_its_people_by_dataset() {
    let v = validate(subscribe(
        &["police:1", "police:2", "council:C-9", "police:1"],
        Resume::Now,
    ))
    .unwrap();
    let ValidOperation::Subscribe { persons, cursors } = v.operation else {
        panic!("{:?}", v.operation);
    };
    assert_eq!(persons["police"], ["1", "2"].map(str::to_owned).into());
    assert_eq!(persons["council"], ["C-9"].map(str::to_owned).into());
    assert!(cursors.is_empty(), "from now");
}

#[test]
fn a_subscription_resumes_each_dataset_from_its_cursor() {
    let cursor = crate::subscription::SubscriptionCursor::new(
        [(
            "police".to_owned(),
            liaison_connectors::ChangeCursor("41".into()),
        )]
        .into(),
    );
    let v = validate(subscribe(&["police:1"], Resume::From(cursor.clone()))).unwrap();
    let ValidOperation::Subscribe { cursors, .. } = v.operation else {
        panic!("{:?}", v.operation);
    };
    assert_eq!(&cursors, cursor.datasets());
}

#[test]
fn a_subscription_needs_people_references_and_an_issued_cursor() {
    assert_eq!(refused_field(subscribe(&[], Resume::Now)), "person_ids");
    assert_eq!(
        refused_field(subscribe(&["no-dataset"], Resume::Now)),
        "person_ids"
    );
    let many: Vec<String> = (0..=MAX_FOLLOWED).map(|i| format!("police:{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(refused_field(subscribe(&many, Resume::Now)), "person_ids");
    assert_eq!(
        refused_field(subscribe(
            &["police:1"],
            Resume::Forged("is not a cursor this gateway issued".into())
        )),
        "resume_cursor"
    );
}
