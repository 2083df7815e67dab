//! The conformance binary must catch a broken gateway and name what it broke.
//!
//! A sound test double of the three `liaison.v1` services passes every check;
//! the same double with one flaw (a field leaked outside the agreement, a
//! share answered without a receipt, an expired token accepted) must make the
//! binary exit 1 with exactly that check failed, in its table and its JUnit
//! report. The flaws live here, in test code, never in the shipped binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use liaison_ledger::merkle;
use liaison_proto::v1::{
    self as pb,
    admin_service_server::{AdminService, AdminServiceServer},
    oversight_service_server::{OversightService, OversightServiceServer},
    sharing_service_server::{SharingService, SharingServiceServer},
};
use parking_lot::Mutex;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, transport::Server};
use tonic_types::{ErrorDetails, StatusExt};

const ISA: &str = "met-hackney-children";
const DATASET: &str = "met-police.records";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    LeaksGender,
    LeaksToWrongRole,
    NoReceipt,
    AcceptsExpired,
}

#[derive(Debug, Clone)]
struct Caller {
    agency: String,
    roles: Vec<String>,
}

#[derive(Debug, Clone)]
struct Double {
    flaw: Flaw,
    tokens: Arc<BTreeMap<String, (Caller, u64)>>,
    ledger: Arc<Mutex<Vec<pb::LedgerEntry>>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT-shaped token; the double knows its tokens by value, so the
/// signature is only there for the forged-signature check to alter.
fn jwt(sub: &str, exp: u64) -> String {
    let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(serde_json::json!({"alg": "ES256", "kid": "double"})),
        enc(serde_json::json!({"sub": sub, "exp": exp, "aud": "liaison"})),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

fn error(code: Code, reason: &str, field: Option<&str>, entry: Option<&str>) -> Status {
    let metadata: std::collections::HashMap<String, String> = entry
        .map(|e| [("audit_entry_id".to_owned(), e.to_owned())].into())
        .unwrap_or_default();
    let mut details = ErrorDetails::with_error_info(reason, "liaison.v1", metadata);
    if let Some(f) = field {
        details.add_bad_request_violation(f, "is required");
    }
    Status::with_error_details(code, reason.to_lowercase(), details)
}

impl Double {
    fn new(flaw: Flaw) -> (Self, BTreeMap<&'static str, String>) {
        let caller = |agency: &str, roles: &[&str]| Caller {
            agency: agency.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        let far = now() + 3600;
        let issued = [
            (
                "sharer",
                jwt("sam", far),
                caller("hackney-childrens", &["social-worker"]),
                far,
            ),
            (
                "overseer",
                jwt("priya", far),
                caller("hackney-childrens", &["dpo"]),
                far,
            ),
            (
                "outsider",
                jwt("jordan", far),
                caller("met-police", &["officer"]),
                far,
            ),
            (
                "expired",
                jwt("sam", now() - 3600),
                caller("hackney-childrens", &["social-worker"]),
                now() - 3600,
            ),
        ];
        let mut tokens = BTreeMap::new();
        let mut parts = BTreeMap::new();
        for (part, token, who, exp) in issued {
            tokens.insert(token.clone(), (who, exp));
            parts.insert(part, token);
        }
        let double = Self {
            flaw,
            tokens: Arc::new(tokens),
            ledger: Arc::default(),
        };
        (double, parts)
    }

    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let Some(value) = req.metadata().get("authorization") else {
            return Err(error(Code::Unauthenticated, "TOKEN_MISSING", None, None));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let Some((caller, exp)) = self.tokens.get(token) else {
            return Err(error(Code::Unauthenticated, "TOKEN_INVALID", None, None));
        };
        if *exp < now() && self.flaw != Flaw::AcceptsExpired {
            return Err(error(Code::Unauthenticated, "TOKEN_EXPIRED", None, None));
        }
        Ok(caller.clone())
    }

    fn append(&self, method: &str, allowed: bool) -> pb::Receipt {
        let mut ledger = self.ledger.lock();
        let sequence = ledger.len() as u64;
        let entry_id = format!("entry-{sequence}");
        let canonical =
            format!("{{\"entry_id\":\"{entry_id}\",\"method\":\"{method}\"}}").into_bytes();
        let leaf_hash = hex::encode(merkle::leaf_hash(&canonical));
        ledger.push(pb::LedgerEntry {
            entry: Some(pb::AuditEntry {
                entry_id: entry_id.clone(),
                method: method.into(),
                allowed,
                outcome: if allowed {
                    pb::AuditOutcome::Disclosed
                } else {
                    pb::AuditOutcome::Denied
                } as i32,
                ..Default::default()
            }),
            sequence,
            leaf_hash: leaf_hash.clone(),
            canonical,
        });
        pb::Receipt {
            entry_id,
            sequence,
            leaf_hash,
            recorded_at: None,
        }
    }

    fn leaves(&self, size: usize) -> Vec<merkle::Hash> {
        let ledger = self.ledger.lock();
        ledger
            .iter()
            .take(size)
            .map(|e| merkle::leaf_hash(&e.canonical))
            .collect()
    }

    /// Validation and policy, in the gateway's order, recording refusals.
    fn share<T>(
        &self,
        req: &Request<T>,
        context: Option<&pb::ShareContext>,
        method: &str,
    ) -> Result<Option<pb::Receipt>, Status> {
        let caller = self.caller(req)?;
        let c = context.cloned().unwrap_or_default();
        for (value, field, reason) in [
            (&c.purpose, "context.purpose", "PURPOSE_MISSING"),
            (
                &c.justification,
                "context.justification",
                "JUSTIFICATION_MISSING",
            ),
            (&c.isa_id, "context.isa_id", "ISA_MISSING"),
        ] {
            if value.is_empty() {
                return Err(error(Code::InvalidArgument, reason, Some(field), None));
            }
        }
        let refusal = if c.isa_id != ISA {
            Some("ISA_UNKNOWN")
        } else if caller.agency != "hackney-childrens" {
            Some("AGENCY_NOT_RECIPIENT")
        } else if c.purpose != "safeguarding-children" {
            Some("PURPOSE_NOT_PERMITTED")
        } else {
            None
        };
        if let Some(reason) = refusal {
            let receipt = self.append(method, false);
            return Err(error(
                Code::PermissionDenied,
                reason,
                None,
                Some(&receipt.entry_id),
            ));
        }
        let receipt = self.append(method, true);
        Ok((self.flaw != Flaw::NoReceipt).then_some(receipt))
    }

    fn overseer<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.caller(req)?.roles.iter().any(|r| r == "dpo") {
            Ok(())
        } else {
            Err(error(
                Code::PermissionDenied,
                "FUNCTION_NOT_PERMITTED",
                None,
                None,
            ))
        }
    }
}

fn leah(flaw: Flaw) -> pb::Person {
    pb::Person {
        person_id: format!("{DATASET}:1"),
        names: vec![pb::PersonName {
            given_names: "Leah".into(),
            family_name: "Marsh".into(),
            r#use: 0,
        }],
        date_of_birth: Some(pb::Date {
            year: 2013,
            month: 5,
            day: 14,
        }),
        gender: if flaw == Flaw::LeaksGender {
            "F".into()
        } else {
            String::new()
        },
        provenance: Some(pb::Provenance {
            agency_id: "met-police".into(),
            dataset_id: DATASET.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn agreement() -> pb::Agreement {
    pb::Agreement {
        isa_id: ISA.into(),
        version: 1,
        provider_agency_id: "met-police".into(),
        recipient_agency_ids: vec!["hackney-childrens".into()],
        purposes: vec!["safeguarding-children".into()],
        datasets: vec![pb::DatasetTerms {
            dataset_id: DATASET.into(),
            actions: vec!["search".into(), "read".into()],
            break_glass: vec![],
            roles: vec![
                pb::RoleFields {
                    role: "social-worker".into(),
                    fields: vec![
                        "person.names".into(),
                        "person.date_of_birth".into(),
                        "incident.category".into(),
                        "incident.summary".into(),
                    ],
                },
                pb::RoleFields {
                    role: "team-manager".into(),
                    fields: vec!["person.names".into(), "incident".into()],
                },
            ],
        }],
        ..Default::default()
    }
}

#[tonic::async_trait]
impl SharingService for Double {
    async fn list_datasets(
        &self,
        req: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        self.caller(&req)?;
        Ok(Response::new(pb::ListDatasetsResponse {
            grants: vec![pb::DatasetGrant {
                dataset_id: DATASET.into(),
                isa_id: ISA.into(),
                fields: vec![
                    "person.names".into(),
                    "person.date_of_birth".into(),
                    "incident.category".into(),
                    "incident.summary".into(),
                ],
                ..Default::default()
            }],
        }))
    }

    async fn search_persons(
        &self,
        req: Request<pb::SearchPersonsRequest>,
    ) -> Result<Response<pb::SearchPersonsResponse>, Status> {
        let receipt = self.share(&req, req.get_ref().context.as_ref(), "SearchPersons")?;
        Ok(Response::new(pb::SearchPersonsResponse {
            matches: vec![pb::PersonMatch {
                person: Some(leah(self.flaw)),
                confidence: 1.0,
                also_known_as: vec![],
            }],
            gaps: vec![],
            receipt,
        }))
    }

    async fn get_records(
        &self,
        req: Request<pb::GetRecordsRequest>,
    ) -> Result<Response<pb::GetRecordsResponse>, Status> {
        let receipt = self.share(&req, req.get_ref().context.as_ref(), "GetRecords")?;
        let record = pb::Record {
            record_id: "r1".into(),
            person_id: format!("{DATASET}:1"),
            kind: pb::RecordKind::Incident as i32,
            provenance: leah(Flaw::None).provenance,
            body: Some(pb::record::Body::Incident(pb::Incident {
                category: "missing-person".into(),
                summary: "reported missing, found safe".into(),
                location: if matches!(self.flaw, Flaw::LeaksGender | Flaw::LeaksToWrongRole) {
                    "Hackney Downs".into()
                } else {
                    String::new()
                },
                ..Default::default()
            })),
            ..Default::default()
        };
        Ok(Response::new(pb::GetRecordsResponse {
            person: Some(leah(self.flaw)),
            records: vec![record],
            gaps: vec![],
            receipt,
        }))
    }

    type SubscribeStream = tokio_stream::Empty<Result<pb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.caller(&req)?;
        Err(error(Code::Unimplemented, "NOT_IMPLEMENTED", None, None))
    }
}

#[tonic::async_trait]
impl OversightService for Double {
    async fn list_audit_entries(
        &self,
        req: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        self.overseer(&req)?;
        let r = req.into_inner();
        let after: usize = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse().map_err(|_| {
                error(
                    Code::InvalidArgument,
                    "INVALID_FIELD",
                    Some("page_token"),
                    None,
                )
            })?
        };
        let size = usize::try_from(r.page_size.max(1)).unwrap();
        let ledger = self.ledger.lock();
        let entries: Vec<_> = ledger.iter().skip(after).take(size).cloned().collect();
        let next = if after + entries.len() < ledger.len() {
            (after + entries.len()).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries,
            next_page_token: next,
        }))
    }

    async fn get_audit_entry(
        &self,
        req: Request<pb::GetAuditEntryRequest>,
    ) -> Result<Response<pb::GetAuditEntryResponse>, Status> {
        self.overseer(&req)?;
        let ledger = self.ledger.lock();
        let entry = ledger
            .iter()
            .find(|e| e.entry.as_ref().unwrap().entry_id == req.get_ref().entry_id)
            .cloned()
            .ok_or_else(|| error(Code::NotFound, "NOT_FOUND", None, None))?;
        Ok(Response::new(pb::GetAuditEntryResponse {
            entry: Some(entry),
        }))
    }

    async fn get_tree_head(
        &self,
        req: Request<pb::GetTreeHeadRequest>,
    ) -> Result<Response<pb::GetTreeHeadResponse>, Status> {
        self.overseer(&req)?;
        let leaves = self.leaves(usize::MAX);
        Ok(Response::new(pb::GetTreeHeadResponse {
            head: Some(pb::TreeHead {
                tree_size: leaves.len() as u64,
                root_hash: hex::encode(merkle::root(&leaves)),
                ..Default::default()
            }),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        self.overseer(&req)?;
        let r = req.into_inner();
        let index = self
            .ledger
            .lock()
            .iter()
            .position(|e| e.entry.as_ref().unwrap().entry_id == r.entry_id)
            .ok_or_else(|| error(Code::NotFound, "NOT_FOUND", None, None))?;
        let size = if r.tree_size == 0 {
            usize::MAX
        } else {
            usize::try_from(r.tree_size).unwrap()
        };
        let leaves = self.leaves(size);
        let path = merkle::inclusion_proof(index as u64, &leaves).unwrap();
        Ok(Response::new(pb::GetInclusionProofResponse {
            leaf_index: index as u64,
            tree_size: leaves.len() as u64,
            leaf_hash: hex::encode(leaves.get(index).unwrap()),
            audit_path: path.iter().map(hex::encode).collect(),
            root_hash: hex::encode(merkle::root(&leaves)),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        self.overseer(&req)?;
        let r = req.into_inner();
        let leaves = self.leaves(usize::try_from(r.second_size).unwrap());
        let first = leaves
            .get(..usize::try_from(r.first_size).unwrap())
            .unwrap();
        Ok(Response::new(pb::GetConsistencyProofResponse {
            first_size: r.first_size,
            second_size: leaves.len() as u64,
            proof: merkle::consistency_proof(r.first_size, &leaves)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
            first_root: hex::encode(merkle::root(first)),
            second_root: hex::encode(merkle::root(&leaves)),
        }))
    }

    async fn get_subject_access_report(
        &self,
        req: Request<pb::GetSubjectAccessReportRequest>,
    ) -> Result<Response<pb::GetSubjectAccessReportResponse>, Status> {
        self.overseer(&req)?;
        Ok(Response::new(pb::GetSubjectAccessReportResponse {
            person_id: req.into_inner().person_id,
            disclosures: vec![],
            withheld: vec![],
        }))
    }

    async fn restrict_entry(
        &self,
        req: Request<pb::RestrictEntryRequest>,
    ) -> Result<Response<pb::RestrictEntryResponse>, Status> {
        self.overseer(&req)?;
        Err(error(
            Code::PermissionDenied,
            "FUNCTION_NOT_PERMITTED",
            None,
            None,
        ))
    }

    async fn lift_restriction(
        &self,
        req: Request<pb::LiftRestrictionRequest>,
    ) -> Result<Response<pb::LiftRestrictionResponse>, Status> {
        self.overseer(&req)?;
        Err(error(
            Code::PermissionDenied,
            "FUNCTION_NOT_PERMITTED",
            None,
            None,
        ))
    }
}

#[tonic::async_trait]
impl AdminService for Double {
    async fn list_agencies(
        &self,
        req: Request<pb::ListAgenciesRequest>,
    ) -> Result<Response<pb::ListAgenciesResponse>, Status> {
        self.caller(&req)?;
        Ok(Response::new(pb::ListAgenciesResponse {
            agencies: vec![pb::Agency {
                agency_id: "hackney-childrens".into(),
                ..Default::default()
            }],
        }))
    }

    async fn list_issuers(
        &self,
        req: Request<pb::ListIssuersRequest>,
    ) -> Result<Response<pb::ListIssuersResponse>, Status> {
        self.caller(&req)?;
        Ok(Response::new(pb::ListIssuersResponse {
            issuers: vec![pb::Issuer {
                issuer_url: "https://idp.hackney.example".into(),
                ..Default::default()
            }],
        }))
    }

    async fn list_agreements(
        &self,
        req: Request<pb::ListAgreementsRequest>,
    ) -> Result<Response<pb::ListAgreementsResponse>, Status> {
        self.caller(&req)?;
        Ok(Response::new(pb::ListAgreementsResponse {
            agreements: vec![agreement()],
        }))
    }

    async fn get_agreement(
        &self,
        req: Request<pb::GetAgreementRequest>,
    ) -> Result<Response<pb::GetAgreementResponse>, Status> {
        self.caller(&req)?;
        if req.get_ref().isa_id != ISA {
            return Err(error(Code::NotFound, "NOT_FOUND", None, None));
        }
        Ok(Response::new(pb::GetAgreementResponse {
            agreement: Some(agreement()),
        }))
    }

    async fn list_agreement_versions(
        &self,
        req: Request<pb::ListAgreementVersionsRequest>,
    ) -> Result<Response<pb::ListAgreementVersionsResponse>, Status> {
        self.caller(&req)?;
        Ok(Response::new(pb::ListAgreementVersionsResponse {
            versions: vec![pb::AgreementVersion {
                agreement: Some(agreement()),
                ..Default::default()
            }],
        }))
    }

    // The checker never changes agreements: a double that refuses every
    // change is as good as one that accepts them.
    async fn propose_agreement(
        &self,
        req: Request<pb::ProposeAgreementRequest>,
    ) -> Result<Response<pb::ProposeAgreementResponse>, Status> {
        self.caller(&req)?;
        Err(error(
            Code::PermissionDenied,
            "FUNCTION_NOT_PERMITTED",
            None,
            None,
        ))
    }

    async fn set_agreement_status(
        &self,
        req: Request<pb::SetAgreementStatusRequest>,
    ) -> Result<Response<pb::SetAgreementStatusResponse>, Status> {
        self.caller(&req)?;
        Err(error(
            Code::PermissionDenied,
            "FUNCTION_NOT_PERMITTED",
            None,
            None,
        ))
    }

    async fn list_issuer_versions(
        &self,
        req: Request<pb::ListIssuerVersionsRequest>,
    ) -> Result<Response<pb::ListIssuerVersionsResponse>, Status> {
        self.caller(&req)?;
        Ok(Response::new(pb::ListIssuerVersionsResponse::default()))
    }

    async fn propose_issuer(
        &self,
        req: Request<pb::ProposeIssuerRequest>,
    ) -> Result<Response<pb::ProposeIssuerResponse>, Status> {
        self.caller(&req)?;
        Err(error(
            Code::PermissionDenied,
            "FUNCTION_NOT_PERMITTED",
            None,
            None,
        ))
    }

    async fn set_issuer_status(
        &self,
        req: Request<pb::SetIssuerStatusRequest>,
    ) -> Result<Response<pb::SetIssuerStatusResponse>, Status> {
        self.caller(&req)?;
        Err(error(
            Code::PermissionDenied,
            "FUNCTION_NOT_PERMITTED",
            None,
            None,
        ))
    }
}

struct Run {
    code: i32,
    table: String,
    junit: String,
}

/// Serves a double with `flaw` and runs the binary against it.
async fn run_against(flaw: Flaw) -> Run {
    run_with_gaps(flaw, None).await
}

/// As [`run_against`], with an expectations file of known gaps.
async fn run_with_gaps(flaw: Flaw, gaps: Option<&str>) -> Run {
    let (double, tokens) = Double::new(flaw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .add_service(SharingServiceServer::new(double.clone()))
            .add_service(OversightServiceServer::new(double.clone()))
            .add_service(AdminServiceServer::new(double))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut principals = String::new();
    for (part, token) in &tokens {
        principals.push_str(&format!("[principals.{part}]\ntoken = \"{token}\"\n\n"));
    }
    std::fs::write(dir.path().join("principals.toml"), principals).unwrap();
    let junit = dir.path().join("junit.xml");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_liaison-conformance"));
    if let Some(gaps) = gaps {
        std::fs::write(dir.path().join("gaps.toml"), gaps).unwrap();
        command
            .arg("--expectations")
            .arg(dir.path().join("gaps.toml"));
    }
    let out = command
        .arg("--target")
        .arg(format!("http://{addr}"))
        .arg("--principals")
        .arg(dir.path().join("principals.toml"))
        .arg("--allow-writes")
        .arg("--junit")
        .arg(&junit)
        .output()
        .await
        .unwrap();
    server.abort();
    Run {
        code: out.status.code().unwrap_or(-1),
        table: String::from_utf8_lossy(&out.stdout).into_owned(),
        junit: std::fs::read_to_string(&junit).unwrap_or_default(),
    }
}

fn failed(run: &Run) -> Vec<String> {
    run.table
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Asserts the run failed exactly `checks`, in the table and in JUnit.
fn assert_caught(run: &Run, checks: &[&str]) {
    assert_eq!(run.code, 1, "{}", run.table);
    assert_eq!(failed(run), checks, "{}", run.table);
    for check in checks {
        let case = run
            .junit
            .split("<testcase")
            .find(|c| c.contains(&format!("name=\"{check}\"")))
            .unwrap_or_else(|| panic!("no JUnit case for {check}:\n{}", run.junit));
        assert!(
            case.contains("<failure"),
            "{check} is not a failure in JUnit:\n{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_double_passes_every_check() {
    let run = run_against(Flaw::None).await;
    assert_eq!(run.code, 0, "{}", run.table);
    assert!(failed(&run).is_empty(), "{}", run.table);
    assert!(
        run.table.contains("PASS   minimise.records"),
        "{}",
        run.table
    );
    assert!(run.junit.contains("<testsuites"), "{}", run.junit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_outside_the_agreement_fails_minimisation() {
    let run = run_against(Flaw::LeaksGender).await;
    assert_caught(&run, &["minimise.search", "minimise.records"]);
    assert!(run.table.contains("person.gender"), "{}", run.table);
    assert!(run.table.contains("incident.location"), "{}", run.table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_granted_to_another_role_fails_minimisation() {
    let run = run_against(Flaw::LeaksToWrongRole).await;
    assert_caught(&run, &["minimise.records"]);
    assert!(
        run.table
            .contains("incident.location (not granted to the caller's roles)"),
        "{}",
        run.table
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_without_a_receipt_fails_the_receipt_checks() {
    let run = run_against(Flaw::NoReceipt).await;
    assert_caught(
        &run,
        &[
            "contract.sharing.search_persons",
            "contract.sharing.get_records",
            "receipts.search",
            "receipts.records",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_expired_token_fails_authentication() {
    let run = run_against(Flaw::AcceptsExpired).await;
    assert_caught(&run, &["authn.expired_token"]);
}

const EXPIRED_GAP: &str =
    "[[gap]]\ncase = \"authn.expired_token\"\nreason = \"issuer clock is wrong; OPS-1\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_gap_keeps_the_run_green_and_fails_it_once_fixed() {
    let run = run_with_gaps(Flaw::AcceptsExpired, Some(EXPIRED_GAP)).await;
    assert_eq!(run.code, 0, "{}", run.table);
    assert!(
        run.table.contains("XFAIL  authn.expired_token"),
        "{}",
        run.table
    );
    assert!(
        run.table.contains("known gap: issuer clock is wrong"),
        "{}",
        run.table
    );

    let fixed = run_with_gaps(Flaw::None, Some(EXPIRED_GAP)).await;
    assert_eq!(fixed.code, 1, "{}", fixed.table);
    assert!(
        fixed.table.contains("XPASS  authn.expired_token"),
        "{}",
        fixed.table
    );
}
