//! Two gateways federate on loopback, each a real `liaison serve` process
//! with its own agency's identity provider (the oidc-provider harness):
//!
//! - gateway B, a police force, holds Wayne Doyle in its records system
//!   (the SQL connector) and trusts the council's provider for the
//!   council gateway's system client;
//! - gateway A, a council, has no record of him: its own source is the
//!   police referrals its MASH holds (a CSV export), and a `liaison`
//!   connector reaches B.
//!
//! A council social worker at A finds him through B; both ledgers hold
//! their half of the share under one correlation id, B's naming A's system
//! client as principal and the social worker as `on_behalf_of`. When B's
//! agreement does not cover the purpose, B refuses, A answers with a gap
//! naming B as the source that declined, and both ledgers record it. With
//! B stalled, and then stopped, A answers within its deadline with B as a
//! gap. The connector kit runs through a liaison connector against B too;
//! the checks a peer answers as any source must pass, and the rest fail
//! for the peer's own documented reasons.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod process;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use liaison_conformance::kit::{KitExpectations, KitReport, run_kit};
use liaison_conformance::oidc::{TestProvider, client};
use liaison_connectors::request::{ShareRequest, with_share_request};
use liaison_connectors::synthetic::council::write_council_export;
use liaison_connectors::synthetic::generate_police_rms;
use liaison_connectors::{
    BoxFuture, Connector, ConnectorConfig, ConnectorError, DatasetDescriptor, Fetched, Found,
    PersonQuery, Registry,
};
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use prost::Message;
use serde_json::json;
use tokio::process::{Child, Command};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

const SOCIAL_WORKER: (&str, &str) = ("hackney-social-worker", "sw-secret-1");
const FEDERATION: (&str, &str) = ("hackney-liaison-federation", "fed-secret-1");
const LOCAL_ISA: &str = "hackney-met-federated";
const REMOTE_ISA: &str = "met-hackney-children";
const FEDERATED: &str = "met-police.federated";
/// A's connector deadline for the whole share (`connector_deadline_ms`).
const A_DEADLINE_MS: u64 = 2_500;

const FIELDS: &str = r#"fields = [
    "person.names", "person.date_of_birth", "person.addresses",
    "incident.category", "incident.occurred_at", "incident.summary", "incident.person_role",
    "warning_marker.marker", "safeguarding_concern",
    "risk_assessment.framework", "risk_assessment.level", "risk_assessment.assessed_at",
]"#;

fn agreement(id: &str, purposes: &str, datasets: &[&str]) -> String {
    let mut out = format!(
        r#"
[[agreement]]
id = "{id}"
version = 1
title = "Metropolitan Police and Hackney: safeguarding children ({id})"
provider = "met-police"
recipients = ["hackney-childrens"]
purposes = {purposes}
legal_basis = "Children Act 1989 s.47; DPA 2018 s.35"
valid_from = 2026-01-01
valid_until = 2028-12-31
review_date = 2027-06-30
status = "active"
dpo_contacts = ["dpo@met.police.example"]
"#
    );
    for dataset in datasets {
        out.push_str(&format!(
            "\n[[agreement.datasets]]\ndataset = \"{dataset}\"\nactions = [\"search\", \"read\"]\n\n\
             [[agreement.datasets.roles]]\nrole = \"social-worker\"\n{FIELDS}\n"
        ));
    }
    out
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../connectors/examples")
        .join(name)
        .display()
        .to_string()
}

fn head(agencies_issuers: &str, listen: &str) -> String {
    format!(
        r#"version = 1

[server]
listen = "{listen}"
connector_deadline_ms = {A_DEADLINE_MS}

[ledger]
url = "sqlite://ledger.db"

[policy]
file = "policy.toml"

[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"

[[agency]]
id = "hackney-childrens"
display_name = "Hackney Children and Families Service"
kind = "local-authority"
{agencies_issuers}"#
    )
}

fn issuer(provider: &TestProvider, agency: &str) -> String {
    format!(
        "\n[[issuer]]\nurl = \"{}\"\nagency = \"{agency}\"\naudiences = [\"liaison\"]\n\
         algorithms = [\"ES256\"]\nallow_insecure_http = true\n",
        provider.issuer
    )
}

struct Gateway {
    addr: String,
    dir: PathBuf,
    child: Child,
}

impl Gateway {
    async fn start(dir: PathBuf, config: &str) -> Self {
        std::fs::write(dir.join("liaison.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let addr = config
            .lines()
            .find_map(|l| l.strip_prefix("listen = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        let child = Command::new(process::liaison_bin())
            .args(["serve", "--config"])
            .arg(dir.join("liaison.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr.as_str()).await.is_ok() {
                return Self { addr, dir, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "gateway in {} did not start:\n{}",
            dir.display(),
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
        );
    }

    fn client(&self) -> SharingServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy();
        SharingServiceClient::new(channel)
    }

    /// Stops the process and reads its ledger, in order.
    async fn stop_and_read(mut self) -> Vec<pb::AuditEntry> {
        self.child.kill().await.unwrap();
        let url = format!("sqlite://{}", self.dir.join("ledger.db").display());
        let ledger = liaison_ledger::Ledger::connect(&url).await.unwrap();
        let mut entries = Vec::new();
        for seq in 1..=ledger.size().await.unwrap() {
            let stored = ledger.get_by_seq(seq).await.unwrap().unwrap();
            entries.push(pb::AuditEntry::decode(stored.body.as_slice()).unwrap());
        }
        ledger.close().await;
        entries
    }
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

fn context(purpose: &str) -> pb::ShareContext {
    pb::ShareContext {
        purpose: purpose.into(),
        justification: "Strategy discussion after a domestic abuse referral".into(),
        isa_id: LOCAL_ISA.into(),
        case_reference: "HCK-2026-0042".into(),
        ..Default::default()
    }
}

fn search_doyle(token: &str, purpose: &str) -> Request<pb::SearchPersonsRequest> {
    authed(
        token,
        pb::SearchPersonsRequest {
            context: Some(context(purpose)),
            query: Some(pb::PersonQuery {
                family_name: "Doyle".into(),
                date_of_birth: Some(pb::Date {
                    year: 1986,
                    month: 7,
                    day: 21,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn entry<'a>(entries: &'a [pb::AuditEntry], id: &str) -> &'a pb::AuditEntry {
    entries
        .iter()
        .find(|e| e.entry_id == id)
        .unwrap_or_else(|| panic!("no entry `{id}` in {entries:#?}"))
}

fn halves<'a>(entries: &'a [pb::AuditEntry], correlation: &str) -> Vec<&'a pb::AuditEntry> {
    entries
        .iter()
        .filter(|e| e.correlation_id == correlation)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_council_finds_a_person_held_only_by_the_force_and_both_ledgers_hold_their_half() {
    let hackney = TestProvider::start(
        "hackney-childrens",
        "ES256",
        json!([
            client(
                SOCIAL_WORKER.0,
                SOCIAL_WORKER.1,
                "Sam Okoro (Social Worker, Hackney MASH)",
                &["social-worker"]
            ),
            client(
                FEDERATION.0,
                FEDERATION.1,
                "Hackney Liaison gateway",
                &["social-worker"]
            ),
        ]),
    )
    .await
    .unwrap();
    let met = TestProvider::start(
        "met-police",
        "ES256",
        json!([client(
            "met-officer",
            "officer-secret",
            "PC Jordan Reid",
            &["officer"]
        )]),
    )
    .await
    .unwrap();

    let root = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(dir_a.join("referrals")).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();

    // B: the force, with Wayne Doyle in its records system. Its agreement
    // covers safeguarding children only.
    let rms = dir_b.join("rms.db");
    generate_police_rms(&format!("sqlite://{}?mode=rwc", rms.display()), 40, 5)
        .await
        .unwrap();
    std::fs::write(
        dir_b.join("policy.toml"),
        agreement(
            REMOTE_ISA,
            r#"["safeguarding-children"]"#,
            &["met-police.records"],
        ),
    )
    .unwrap();
    let addr_b = free_addr();
    let config_b = format!(
        "{}\n[[connector]]\nkind = \"sql\"\nid = \"met-police.records\"\nagency = \"met-police\"\n\
         title = \"Met Police records\"\nsystem = \"Synthetic RMS\"\nurl = \"sqlite://{}?mode=ro\"\n\
         mapping_file = \"{}\"\n",
        head(
            &format!(
                "{}{}",
                issuer(&met, "met-police"),
                issuer(&hackney, "hackney-childrens")
            ),
            &addr_b
        ),
        rms.display(),
        example("police-rms.toml"),
    );
    let b = Gateway::start(dir_b.clone(), &config_b).await;

    // A: the council. Its agreement also covers missing-person enquiries,
    // so B's is the narrower one.
    write_council_export(&dir_a.join("referrals"), 20, 9, false).unwrap();
    std::fs::write(
        dir_a.join("policy.toml"),
        agreement(
            LOCAL_ISA,
            r#"["safeguarding-children", "missing-person"]"#,
            &["met-police.mash-referrals", FEDERATED],
        ),
    )
    .unwrap();
    std::fs::write(
        dir_a.join("federation-secret"),
        format!("{}\n", FEDERATION.1),
    )
    .unwrap();
    let addr_a = free_addr();
    let config_a = format!(
        r#"{}
[[connector]]
kind = "csv-folder"
id = "met-police.mash-referrals"
agency = "met-police"
title = "Police referrals held in the Hackney MASH"
system = "Synthetic CMS"
folder = "referrals"
settle_ms = 50
mapping_file = "{}"

[[connector]]
kind = "liaison"
id = "{FEDERATED}"
agency = "met-police"
title = "Met Police records, through the Met's gateway"
system = "Liaison (Met Police)"
endpoint = "http://{addr_b}"
remote_dataset = "met-police.records"
isa_map = {{ "{LOCAL_ISA}" = "{REMOTE_ISA}" }}

[connector.token]
url = "{}/token"
client_id = "{}"
client_secret_file = "federation-secret"

[connector.resilience]
deadline_ms = 2000
"#,
        head(&issuer(&hackney, "hackney-childrens"), &addr_a),
        example("council-csv.toml"),
        hackney.issuer,
        FEDERATION.0,
    );
    let a = Gateway::start(dir_a.clone(), &config_a).await;
    let token = hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut sharing = a.client();

    // 1. Found through B, and only through B.
    let found = sharing
        .search_persons(search_doyle(&token, "safeguarding-children"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:?}\nA:\n{}\nB:\n{}",
                std::fs::read_to_string(dir_a.join("stderr.log")).unwrap_or_default(),
                std::fs::read_to_string(dir_b.join("stderr.log")).unwrap_or_default()
            )
        })
        .into_inner();
    assert!(found.gaps.is_empty(), "{:?}", found.gaps);
    let ids: Vec<&str> = found
        .matches
        .iter()
        .map(|m| m.person.as_ref().unwrap().person_id.as_str())
        .collect();
    assert_eq!(ids, vec!["met-police.federated:100003"]);
    let person = found.matches[0].person.as_ref().unwrap();
    assert_eq!(person.names[0].family_name, "Doyle");
    let provenance = person.provenance.as_ref().unwrap();
    assert_eq!(
        (
            provenance.agency_id.as_str(),
            provenance.dataset_id.as_str()
        ),
        ("met-police", FEDERATED)
    );
    // A's own mask applies too: identifiers are not released to the role.
    assert!(person.identifiers.is_empty(), "{person:?}");
    let found_receipt = found.receipt.unwrap().entry_id;

    // 2. His records, read through B.
    let read = sharing
        .get_records(authed(
            &token,
            pb::GetRecordsRequest {
                context: Some(context("safeguarding-children")),
                person_id: "met-police.federated:100003".into(),
                kinds: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(read.gaps.is_empty(), "{:?}", read.gaps);
    assert_eq!(
        read.person.as_ref().unwrap().person_id,
        "met-police.federated:100003"
    );
    assert!(!read.records.is_empty());
    assert!(
        read.records
            .iter()
            .all(|r| r.record_id.starts_with("met-police.federated:")
                && r.person_id == "met-police.federated:100003"),
        "{:?}",
        read.records
    );
    let read_receipt = read.receipt.unwrap().entry_id;

    // 3. B's agreement does not cover missing-person enquiries: B declines,
    // and A's answer is partial, naming B.
    let declined = sharing
        .search_persons(search_doyle(&token, "missing-person"))
        .await
        .unwrap()
        .into_inner();
    assert!(declined.matches.is_empty());
    assert_eq!(declined.gaps.len(), 1, "{:?}", declined.gaps);
    let gap = &declined.gaps[0];
    assert_eq!(
        (gap.dataset_id.as_str(), gap.reason.as_str()),
        (FEDERATED, "DECLINED")
    );
    assert!(
        gap.message
            .starts_with("declined by met-police: PURPOSE_NOT_PERMITTED"),
        "{}",
        gap.message
    );
    let declined_receipt = declined.receipt.unwrap().entry_id;

    // Asked of the force alone, every source declines: a refusal that says
    // so, naming the dataset, rather than `SOURCES_UNAVAILABLE`, which
    // would invite a retry that cannot succeed.
    let mut force_only = search_doyle(&token, "missing-person");
    force_only.get_mut().dataset_ids = vec![FEDERATED.into()];
    let refused = sharing.search_persons(force_only).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let info = {
        use tonic_types::StatusExt;
        refused.get_error_details().error_info().unwrap().clone()
    };
    assert_eq!(info.reason, "SOURCES_DECLINED");
    assert_eq!(info.metadata["declined"], FEDERATED);
    assert!(info.metadata.contains_key("audit_entry_id"), "{info:?}");
    assert!(
        refused.message().contains("PURPOSE_NOT_PERMITTED"),
        "{}",
        refused.message()
    );

    // The connector kit, through a liaison connector built here the way the
    // gateway builds it, each call inside a share under the mapped
    // agreement (the kit's calls are shares B authorises and audits too).
    let kit = kit_through(&addr_b, &hackney, &dir_a).await;
    println!("{kit}");

    // 4. B stalls (its port accepts connections and never answers): A
    // answers within its deadline, B a gap.
    let b_entries = b.stop_and_read().await;
    let stall = tokio::net::TcpListener::bind(addr_b.as_str())
        .await
        .unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = stall.accept().await {
            open.push(socket);
        }
    });
    let started = Instant::now();
    let stalled = sharing
        .search_persons(search_doyle(&token, "safeguarding-children"))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    println!("with B stalled, A answered in {} ms", took.as_millis());
    assert!(
        took < Duration::from_millis(A_DEADLINE_MS + 1_000),
        "{took:?}"
    );
    assert!(stalled.matches.is_empty());
    assert_eq!(
        stalled
            .gaps
            .iter()
            .map(|g| (g.dataset_id.as_str(), g.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![(FEDERATED, "DEADLINE_EXCEEDED")],
        "{:?}",
        stalled.gaps
    );
    held.abort();
    let _ = held.await;

    // 5. B stopped: the connection is refused, and B is a gap at once.
    let started = Instant::now();
    let down = sharing
        .search_persons(search_doyle(&token, "safeguarding-children"))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    println!("with B down, A answered in {} ms", took.as_millis());
    assert!(
        took < Duration::from_millis(A_DEADLINE_MS + 1_000),
        "{took:?}"
    );
    assert!(down.matches.is_empty());
    assert_eq!(down.gaps.len(), 1, "{:?}", down.gaps);
    assert_eq!(down.gaps[0].dataset_id, FEDERATED);
    assert!(
        ["UNAVAILABLE", "DEADLINE_EXCEEDED", "CIRCUIT_OPEN"]
            .contains(&down.gaps[0].reason.as_str()),
        "{:?}",
        down.gaps
    );
    let a_entries = a.stop_and_read().await;

    // The ledgers: A's half and B's half of each share, one correlation id.
    let a_found = entry(&a_entries, &found_receipt);
    let correlation = a_found.correlation_id.clone();
    assert!(!correlation.is_empty());
    assert_eq!(
        a_found.outcome,
        pb::AuditOutcome::Disclosed as i32,
        "{a_found:#?}"
    );
    assert!(
        a_found.sources.contains(&FEDERATED.to_owned()),
        "{a_found:#?}"
    );
    assert_eq!(a_found.principal.as_ref().unwrap().subject, SOCIAL_WORKER.0);
    let b_found = halves(&b_entries, &correlation);
    assert_eq!(b_found.len(), 1, "{b_entries:#?}");
    let b_found = b_found[0];
    let principal = b_found.principal.as_ref().unwrap();
    assert_eq!(
        (
            principal.agency_id.as_str(),
            principal.subject.as_str(),
            principal.is_system
        ),
        ("hackney-childrens", FEDERATION.0, true),
        "{b_found:#?}"
    );
    let on_behalf_of = b_found.on_behalf_of.as_ref().unwrap();
    assert_eq!(
        (
            on_behalf_of.agency_id.as_str(),
            on_behalf_of.subject.as_str(),
            on_behalf_of.display_name.as_str()
        ),
        (
            "hackney-childrens",
            SOCIAL_WORKER.0,
            "Sam Okoro (Social Worker, Hackney MASH)"
        )
    );
    assert_eq!(b_found.isa_id, REMOTE_ISA);
    assert_eq!(b_found.purpose, "safeguarding-children");
    assert_eq!(b_found.case_reference, "HCK-2026-0042");
    assert_eq!(b_found.outcome, pb::AuditOutcome::Disclosed as i32);
    assert_eq!(b_found.sources, vec!["met-police.records".to_owned()]);

    let a_read = entry(&a_entries, &read_receipt);
    let b_read = halves(&b_entries, &a_read.correlation_id);
    assert_eq!(b_read.len(), 1);
    assert_eq!(b_read[0].action, pb::AuditAction::Read as i32);
    assert_eq!(
        b_read[0].disclosures.len(),
        1,
        "{:#?}",
        b_read[0].disclosures
    );

    let a_declined = entry(&a_entries, &declined_receipt);
    assert_eq!(a_declined.gaps.len(), 1);
    assert_eq!(a_declined.gaps[0].reason, "DECLINED");
    let b_declined = halves(&b_entries, &a_declined.correlation_id);
    assert_eq!(b_declined.len(), 1, "{b_entries:#?}");
    assert_eq!(b_declined[0].outcome, pb::AuditOutcome::Denied as i32);
    assert_eq!(b_declined[0].error_reason, "PURPOSE_NOT_PERMITTED");
    assert_eq!(b_declined[0].purpose, "missing-person");

    // Four shares from A's users reached B, besides the kit's.
    let b_shares = b_entries
        .iter()
        .filter(|e| {
            matches!(
                pb::AuditAction::try_from(e.action),
                Ok(pb::AuditAction::Search | pb::AuditAction::Read)
            ) && !e.correlation_id.starts_with("kit-")
        })
        .count();
    assert_eq!(b_shares, 4, "{b_entries:#?}");
    assert!(
        b_entries
            .iter()
            .any(|e| e.correlation_id.starts_with("kit-"))
    );
    assert_kit(&kit);
}

/// A connector that makes every call inside one share.
#[derive(Debug)]
struct InShare(Arc<dyn Connector>, ShareRequest);

impl Connector for InShare {
    fn descriptor(&self) -> &DatasetDescriptor {
        self.0.descriptor()
    }

    fn search<'a>(
        &'a self,
        query: &'a PersonQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(with_share_request(
            Some(self.1.clone()),
            self.0.search(query, limit),
        ))
    }

    fn fetch<'a>(
        &'a self,
        source_id: &'a str,
        kinds: &'a [pb::RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(with_share_request(
            Some(self.1.clone()),
            self.0.fetch(source_id, kinds),
        ))
    }
}

async fn kit_through(addr_b: &str, hackney: &TestProvider, dir_a: &Path) -> KitReport {
    let text = format!(
        r#"
kind = "liaison"
id = "met-police.kit"
agency = "met-police"
title = "Met Police records, for the kit"
system = "Liaison (Met Police)"
endpoint = "http://{addr_b}"
remote_dataset = "met-police.records"
isa_map = {{ "{LOCAL_ISA}" = "{REMOTE_ISA}" }}
[token]
url = "{}/token"
client_id = "{}"
client_secret_file = "{}"
"#,
        hackney.issuer,
        FEDERATION.0,
        dir_a.join("federation-secret").display()
    );
    let config: ConnectorConfig = toml::from_str(&text).unwrap();
    let registry = Registry::from_configs(&[config]).await.unwrap();
    let connector = registry.get("met-police.kit").unwrap().clone();
    let share = ShareRequest {
        purpose: "safeguarding-children".into(),
        justification: "Connector kit run against the force's gateway".into(),
        isa_id: LOCAL_ISA.into(),
        case_reference: "KIT".into(),
        correlation_id: format!("kit-{}", std::process::id()),
        on_behalf_of: pb::OnBehalfOf {
            agency_id: "hackney-childrens".into(),
            subject: SOCIAL_WORKER.0.into(),
            display_name: "Sam Okoro (Social Worker, Hackney MASH)".into(),
        },
    };
    let expectations = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kit/datasets/police-rms.toml"),
    )
    .unwrap()
    .replace("dataset = \"police-rms\"", "dataset = \"met-police.kit\"");
    let mut expectations = KitExpectations::from_toml(&expectations).unwrap();
    // A federated dataset offers no change feed of its own.
    expectations.changes = None;
    run_kit(Arc::new(InShare(connector, share)), expectations).await
}

/// The kit's checks a peer gateway answers as a source must: ids, stable
/// and of the local dataset; provenance; searches the peer's own rules
/// allow; reads of every person and kind; deadlines and cancellation.
/// The rest check what a peer deliberately does differently from a source
/// it reads directly, each for a reason of its own, and must still fail for
/// that reason (were one to pass, the peer's rules would have changed):
const PEER_RULES: &[(&str, &str)] = &[
    // Its own validation refuses a family or given name alone.
    ("search.by_family_name", "QUERY_TOO_BROAD"),
    ("search.by_given_name", "QUERY_TOO_BROAD"),
    ("search.results_match", "QUERY_TOO_BROAD"),
    ("search.limits", "QUERY_TOO_BROAD"),
    // Its own agreement withholds identifiers and relationships from the role.
    ("fetch.mapped", "identifier"),
    ("fetch.kinds", "RECORD_KIND_RELATIONSHIP"),
    // Its connector's refusal of an impossible id reaches here as a gap.
    ("fetch.invalid_id", "SOURCES_UNAVAILABLE"),
    // Its malformed rows are reported to its own operator, not to peers.
    ("malformed.contained", "0 problems reported"),
];

fn assert_kit(report: &KitReport) {
    assert!(report.checks.len() >= 30, "{report}");
    for check in &report.checks {
        match PEER_RULES.iter().find(|(p, _)| check.name.starts_with(p)) {
            Some((_, why)) => assert!(
                !check.passed && check.detail.contains(why),
                "{} is expected to fail for `{why}`:\n{report}",
                check.name
            ),
            None => assert!(check.passed, "{} failed:\n{report}", check.name),
        }
    }
}
