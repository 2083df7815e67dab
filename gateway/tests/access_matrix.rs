//! The BOLA/BFLA access matrix (OWASP API1 and API5): every RPC of the
//! sharing, oversight and admin services, called by every kind of principal
//! against its own and another agency's objects, answers with exactly the
//! status the table below documents. The RPCs are read from the generated
//! descriptors, so a new RPC without a row fails the test rather than going
//! unchecked. The table is printed as markdown; `docs/threat-model.md`
//! carries the same table.
//!
//! Calls that would change state are made so they are refused (a stale
//! `base_version`), so no cell depends on the order the cells run in.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;
use liaison_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient,
    oversight_service_client::OversightServiceClient, sharing_service_client::SharingServiceClient,
};
use prost::Message as _;
use serde_json::json;
use tonic::{Code, Request};

/// A principal of an agency that is party to no agreement.
const NO_ISA_AGENCY: &str = "camden-health";
const NO_ISA_CLIENT: (&str, &str) = ("camden-gp-system", "test-fixture-secret-camden-gp");

/// The services whose every RPC must have a row.
const SERVICES: &[&str] = &["SharingService", "OversightService", "AdminService"];

/// The matrix's columns, in order.
const PRINCIPALS: [&str; 8] = [
    "unauthenticated",
    "Hackney social worker (ISA recipient)",
    "Met officer (provider)",
    "Hackney DPO",
    "Met DPO",
    "Met governance",
    "Hackney governance",
    "Camden social worker (no ISA)",
];

const OK: Code = Code::Ok;
const UNAUTH: Code = Code::Unauthenticated;
const DENIED: Code = Code::PermissionDenied;
const NOT_FOUND: Code = Code::NotFound;
const INVALID: Code = Code::InvalidArgument;
const ABORTED: Code = Code::Aborted;

/// One row: an RPC, the object it is aimed at, and the status each
/// principal must get, in the order of [`PRINCIPALS`].
struct Row {
    rpc: &'static str,
    target: &'static str,
    expect: [Code; 8],
}

const fn row(rpc: &'static str, target: &'static str, expect: [Code; 8]) -> Row {
    Row {
        rpc,
        target,
        expect,
    }
}

/// What each principal may do. Sharing is open only to a recipient role
/// named in an active agreement; oversight only to the `dpo`/`auditor`
/// roles, over their own agency's entries (another agency's entry is
/// `NOT_FOUND`, so its existence is not confirmed); the registers are
/// readable by any authenticated principal; changing an agreement is open
/// only to the providing agency's governance role (which here gets as far
/// as the stale version check, `ABORTED`).
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    row("SharingService/ListDatasets", "own grants",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("SharingService/SearchPersons", "Met records under the ISA",
        [UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED]),
    row("SharingService/GetRecords", "Leah under the ISA",
        [UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED]),
    row("SharingService/GetRecords", "a person in a dataset no ISA covers",
        [UNAUTH, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED]),
    row("SharingService/Subscribe", "Leah under the ISA",
        [UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED]),
    row("OversightService/ListAuditEntries", "own agency",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/ListAuditEntries", "the other agency (`agency_id`)",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetAuditEntry", "entry by a Hackney user",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetAuditEntry", "entry by a Met user",
        [UNAUTH, DENIED, DENIED, NOT_FOUND, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetTreeHead", "the ledger",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetInclusionProof", "entry by a Hackney user",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetInclusionProof", "entry by a Met user",
        [UNAUTH, DENIED, DENIED, NOT_FOUND, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetConsistencyProof", "the ledger",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/GetSubjectAccessReport", "Leah (disclosed to Hackney)",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/RestrictEntry", "entry by a Hackney user",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("OversightService/RestrictEntry", "entry by a Met user",
        [UNAUTH, DENIED, DENIED, NOT_FOUND, INVALID, DENIED, DENIED, DENIED]),
    row("OversightService/LiftRestriction", "entry by a Hackney user",
        [UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED, DENIED]),
    row("AdminService/ListAgencies", "the registry",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("AdminService/ListIssuers", "the registry",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("AdminService/ListAgreements", "the register",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("AdminService/GetAgreement", "the Met-provided ISA",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("AdminService/ListAgreementVersions", "the Met-provided ISA",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("AdminService/ProposeAgreement", "the Met-provided ISA, stale `base_version`",
        [UNAUTH, DENIED, DENIED, DENIED, DENIED, ABORTED, DENIED, DENIED]),
    row("AdminService/SetAgreementStatus", "the Met-provided ISA, stale `base_version`",
        [UNAUTH, DENIED, DENIED, DENIED, DENIED, ABORTED, DENIED, DENIED]),
    row("AdminService/ListIssuerVersions", "the Met issuer",
        [UNAUTH, OK, OK, OK, OK, OK, OK, OK]),
    row("AdminService/ProposeIssuer", "the Met issuer, stale `base_version`",
        [UNAUTH, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED]),
    row("AdminService/SetIssuerStatus", "the Met issuer, stale `base_version`",
        [UNAUTH, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED]),
];

/// Every `Service/Method` of the checked services, from the descriptors the
/// gateway is built from.
fn described_rpcs() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(liaison_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = BTreeSet::new();
    for file in set.file.iter().filter(|f| f.package() == "liaison.v1") {
        for service in file.service.iter().filter(|s| SERVICES.contains(&s.name())) {
            for method in &service.method {
                rpcs.insert(format!("{}/{}", service.name(), method.name()));
            }
        }
    }
    rpcs
}

/// The objects the cells aim at, made before the matrix runs.
struct Objects {
    leah: String,
    hackney_entry: String,
    met_entry: String,
    hackney_seq: u64,
    met_seq: u64,
    agreement_toml: String,
}

fn req<T>(token: Option<&str>, message: T) -> Request<T> {
    match token {
        Some(token) => authed(token, message),
        None => Request::new(message),
    }
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

const JUSTIFICATION: &str = "Annual review of the agreement's terms";

/// Makes one cell's call as the principal holding `token` (none: no
/// credentials) of `agency`, and answers the status it got.
async fn call(
    world: &World,
    objects: &Objects,
    (rpc, target): (&str, &str),
    (token, agency): (Option<&str>, &str),
) -> Code {
    let mut sharing = SharingServiceClient::new(world.channel.clone());
    let mut oversight = OversightServiceClient::new(world.channel.clone());
    let mut admin = AdminServiceClient::new(world.channel.clone());
    let entry = |t: &str| match t {
        "entry by a Hackney user" => objects.hackney_entry.clone(),
        "entry by a Met user" => objects.met_entry.clone(),
        other => panic!("no entry for target `{other}`"),
    };
    let seq = |t: &str| match t {
        "entry by a Hackney user" => objects.hackney_seq,
        "entry by a Met user" => objects.met_seq,
        other => panic!("no entry for target `{other}`"),
    };
    match rpc {
        "SharingService/ListDatasets" => code(
            sharing
                .list_datasets(req(token, pb::ListDatasetsRequest::default()))
                .await,
        ),
        "SharingService/SearchPersons" => code(
            sharing
                .search_persons(req(
                    token,
                    pb::SearchPersonsRequest {
                        context: Some(context("safeguarding-children")),
                        query: Some(leah()),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "SharingService/GetRecords" => {
            let person_id = match target {
                "Leah under the ISA" => objects.leah.clone(),
                _ => format!("{NO_ISA_AGENCY}.records:1"),
            };
            code(
                sharing
                    .get_records(req(
                        token,
                        pb::GetRecordsRequest {
                            context: Some(context("safeguarding-children")),
                            person_id,
                            ..Default::default()
                        },
                    ))
                    .await,
            )
        }
        "SharingService/Subscribe" => {
            let opened = sharing
                .subscribe(req(
                    token,
                    pb::SubscribeRequest {
                        context: Some(context("safeguarding-children")),
                        person_ids: vec![objects.leah.clone()],
                        ..Default::default()
                    },
                ))
                .await;
            match opened {
                Err(status) => status.code(),
                // An open stream's first message says it is open; a refusal
                // after the headers arrives in its place.
                Ok(response) => {
                    let mut stream = response.into_inner();
                    match tokio::time::timeout(Duration::from_secs(10), stream.message())
                        .await
                        .expect("a subscription's first message")
                    {
                        Ok(Some(_)) => Code::Ok,
                        Ok(None) => Code::Unknown,
                        Err(status) => status.code(),
                    }
                }
            }
        }
        "OversightService/ListAuditEntries" => {
            let agency_id = match target {
                "own agency" => String::new(),
                // Whoever asks, the agency named is another one.
                _ if agency == "hackney-childrens" => "met-police".into(),
                _ => "hackney-childrens".into(),
            };
            code(
                oversight
                    .list_audit_entries(req(
                        token,
                        pb::ListAuditEntriesRequest {
                            agency_id,
                            ..Default::default()
                        },
                    ))
                    .await,
            )
        }
        "OversightService/GetAuditEntry" => code(
            oversight
                .get_audit_entry(req(
                    token,
                    pb::GetAuditEntryRequest {
                        entry_id: entry(target),
                    },
                ))
                .await,
        ),
        "OversightService/RestrictEntry" => code(
            oversight
                .restrict_entry(req(
                    token,
                    pb::RestrictEntryRequest {
                        sequence: seq(target),
                        until: Some(prost_types::Timestamp {
                            seconds: time::OffsetDateTime::now_utc().unix_timestamp() + 86_400 * 30,
                            nanos: 0,
                        }),
                        reason: "Live investigation OP-HERON".into(),
                    },
                ))
                .await,
        ),
        "OversightService/LiftRestriction" => code(
            oversight
                .lift_restriction(req(
                    token,
                    pb::LiftRestrictionRequest {
                        sequence: seq(target),
                        reason: "Investigation OP-HERON closed".into(),
                    },
                ))
                .await,
        ),
        "OversightService/GetTreeHead" => code(
            oversight
                .get_tree_head(req(token, pb::GetTreeHeadRequest::default()))
                .await,
        ),
        "OversightService/GetInclusionProof" => code(
            oversight
                .get_inclusion_proof(req(
                    token,
                    pb::GetInclusionProofRequest {
                        entry_id: entry(target),
                        tree_size: 0,
                    },
                ))
                .await,
        ),
        "OversightService/GetConsistencyProof" => code(
            oversight
                .get_consistency_proof(req(
                    token,
                    pb::GetConsistencyProofRequest {
                        first_size: 1,
                        second_size: 0,
                    },
                ))
                .await,
        ),
        "OversightService/GetSubjectAccessReport" => code(
            oversight
                .get_subject_access_report(req(
                    token,
                    pb::GetSubjectAccessReportRequest {
                        person_id: objects.leah.clone(),
                    },
                ))
                .await,
        ),
        "AdminService/ListAgencies" => code(
            admin
                .list_agencies(req(token, pb::ListAgenciesRequest::default()))
                .await,
        ),
        "AdminService/ListIssuers" => code(
            admin
                .list_issuers(req(token, pb::ListIssuersRequest::default()))
                .await,
        ),
        "AdminService/ListAgreements" => code(
            admin
                .list_agreements(req(token, pb::ListAgreementsRequest::default()))
                .await,
        ),
        "AdminService/GetAgreement" => code(
            admin
                .get_agreement(req(token, pb::GetAgreementRequest { isa_id: ISA.into() }))
                .await,
        ),
        "AdminService/ListAgreementVersions" => code(
            admin
                .list_agreement_versions(req(
                    token,
                    pb::ListAgreementVersionsRequest { isa_id: ISA.into() },
                ))
                .await,
        ),
        "AdminService/ProposeAgreement" => code(
            admin
                .propose_agreement(req(
                    token,
                    pb::ProposeAgreementRequest {
                        agreement_toml: objects.agreement_toml.clone(),
                        base_version: 0,
                        justification: JUSTIFICATION.into(),
                    },
                ))
                .await,
        ),
        "AdminService/SetAgreementStatus" => code(
            admin
                .set_agreement_status(req(
                    token,
                    pb::SetAgreementStatusRequest {
                        isa_id: ISA.into(),
                        base_version: 0,
                        status: pb::AgreementStatus::Suspended as i32,
                        justification: JUSTIFICATION.into(),
                    },
                ))
                .await,
        ),
        "AdminService/ListIssuerVersions" => code(
            admin
                .list_issuer_versions(req(
                    token,
                    pb::ListIssuerVersionsRequest {
                        issuer_url: world.met.issuer.clone(),
                    },
                ))
                .await,
        ),
        "AdminService/ProposeIssuer" => code(
            admin
                .propose_issuer(req(
                    token,
                    pb::ProposeIssuerRequest {
                        issuer_toml: format!(
                            "[[issuer]]\nurl = \"{}\"\nagency = \"met-police\"\n\
                             audiences = [\"liaison\"]\nalgorithms = [\"RS256\"]\n\
                             allow_insecure_http = true\n",
                            world.met.issuer
                        ),
                        base_version: 0,
                        justification: JUSTIFICATION.into(),
                    },
                ))
                .await,
        ),
        "AdminService/SetIssuerStatus" => code(
            admin
                .set_issuer_status(req(
                    token,
                    pb::SetIssuerStatusRequest {
                        issuer_url: world.met.issuer.clone(),
                        base_version: 0,
                        status: pb::IssuerStatus::Suspended as i32,
                        justification: JUSTIFICATION.into(),
                    },
                ))
                .await,
        ),
        other => panic!("no call written for `{other}`"),
    }
}

fn name(code: Code) -> String {
    match code {
        Code::Ok => "OK".into(),
        Code::Unauthenticated => "UNAUTHENTICATED".into(),
        Code::PermissionDenied => "PERMISSION_DENIED".into(),
        Code::NotFound => "NOT_FOUND".into(),
        Code::InvalidArgument => "INVALID_ARGUMENT".into(),
        Code::Aborted => "ABORTED".into(),
        other => format!("{other:?}"),
    }
}

/// An entry's position in the ledger.
async fn seq_of(world: &World, entry_id: &str) -> u64 {
    world
        .gateway
        .ledger
        .get(entry_id)
        .await
        .unwrap()
        .unwrap()
        .seq
}

/// The first ledger entry made by a principal of `agency`.
/// The demo policy file's agreement, without the operator rules after it
/// (a proposal holds one agreement).
fn demo_agreement() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/demo/policy.toml")).unwrap();
    match text.find("\n[[rule]]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

async fn entry_by(world: &World, agency: &str) -> String {
    let ledger = &world.gateway.ledger;
    for seq in 1..=ledger.size().await.unwrap() {
        let stored = ledger.get_by_seq(seq).await.unwrap().unwrap();
        // A share, not the start-up imports recorded for the agency's issuer.
        let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
        if stored.index.agency == agency && entry.action == pb::AuditAction::Search as i32 {
            return stored.entry_id;
        }
    }
    panic!("no search recorded for a principal of `{agency}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_each_principal_exactly_as_the_matrix_documents() {
    // Every RPC has a row, and every row names an RPC that exists.
    let described = described_rpcs();
    let rowed: BTreeSet<String> = MATRIX.iter().map(|r| r.rpc.to_owned()).collect();
    assert_eq!(
        described, rowed,
        "the matrix and the services' descriptors disagree on which RPCs exist"
    );

    let camden = Idp::start(
        NO_ISA_AGENCY,
        "RS256",
        json!([client(
            NO_ISA_CLIENT.0,
            NO_ISA_CLIENT.1,
            "Dr Ann Lowe",
            &["social-worker"]
        )]),
    )
    .await
    .unwrap();
    let camden_issuer = camden.issuer.clone();
    let world = World::start_with(None, move |text| {
        format!(
            r#"{text}
[[agency]]
id = "{NO_ISA_AGENCY}"
display_name = "Camden Community Health"
kind = "health"
[[issuer]]
url = "{camden_issuer}"
agency = "{NO_ISA_AGENCY}"
audiences = ["liaison"]
algorithms = ["RS256"]
allow_insecure_http = true
"#
        )
    })
    .await;

    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let officer = world.met.token(OFFICER).await.unwrap();
    let council_dpo = world.hackney.token(COUNCIL_DPO).await.unwrap();
    let met_dpo = world
        .met
        .token(("met-dpo-console", "test-fixture-secret-met-dpo"))
        .await
        .unwrap();
    let met_ig = world.met.token(MET_GOVERNANCE).await.unwrap();
    let hackney_ig = world.hackney.token(HACKNEY_GOVERNANCE).await.unwrap();
    let no_isa = camden.token(NO_ISA_CLIENT).await.unwrap();
    let principals: [(Option<&str>, &str); 8] = [
        (None, ""),
        (Some(&sw), "hackney-childrens"),
        (Some(&officer), "met-police"),
        (Some(&council_dpo), "hackney-childrens"),
        (Some(&met_dpo), "met-police"),
        (Some(&met_ig), "met-police"),
        (Some(&hackney_ig), "hackney-childrens"),
        (Some(&no_isa), NO_ISA_AGENCY),
    ];

    // The objects: Leah, disclosed to Hackney, and one ledger entry made by
    // each agency's users (the officer's refused search is recorded too).
    let found = SharingServiceClient::new(world.channel.clone())
        .search_persons(authed(
            &sw,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let leah_id = found.matches[0].person.as_ref().unwrap().person_id.clone();
    let refused = SharingServiceClient::new(world.channel.clone())
        .search_persons(authed(
            &officer,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(code(refused), DENIED);
    let objects = Objects {
        leah: leah_id,
        hackney_entry: entry_by(&world, "hackney-childrens").await,
        met_entry: entry_by(&world, "met-police").await,
        hackney_seq: seq_of(&world, &entry_by(&world, "hackney-childrens").await).await,
        met_seq: seq_of(&world, &entry_by(&world, "met-police").await).await,
        agreement_toml: demo_agreement(),
    };

    let mut table = format!("| RPC | target | {} |\n", PRINCIPALS.join(" | "));
    table.push_str(&format!("|---|---|{}\n", "---|".repeat(PRINCIPALS.len())));
    let mut wrong = Vec::new();
    for row in MATRIX {
        let mut cells = Vec::new();
        for (i, principal) in principals.iter().enumerate() {
            let got = call(&world, &objects, (row.rpc, row.target), *principal).await;
            let want = row.expect[i];
            if got == want {
                cells.push(name(got));
            } else {
                cells.push(format!("**{} (documented {})**", name(got), name(want)));
                wrong.push(format!(
                    "{} [{}] as {}: got {}, documented {}",
                    row.rpc,
                    row.target,
                    PRINCIPALS[i],
                    name(got),
                    name(want)
                ));
            }
        }
        table.push_str(&format!(
            "| {} | {} | {} |\n",
            row.rpc,
            row.target,
            cells.join(" | ")
        ));
    }
    println!("{table}");
    assert!(
        wrong.is_empty(),
        "{} cells differ from the documented matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // An allowed subject access report shows the disclosures the caller's
    // agency is party to: the Met DPO sees Hackney's receipt of Met data.
    let report = OversightServiceClient::new(world.channel.clone())
        .get_subject_access_report(authed(
            &met_dpo,
            pb::GetSubjectAccessReportRequest {
                person_id: objects.leah.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!report.disclosures.is_empty());
    assert!(
        report
            .disclosures
            .iter()
            .all(|d| d.recipient_agency_id == "hackney-childrens"),
        "{:?}",
        report.disclosures
    );
    let report = OversightServiceClient::new(world.channel.clone())
        .get_subject_access_report(authed(
            &council_dpo,
            pb::GetSubjectAccessReportRequest {
                person_id: objects.leah.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!report.disclosures.is_empty());
    // An allowed listing holds only entries the caller's agency is party to.
    for (token, agency) in [
        (&council_dpo, "hackney-childrens"),
        (&met_dpo, "met-police"),
    ] {
        let entries = OversightServiceClient::new(world.channel.clone())
            .list_audit_entries(authed(token, pb::ListAuditEntriesRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert!(!entries.is_empty());
        for e in entries {
            let e = e.entry.unwrap();
            let by = e.principal.unwrap_or_default().agency_id;
            assert!(
                by == agency || e.provider_agency_id == agency,
                "{agency}'s DPO listed an entry by {by} of {}'s data",
                e.provider_agency_id
            );
        }
    }
    // The agency with no agreement is offered nothing to share.
    let grants = SharingServiceClient::new(world.channel.clone())
        .list_datasets(authed(&no_isa, pb::ListDatasetsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert!(grants.is_empty(), "{grants:?}");
}
