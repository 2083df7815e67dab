//! The oversight pages against a real (SQLite) ledger, in process.

use std::{path::Path, sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use liaison_ledger::{Ledger, test_util::fresh_sqlite_db};
use liaison_proto::v1 as pb;
use tower::ServiceExt;

use super::*;
use crate::{config::Config, identity::Principal, share::audit};

const GATEWAY: &str = r#"
version = 1
[ledger]
url = "sqlite://x.db"
[policy]
file = "p.toml"
[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"
[[agency]]
id = "hackney"
display_name = "Hackney Council"
kind = "local-authority"
[[issuer]]
url = "https://idp.met.example/realms/met"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["RS256"]
"#;

const CONSOLE: &str = r#"
listen = "127.0.0.1:8081"
public_url = "https://liaison.example.org"
roles = ["dpo", "auditor", "viewer"]
[[client]]
issuer = "https://idp.met.example/realms/met"
client_id = "met-console"
"#;

const ORIGIN: &str = "https://liaison.example.org";

struct World {
    app: Router,
    state: ConsoleState,
    ledger: Arc<Ledger>,
    url: String,
    _dir: tempfile::TempDir,
}

struct Signed {
    cookie: String,
    csrf: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

fn principal(roles: &[&str]) -> Principal {
    Principal {
        agency: "met-police".into(),
        subject: "u-dpo".into(),
        display_name: Some("Dana Okafor".into()),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        team: None,
        vetting: None,
        client_id: Some("met-console".into()),
        issuer: "https://idp.met.example/realms/met".into(),
        is_system: false,
    }
}

/// A share as the audit stage records it.
fn share(
    n: u32,
    agency: &str,
    user: &str,
    purpose: &str,
    outcome: pb::AuditOutcome,
    people: &[&str],
) -> pb::AuditEntry {
    let denied = outcome == pb::AuditOutcome::Denied;
    pb::AuditEntry {
        format_version: 1,
        entry_id: format!("00000000-0000-4000-8000-{n:012}"),
        recorded_at: Some(prost_types::Timestamp {
            seconds: time::OffsetDateTime::now_utc().unix_timestamp() - i64::from(n) * 60,
            nanos: 0,
        }),
        principal: Some(pb::AuditPrincipal {
            agency_id: agency.into(),
            subject: user.into(),
            display_name: format!("User {user}"),
            roles: vec!["social-worker".into()],
            client_id: "case-system".into(),
            issuer: "https://idp.met.example/realms/met".into(),
            is_system: false,
        }),
        recipient_agency_id: agency.into(),
        action: pb::AuditAction::Search as i32,
        method: "/liaison.v1.SharingService/SearchPersons".into(),
        purpose: purpose.into(),
        justification: "=HYPERLINK(\"http://evil.example\")".into(),
        isa_id: "met-hackney-mash".into(),
        provider_agency_id: "hackney".into(),
        isa_version: 3,
        legal_basis: "Children Act 1989 s.47".into(),
        policy_version: "sha256:abc".into(),
        allowed: !denied,
        matched_rules: vec![format!("isa:met-hackney-mash:{purpose}")],
        disclosures: people
            .iter()
            .map(|p| pb::AuditDisclosure {
                dataset_id: "hackney-children".into(),
                person_id: (*p).into(),
                record_ids: vec!["r-1".into()],
                fields: vec!["name".into(), "date_of_birth".into()],
                digest: "00".repeat(32),
            })
            .collect(),
        outcome: outcome as i32,
        error_reason: if denied {
            "PURPOSE_NOT_PERMITTED".into()
        } else {
            String::new()
        },
        sources: if denied {
            vec![]
        } else {
            vec!["hackney-children".into()]
        },
        ..pb::AuditEntry::default()
    }
}

impl World {
    async fn start() -> World {
        let (url, dir) = fresh_sqlite_db();
        Self::start_at(&url, dir).await
    }

    async fn start_at(url: &str, dir: tempfile::TempDir) -> World {
        let ledger = Arc::new(Ledger::connect(url).await.unwrap());
        let config = Config::parse(GATEWAY, Path::new("t.toml"), Path::new(".")).unwrap();
        let registry =
            Arc::new(TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap());
        let console: ConsoleConfig = toml::from_str(CONSOLE).unwrap();
        let state = ConsoleState::new(&console, &config, registry)
            .unwrap()
            .with_ledger(ledger.clone());
        World {
            app: router(state.clone()),
            state,
            ledger,
            url: url.to_owned(),
            _dir: dir,
        }
    }

    async fn seed(&self, entries: &[pb::AuditEntry]) {
        for e in entries {
            audit::append(&self.ledger, e).await.unwrap();
        }
    }

    async fn sign_in(&self, roles: &[&str]) -> Signed {
        let (cookie, session) = self
            .state
            .inner
            .sessions
            .lock()
            .await
            .create(principal(roles), Instant::now())
            .unwrap();
        Signed {
            // Over https the cookie carries the `__Host-` prefix.
            cookie: format!("__Host-liaison_session={cookie}"),
            csrf: session.csrf,
        }
    }

    async fn get(&self, who: &Signed, path: &str) -> Answer {
        self.send(
            Request::get(path)
                .header(header::COOKIE, &who.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, who: &Signed, path: &str, form: &[(&str, &str)]) -> Answer {
        let mut body = form_urlencoded(form);
        if !who.csrf.is_empty() {
            body.push_str(&format!("&csrf={}", who.csrf));
        }
        self.send(
            Request::post(path)
                .header(header::COOKIE, &who.cookie)
                .header(header::ORIGIN, ORIGIN)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }
}

fn form_urlencoded(form: &[(&str, &str)]) -> String {
    openidconnect::url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

fn rows(html: &str) -> usize {
    html.matches("<a href=\"/console/entries/").count()
}

async fn seeded() -> World {
    let world = World::start().await;
    let mut entries = Vec::new();
    for n in 1..=60 {
        let outcome = if n % 10 == 0 {
            pb::AuditOutcome::Denied
        } else {
            pb::AuditOutcome::Disclosed
        };
        let people: &[&str] = if n == 7 { &["P-1", "P-2"] } else { &["P-9"] };
        let purpose = if n % 2 == 0 {
            "safeguarding-children"
        } else {
            "missing-person"
        };
        entries.push(share(
            n,
            "met-police",
            &format!("u-{}", n % 3),
            purpose,
            outcome,
            people,
        ));
    }
    // Another agency's share about the same person: not this DPO's to see.
    entries.push(share(
        99,
        "hackney",
        "u-h",
        "safeguarding-children",
        pb::AuditOutcome::Disclosed,
        &["P-1"],
    ));
    world.seed(&entries).await;
    world
}

#[tokio::test]
async fn a_search_pages_through_own_agency_entries_newest_first() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let first = world.get(&dpo, "/console/entries?order=newest").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(rows(&first.body), 50);
    assert!(
        !first.body.contains("u-h"),
        "another agency's entry is hidden"
    );
    assert!(first.body.contains(r#"name="after" value="#));
    let after = first
        .body
        .split(r#"name="after" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let second = world
        .get(
            &dpo,
            &format!("/console/entries?order=newest&after={after}"),
        )
        .await;
    assert_eq!(rows(&second.body), 10, "{}", second.body);
    assert!(!second.body.contains(r#"id="next-page""#));

    let denied = world.get(&dpo, "/console/entries?outcome=denied").await;
    assert_eq!(rows(&denied.body), 6);
    let purpose = world
        .get(
            &dpo,
            "/console/entries?purpose=missing-person&user=u-1&dataset=hackney-children",
        )
        .await;
    // n odd, n % 3 == 1, not denied: 1, 7, 13, …, 55 (n % 10 is never 0 for odd n).
    assert_eq!(rows(&purpose.body), 10, "{}", purpose.body);
    let none = world
        .get(&dpo, "/console/entries?dataset=no-such-dataset")
        .await;
    assert!(none.body.contains(r#"id="no-results""#));
}

#[tokio::test]
async fn a_person_filter_never_travels_in_the_address() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let refused = world.get(&dpo, "/console/entries?subject=P-1").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused
            .body
            .contains("a person filter must be sent from the search form")
    );
    let refused = world
        .get(&dpo, "/console/entries/export?format=csv&subject=P-1")
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    let found = world
        .post(&dpo, "/console/entries", &[("subject", "P-1")])
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(rows(&found.body), 1, "only this agency's share about P-1");
    // Onward forms repeat the search by POST with the form token, never GET.
    assert!(
        found
            .body
            .contains(r#"<form method="post" action="/console/entries/export""#)
    );

    let forged = Signed {
        cookie: dpo.cookie.clone(),
        csrf: String::new(),
    };
    let refused = world
        .post(&forged, "/console/entries", &[("subject", "P-1")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_filters_are_refused_with_reasons() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    for (query, message) in [
        (
            "outcome=leaked",
            "`leaked` is not an outcome the ledger records",
        ),
        (
            "from=31/03/2026",
            "the from date `31/03/2026` is not a date like 2026-03-31",
        ),
        (
            "order=sideways",
            "`sideways` is not an order; use `newest` or `oldest`",
        ),
        ("after=abc", "the page cursor is not one this console gave"),
    ] {
        let answer = world.get(&dpo, &format!("/console/entries?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(answer.body.contains(message), "{query}: {}", answer.body);
    }
}

#[tokio::test]
async fn an_entry_shows_its_record_and_a_verified_inclusion_proof() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let page = world
        .get(
            &dpo,
            "/console/entries/00000000-0000-4000-8000-000000000007",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The view is itself recorded (entry 62) before the proof is checked
    // against the current tree.
    let root = hex::encode(world.ledger.tree_head(62).await.unwrap().root);
    assert!(
        page.body.contains(&format!(
            r#"<p id="verdict">Verified: included in tree of size 62, root {root}</p>"#
        )),
        "{}",
        page.body
    );
    for shown in [
        "Children Act 1989 s.47",
        "met-hackney-mash, version 3",
        "isa:met-hackney-mash:missing-person",
        "P-2",
        "name, date_of_birth",
        "/liaison.v1.SharingService/SearchPersons",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(page.body.contains("=HYPERLINK(&"), "quotes are escaped");
    let hidden = world
        .get(
            &dpo,
            "/console/entries/00000000-0000-4000-8000-000000000099",
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let odd = world.get(&dpo, "/console/entries/..%2Fetc").await;
    assert_eq!(odd.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_proof_is_checked_against_a_signed_head_when_there_is_one() {
    let world = seeded().await;
    let key = liaison_ledger::test_util::test_signing_key(1);
    world.ledger.seal(&key).await.unwrap();
    world
        .seed(&[share(
            200,
            "met-police",
            "u-1",
            "missing-person",
            pb::AuditOutcome::Disclosed,
            &[],
        )])
        .await;
    let dpo = world.sign_in(&["dpo"]).await;
    let sealed = world
        .get(
            &dpo,
            "/console/entries/00000000-0000-4000-8000-000000000003",
        )
        .await;
    assert!(
        sealed.body.contains("included in tree of size 61"),
        "{}",
        sealed.body
    );
    assert!(sealed.body.contains("checked against the signed tree head"));
    let fresh = world
        .get(
            &dpo,
            "/console/entries/00000000-0000-4000-8000-000000000200",
        )
        .await;
    // 61 sealed, share 200, and the two views before this one's proof.
    assert!(
        fresh.body.contains("included in tree of size 64"),
        "{}",
        fresh.body
    );
    assert!(fresh.body.contains("no signed head covers this entry yet"));
    let home = world.get(&dpo, "/console/").await;
    assert!(
        home.body
            .contains("Consistent: the signed head of 61 entries matches the stored tree"),
        "{}",
        home.body
    );
}

#[tokio::test]
async fn the_subject_access_report_lists_every_visible_disclosure() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let form = world.get(&dpo, "/console/subject").await;
    assert_eq!(form.status, StatusCode::OK);
    let report = world
        .post(&dpo, "/console/subject", &[("person", "P-9")])
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert!(
        report.body.contains("<caption>59 disclosures</caption>"),
        "{}",
        report.body
    );
    let one = world
        .post(&dpo, "/console/subject", &[("person", "P-1")])
        .await;
    assert!(
        one.body.contains("<caption>1 disclosure</caption>"),
        "{}",
        one.body
    );
    assert!(!one.body.contains("u-h"));
    let nobody = world
        .post(&dpo, "/console/subject", &[("person", "P-404")])
        .await;
    assert!(nobody.body.contains(r#"id="no-disclosures""#));
    let empty = world
        .post(&dpo, "/console/subject", &[("person", " ")])
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn exports_carry_every_match_as_attachments() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let csv = world
        .get(&dpo, "/console/entries/export?format=csv&outcome=denied")
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let disposition = csv.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"liaison-audit-"));
    assert!(disposition.ends_with(".csv\""));
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    assert_eq!(&reader.headers().unwrap()[0], "entry_id");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 6);
    assert_eq!(&records[0][21], "denied");
    assert_eq!(&records[0][22], "PURPOSE_NOT_PERMITTED");
    assert!(
        records[0][13].starts_with("'="),
        "a formula is defused: {}",
        &records[0][13]
    );

    let json = world
        .post(
            &dpo,
            "/console/entries/export",
            &[("format", "json"), ("subject", "P-1")],
        )
        .await;
    assert_eq!(json.status, StatusCode::OK);
    let value: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(value.as_array().unwrap().len(), 1);
    assert_eq!(value[0]["disclosures"][0]["person_id"], "P-1");
    assert_eq!(value[0]["legal_basis"], "Children Act 1989 s.47");

    let fhir = world
        .get(&dpo, "/console/entries/export?format=fhir&outcome=denied")
        .await;
    assert_eq!(fhir.headers[header::CONTENT_TYPE], "application/fhir+json");
    let bundle: serde_json::Value = serde_json::from_str(&fhir.body).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["total"], 6);
    let event = &bundle["entry"][0]["resource"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["type"]["code"], "rest");
    assert_eq!(event["subtype"][0]["code"], "110112");
    assert_eq!(event["action"], "E");
    assert_eq!(event["outcome"], "4");
    assert_eq!(event["purposeOfEvent"][0]["text"], "safeguarding-children");
    assert_eq!(event["agent"][0]["who"]["identifier"]["value"], "u-0");
    assert_eq!(event["agent"][0]["requestor"], true);
    assert_eq!(event["entity"][0]["role"]["code"], "24");

    let unknown = world.get(&dpo, "/console/entries/export?format=xlsx").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_dashboard_counts_sharing_and_checks_the_ledger() {
    let world = seeded().await;
    let mut odd = Vec::new();
    for k in 0..5u32 {
        odd.push(share(
            300 + k,
            "met-police",
            &format!("u-look-{k}"),
            "missing-person",
            pb::AuditOutcome::Disclosed,
            &["P-77"],
        ));
    }
    for k in 0..3u32 {
        odd.push(share(
            400 + k,
            "met-police",
            "u-denied",
            "crime-prevention",
            pb::AuditOutcome::Denied,
            &[],
        ));
    }
    world.seed(&odd).await;
    let dpo = world.sign_in(&["dpo"]).await;
    let home = world.get(&dpo, "/console/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains(r#"<dd id="name">Dana Okafor</dd>"#));
    assert!(
        home.body
            .contains("68 requests recorded, 9 denied by policy."),
        "{}",
        home.body
    );
    assert!(
        home.body
            .contains("<td>PURPOSE_NOT_PERMITTED</td><td>9</td>")
    );
    assert!(
        home.body
            .contains("<td>safeguarding-children</td><td>30</td>")
    );
    assert!(
        home.body
            .contains("<td>Metropolitan Police Service</td><td>68</td>")
    );
    assert!(home.body.contains("no signed tree head yet"));
    assert!(
        home.body.contains(
            "<tr><td>Many users on one person</td><td class=\"mono\">P-77</td><td>looked at by 5 different users</td></tr>"
        ),
        "{}",
        home.body
    );
    assert!(home.body.contains(
        "<tr><td>Repeated denials</td><td class=\"mono\">u-denied</td><td>3 requests denied by policy</td></tr>"
    ));
    assert!(
        !home
            .body
            .contains("<td>Repeated denials</td><td class=\"mono\">u-1</td>")
    );
    assert!(!home.body.contains("<script"));
    assert!(!home.body.contains("style="));
}

#[tokio::test]
async fn only_dpos_and_auditors_read_the_ledger() {
    let world = seeded().await;
    let viewer = world.sign_in(&["viewer"]).await;
    for path in [
        "/console/entries",
        "/console/entries/00000000-0000-4000-8000-000000000007",
        "/console/subject",
        "/console/entries/export?format=csv",
    ] {
        let answer = world.get(&viewer, path).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.body.contains("needs the `dpo` or `auditor` role"));
    }
    let home = world.get(&viewer, "/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.body
            .contains("Your roles do not include reading the audit ledger.")
    );
    let auditor = world.sign_in(&["auditor"]).await;
    assert_eq!(
        world.get(&auditor, "/console/entries").await.status,
        StatusCode::OK
    );
}

/// The decoded entries of one action, oldest first.
async fn entries_of(ledger: &Ledger, action: &str) -> Vec<pb::AuditEntry> {
    let filter = liaison_ledger::EntryFilter {
        action: Some(action.into()),
        order: liaison_ledger::Order::OldestFirst,
        ..Default::default()
    };
    ledger
        .list(&filter, 500, None)
        .await
        .unwrap()
        .iter()
        .map(|e| <pb::AuditEntry as prost::Message>::decode(e.body.as_slice()).unwrap())
        .collect()
}

fn break_glass(mut e: pb::AuditEntry, reason: &str) -> pb::AuditEntry {
    e.break_glass = Some(pb::BreakGlass {
        reason: reason.into(),
    });
    e
}

const GLASS: &str = "00000000-0000-4000-8000-000000000500";

async fn with_break_glass() -> World {
    let world = seeded().await;
    let mut extra = vec![
        break_glass(
            share(
                500,
                "met-police",
                "u-night",
                "missing-person",
                pb::AuditOutcome::Disclosed,
                &["P-5"],
            ),
            "child missing overnight, duty manager unreachable",
        ),
        // Another agency's emergency share: not this DPO's to review.
        break_glass(
            share(
                501,
                "hackney",
                "u-h",
                "missing-person",
                pb::AuditOutcome::Disclosed,
                &["P-6"],
            ),
            "hackney's own emergency",
        ),
    ];
    for k in 0..3u32 {
        extra.push(share(
            400 + k,
            "met-police",
            "u-denied",
            "crime-prevention",
            pb::AuditOutcome::Denied,
            &[],
        ));
    }
    world.seed(&extra).await;
    world
}

#[tokio::test]
async fn break_glass_shares_and_flags_wait_in_the_queue_until_a_dpo_reviews_them() {
    let world = with_break_glass().await;
    let dpo = world.sign_in(&["dpo"]).await;

    let home = world.get(&dpo, "/console/").await;
    assert!(
        home.body
            .contains("<strong>1</strong> break-glass share awaits review"),
        "{}",
        home.body
    );
    let queue = world.get(&dpo, "/console/review").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(
        queue.body.contains("child missing overnight"),
        "{}",
        queue.body
    );
    assert!(!queue.body.contains("hackney&#39;s own emergency"));
    assert!(!queue.body.contains("hackney's own emergency"));
    assert!(queue.body.contains("Repeated denials"));
    let before: Vec<&str> = queue.body.matches("<tr data-entry=").collect();
    assert!(before.len() >= 2);
    assert!(!queue.body.contains(">Reviewed</span>"));

    // Refusals, none of which marks anything.
    let short = world
        .post(
            &dpo,
            "/console/review",
            &[("entry", GLASS), ("note", "ok fine")],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(
        short.body.contains("at least 10 characters"),
        "{}",
        short.body
    );
    let tokenless = Signed {
        cookie: dpo.cookie.clone(),
        csrf: String::new(),
    };
    let forged = world
        .post(
            &tokenless,
            "/console/review",
            &[("entry", GLASS), ("note", "checked with the duty manager")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let auditor = world.sign_in(&["auditor"]).await;
    let by_auditor = world
        .post(
            &auditor,
            "/console/review",
            &[("entry", GLASS), ("note", "checked with the duty manager")],
        )
        .await;
    assert_eq!(by_auditor.status, StatusCode::FORBIDDEN);
    assert!(by_auditor.body.contains("needs the `dpo` role"));
    let foreign = world
        .post(
            &dpo,
            "/console/review",
            &[
                ("entry", "00000000-0000-4000-8000-000000000501"),
                ("note", "checked with the duty manager"),
            ],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert!(entries_of(&world.ledger, "review").await.is_empty());

    let done = world
        .post(
            &dpo,
            "/console/review",
            &[
                ("entry", GLASS),
                ("note", "  checked with the duty manager; justified  "),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let reviews = entries_of(&world.ledger, "review").await;
    assert_eq!(reviews.len(), 1);
    let r = &reviews[0];
    assert_eq!(r.action, pb::AuditAction::Review as i32);
    assert_eq!(r.outcome, pb::AuditOutcome::Recorded as i32);
    assert_eq!(r.target, GLASS);
    assert_eq!(r.justification, "checked with the duty manager; justified");
    assert!(r.allowed);
    let p = r.principal.as_ref().unwrap();
    assert_eq!(
        (p.agency_id.as_str(), p.subject.as_str()),
        ("met-police", "u-dpo")
    );
    let location = done.headers[header::LOCATION].to_str().unwrap();
    assert_eq!(
        location,
        format!("/console/review?done={}&entry={GLASS}", r.entry_id)
    );

    let after = world.get(&dpo, location).await;
    assert!(after.body.contains(r#"id="review-done""#), "{}", after.body);
    let rows: Vec<&str> = after.body.split("<tr data-entry=").skip(1).collect();
    assert_eq!(rows.len(), before.len());
    // Reviewed items follow every unreviewed one.
    let last = rows.last().unwrap();
    assert!(last.starts_with(&format!("\"{GLASS}\"")), "{}", after.body);
    assert!(last.contains(">Reviewed</span>"));
    assert!(last.contains("by Dana Okafor"));
    let open = world
        .get(&dpo, "/console/review?kind=break-glass&status=unreviewed")
        .await;
    assert!(open.body.contains(r#"id="queue-empty""#), "{}", open.body);
    let flags = world.get(&dpo, "/console/review?kind=flag").await;
    assert!(flags.body.contains("Repeated denials"));
    assert!(!flags.body.contains("<strong>Break-glass</strong>"));
    assert_eq!(
        world.get(&dpo, "/console/review?status=maybe").await.status,
        StatusCode::BAD_REQUEST
    );

    let home = world.get(&dpo, "/console/").await;
    assert!(
        home.body
            .contains("<strong>0</strong> break-glass shares await review")
    );
    let entry = world.get(&dpo, &format!("/console/entries/{GLASS}")).await;
    assert!(
        entry.body.contains(
            r#"<p id="break-glass">The user invoked emergency access: child missing overnight"#
        ),
        "{}",
        entry.body
    );
    assert!(
        entry
            .body
            .contains("Dana Okafor: checked with the duty manager; justified")
    );
    let csv = world
        .post(
            &dpo,
            "/console/entries/export",
            &[("format", "csv"), ("user", "u-night")],
        )
        .await;
    assert!(
        csv.body
            .lines()
            .next()
            .unwrap()
            .ends_with(",break_glass,target,leaf_hash")
    );
    assert!(
        csv.body
            .contains("child missing overnight, duty manager unreachable"),
        "{}",
        csv.body
    );
    let review_page = world
        .get(&dpo, &format!("/console/entries/{}", r.entry_id))
        .await;
    assert!(
        review_page
            .body
            .contains(&format!(r#"<a href="/console/entries/{GLASS}">"#))
    );
}

#[tokio::test]
async fn a_flag_review_names_its_newest_entry_and_new_activity_raises_it_again() {
    let world = World::start().await;
    let denial = |n| {
        share(
            n,
            "met-police",
            "u-denied",
            "crime-prevention",
            pb::AuditOutcome::Denied,
            &[],
        )
    };
    // Entries 603, 602, 601: the lower the number, the newer.
    world.seed(&[denial(603), denial(602), denial(601)]).await;
    let dpo = world.sign_in(&["dpo"]).await;
    let row = |body: &str, id: &str| {
        body.split("<tr data-entry=")
            .find(|r| r.starts_with(&format!("\"{id}\"")) && r.contains("Repeated denials"))
            .map(str::to_owned)
    };
    let newest = "00000000-0000-4000-8000-000000000601";
    let queue = world.get(&dpo, "/console/review?kind=flag").await;
    let flag = row(&queue.body, newest).expect("the flag names its newest entry");
    assert!(flag.contains("3 requests denied by policy"));
    assert!(flag.contains(">Unreviewed</span>"));

    let done = world
        .post(
            &dpo,
            "/console/review",
            &[
                ("entry", newest),
                ("note", "spoke to the officer; training booked"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let queue = world.get(&dpo, "/console/review?kind=flag").await;
    assert!(
        row(&queue.body, newest)
            .unwrap()
            .contains(">Reviewed</span>")
    );

    // Another denial after the review: the flag is back, unreviewed, and
    // names the new entry.
    world.seed(&[denial(600)]).await;
    let queue = world
        .get(&dpo, "/console/review?kind=flag&status=unreviewed")
        .await;
    let again =
        row(&queue.body, "00000000-0000-4000-8000-000000000600").expect("the flag is raised again");
    assert!(again.contains("4 requests denied by policy"));
    assert!(again.contains(">Unreviewed</span>"));
}

#[tokio::test]
async fn a_review_that_cannot_be_made_durable_marks_nothing() {
    let world = with_break_glass().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&world.url)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let failed = world
        .post(
            &dpo,
            "/console/review",
            &[("entry", GLASS), ("note", "checked with the duty manager")],
        )
        .await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.body
    );
    assert!(failed.body.contains("the audit ledger is unavailable"));
    // A search is refused too: its record cannot be made.
    let search = world
        .get(&dpo, "/console/entries?purpose=missing-person")
        .await;
    assert_eq!(search.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!search.body.contains("/console/entries/0000"));
    sqlx::query("DROP TRIGGER refuse")
        .execute(&mut db)
        .await
        .unwrap();
    assert!(entries_of(&world.ledger, "review").await.is_empty());
    let queue = world.get(&dpo, "/console/review").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(!queue.body.contains(">Reviewed</span>"));
}

#[tokio::test]
async fn every_look_at_the_ledger_is_itself_recorded() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    assert_eq!(
        world
            .get(
                &dpo,
                "/console/entries?purpose=safeguarding-children&outcome=denied"
            )
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        world
            .post(&dpo, "/console/entries", &[("subject", "P-1")])
            .await
            .status,
        StatusCode::OK
    );
    let seven = "00000000-0000-4000-8000-000000000007";
    assert_eq!(
        world
            .get(&dpo, &format!("/console/entries/{seven}"))
            .await
            .status,
        StatusCode::OK
    );
    // Another agency's entry: not found, and the attempt is on record.
    let theirs = "00000000-0000-4000-8000-000000000099";
    assert_eq!(
        world
            .get(&dpo, &format!("/console/entries/{theirs}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        world
            .post(&dpo, "/console/subject", &[("person", "P-1")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        world
            .get(&dpo, "/console/entries/export?format=csv&outcome=denied")
            .await
            .status,
        StatusCode::OK
    );
    let looks = entries_of(&world.ledger, "oversee").await;
    let seen: Vec<(&str, &str, &str, i32, &str)> = looks
        .iter()
        .map(|e| {
            (
                e.method.as_str(),
                e.justification.as_str(),
                e.target.as_str(),
                e.outcome,
                e.error_reason.as_str(),
            )
        })
        .collect();
    let recorded = pb::AuditOutcome::Recorded as i32;
    assert_eq!(
        seen,
        vec![
            (
                "/console/entries",
                "ledger search (purpose=safeguarding-children, outcome=denied); 6 entries shown",
                "",
                recorded,
                ""
            ),
            (
                "/console/entries",
                "ledger search (subject=P-1); 1 entries shown",
                "",
                recorded,
                ""
            ),
            ("/console/entries/{id}", "entry view", seven, recorded, ""),
            (
                "/console/entries/{id}",
                "entry view; not found or not visible",
                theirs,
                pb::AuditOutcome::Denied as i32,
                "NOT_FOUND"
            ),
            (
                "/console/subject",
                "subject access report (person=P-1); 1 disclosures, 0 withheld under s.45",
                "",
                recorded,
                ""
            ),
            // Six denied shares and the refused look above.
            (
                "/console/entries/export",
                "csv export (outcome=denied); 7 entries",
                "",
                recorded,
                ""
            ),
        ]
    );
    for e in &looks {
        assert_eq!(e.action, pb::AuditAction::Oversee as i32);
        assert_eq!(e.principal.as_ref().unwrap().subject, "u-dpo");
        assert!(e.disclosures.is_empty(), "a look discloses nothing itself");
    }
    // The looks are not counted as sharing.
    let home = world.get(&dpo, "/console/").await;
    assert!(
        home.body
            .contains("60 requests recorded, 6 denied by policy."),
        "{}",
        home.body
    );
}

#[tokio::test]
async fn the_agreement_register_reads_the_enforced_policy_and_marks_overdue_reviews() {
    use liaison_policy::{PolicyEngine, PolicySet};
    // The demo policy, its dates moved to around today.
    let today = time::OffsetDateTime::now_utc().date();
    let days = |n: i64| (today + time::Duration::days(n)).to_string();
    let (from, until) = (days(-700), days(1000));
    let policy = |review: &str| {
        let text = include_str!("../../../deploy/demo/policy.toml")
            .replace("valid_from = 2026-01-01", &format!("valid_from = {from}"))
            .replace(
                "valid_until = 2028-12-31",
                &format!("valid_until = {until}"),
            )
            .replace(
                "review_date = 2027-06-30",
                &format!("review_date = {review}"),
            );
        Arc::new(PolicyEngine::compile(&PolicySet::from_toml(&text).unwrap()).unwrap())
    };
    let (tx, rx) = tokio::sync::watch::channel(policy(&days(200)));
    let mut world = World::start().await;
    world.state = world.state.clone().with_policy(rx);
    world.app = router(world.state.clone());
    let dpo = world.sign_in(&["dpo"]).await;

    let page = world.get(&dpo, "/console/agreements").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"<tr id="isa-met-hackney-children">"#));
    assert!(
        page.body
            .contains("Metropolitan Police and London Borough of Hackney: safeguarding children")
    );
    assert!(
        page.body.contains("Provider: Metropolitan Police Service"),
        "{}",
        page.body
    );
    assert!(page.body.contains("safeguarding-children, missing-person"));
    assert!(
        page.body
            .contains("dpo@met.police.example, dpo@hackney.gov.example")
    );
    assert!(page.body.contains(&format!("{from} to {until}")));
    assert!(page.body.contains("Your agency is a party"));
    assert!(page.body.contains("No review is overdue."));

    // A reload of the policy shows at once: here the review date passes.
    let overdue = days(-3);
    tx.send(policy(&overdue)).unwrap();
    let page = world.get(&dpo, "/console/agreements").await;
    assert!(
        page.body.contains(&format!(
            r#"<span class="badge pending">Overdue</span> {overdue}"#
        )),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<strong>1</strong> agreement is past its review date.")
    );

    let viewer = world.sign_in(&["viewer"]).await;
    assert_eq!(
        world.get(&viewer, "/console/agreements").await.status,
        StatusCode::FORBIDDEN
    );
}

/// An entry of `seeded()` by its number.
fn seeded_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn a_providers_dpo_sees_shares_of_its_data_made_by_others() {
    let world = World::start().await;
    // Hackney's user reads data the Met provided: the Met's DPO oversees it.
    let mut theirs = share(
        1,
        "hackney",
        "u-h",
        "safeguarding-children",
        pb::AuditOutcome::Disclosed,
        &["P-5"],
    );
    theirs.provider_agency_id = "met-police".into();
    theirs.break_glass = Some(pb::BreakGlass {
        reason: "Child missing overnight, duty manager unreachable".into(),
    });
    // Hackney reading Islington's data concerns the Met not at all.
    let mut unrelated = share(
        2,
        "hackney",
        "u-h2",
        "safeguarding-children",
        pb::AuditOutcome::Disclosed,
        &["P-5"],
    );
    unrelated.provider_agency_id = "islington".into();
    let own = share(
        3,
        "met-police",
        "u-m",
        "missing-person",
        pb::AuditOutcome::Disclosed,
        &["P-6"],
    );
    world.seed(&[theirs, unrelated, own]).await;
    let dpo = world.sign_in(&["dpo"]).await;

    let all = world.get(&dpo, "/console/entries?order=newest").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(rows(&all.body), 2, "{}", all.body);
    assert!(all.body.contains(&seeded_id(1)) && all.body.contains(&seeded_id(3)));
    assert!(!all.body.contains(&seeded_id(2)));
    let provided = world
        .get(&dpo, "/console/entries?provider=met-police")
        .await;
    assert_eq!(rows(&provided.body), 1, "{}", provided.body);
    assert!(provided.body.contains(&seeded_id(1)));
    let glass = world.get(&dpo, "/console/entries?break_glass=on").await;
    assert_eq!(rows(&glass.body), 1, "{}", glass.body);
    assert!(glass.body.contains(&seeded_id(1)));
    assert_eq!(
        world
            .get(&dpo, "/console/entries?break_glass=yes")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let entry = world
        .get(&dpo, &format!("/console/entries/{}", seeded_id(1)))
        .await;
    assert_eq!(entry.status, StatusCode::OK);
    assert!(
        entry
            .body
            .contains(r#"<dd id="provider">Metropolitan Police Service</dd>"#)
    );
    let hidden = world
        .get(&dpo, &format!("/console/entries/{}", seeded_id(2)))
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let report = world
        .post(&dpo, "/console/subject", &[("person", "P-5")])
        .await;
    assert!(
        report.body.contains("<caption>1 disclosure</caption>"),
        "{}",
        report.body
    );
    let csv = world
        .get(
            &dpo,
            "/console/entries/export?format=csv&provider=met-police&break_glass=on",
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(lines[0].contains(",recipient_agency,provider_agency,"));
    assert!(lines[1].contains(",hackney,met-police,"));

    // The API answers by the same rule.
    let met = principal(&["dpo"]);
    let stored = world.ledger.get(&seeded_id(1)).await.unwrap().unwrap();
    assert!(crate::services::oversight::visible(&met, &stored));
    let islington = Principal {
        agency: "islington".into(),
        ..principal(&["dpo"])
    };
    assert!(!crate::services::oversight::visible(&islington, &stored));
}

#[tokio::test]
async fn a_restricted_disclosure_is_withheld_from_the_report_until_its_date() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    // Entry 7 disclosed P-1 and P-2; P-1 has no other visible disclosure.
    let id = seeded_id(7);
    let before = world
        .post(&dpo, "/console/subject", &[("person", "P-1")])
        .await;
    assert!(before.body.contains("<caption>1 disclosure</caption>"));
    let today = time::OffsetDateTime::now_utc().date();
    let until = (today + time::Duration::days(30)).to_string();
    let reason = "Live investigation OP-HERON: the suspect must not learn of it";
    let done = world
        .post(
            &dpo,
            &format!("/console/entries/{id}/restrict"),
            &[("until", &until), ("reason", reason)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = world.get(&dpo, &format!("/console/entries/{id}")).await;
    assert!(
        page.body.contains(&format!(
            "Restricted: withheld from subject access reports until {until}T00:00:00Z"
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("OP-HERON") && page.body.contains("Metropolitan Police Service"));
    // A restriction reviews nothing.
    assert!(
        page.body
            .contains("No Data Protection Officer has reviewed this entry.")
    );

    let report = world
        .post(&dpo, "/console/subject", &[("person", "P-1")])
        .await;
    assert!(
        report.body.contains(r#"id="no-disclosures""#),
        "{}",
        report.body
    );
    assert!(report.body.contains("1 disclosure withheld under s.45"));
    let subject_copy = report.body.split(r#"id="report-h""#).nth(1).unwrap();
    let withheld = subject_copy.split(r#"id="withheld""#).nth(1).unwrap();
    assert!(withheld.contains("OP-HERON") && withheld.contains(&id));
    assert!(
        report.body.contains(r#"class="no-print verdict bad""#),
        "what is withheld is never printed"
    );
    // P-2 is withheld by the same entry; P-9's other disclosures are not.
    let p9 = world
        .post(&dpo, "/console/subject", &[("person", "P-9")])
        .await;
    assert!(p9.body.contains("<caption>59 disclosures</caption>"));

    // Recorded as a REVIEW entry naming the entry, the date and the reason.
    let recorded = entries_of(&world.ledger, "review").await;
    let r = recorded.last().unwrap();
    assert_eq!(r.target, id);
    assert_eq!(r.justification, reason);
    assert_eq!(r.method, "/console/entries/{id}/restrict");
    let note = r.restriction.as_ref().unwrap();
    assert!(!note.lifted);
    assert_eq!(
        note.until.unwrap().seconds,
        today
            .saturating_add(time::Duration::days(30))
            .with_time(time::Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp()
    );

    // Its date ends it: the report of that day includes the entry again.
    let met = principal(&["dpo"]);
    let later = (today + time::Duration::days(30))
        .with_time(time::Time::MIDNIGHT)
        .assume_utc();
    let on_the_day = crate::services::oversight::subject_report(&world.ledger, &met, "P-1", later)
        .await
        .unwrap();
    assert_eq!(
        (on_the_day.disclosures.len(), on_the_day.withheld.len()),
        (1, 0)
    );
    let day_before = crate::services::oversight::subject_report(
        &world.ledger,
        &met,
        "P-1",
        later - time::Duration::seconds(1),
    )
    .await
    .unwrap();
    assert_eq!(
        (day_before.disclosures.len(), day_before.withheld.len()),
        (0, 1)
    );
    let withheld = day_before.withheld[0].restriction.as_ref().unwrap();
    assert_eq!(
        (
            withheld.restricted_by.as_str(),
            withheld.restricted_by_agency_id.as_str()
        ),
        ("u-dpo", "met-police")
    );

    // Lifted early, also recorded; the report includes it again at once.
    let lifted = world
        .post(
            &dpo,
            &format!("/console/entries/{id}/lift"),
            &[("reason", "Suspect charged; OP-HERON closed")],
        )
        .await;
    assert_eq!(lifted.status, StatusCode::SEE_OTHER, "{}", lifted.body);
    let again = world
        .post(&dpo, "/console/subject", &[("person", "P-1")])
        .await;
    assert!(again.body.contains("<caption>1 disclosure</caption>"));
    assert!(!again.body.contains("withheld under s.45"));
    let last = entries_of(&world.ledger, "review").await.pop().unwrap();
    assert!(last.restriction.unwrap().lifted);
    assert_eq!(last.target, id);
}

async fn restrict_as(world: &World, who: &Signed, id: &str, until: &str) -> Answer {
    world
        .post(
            who,
            &format!("/console/entries/{id}/restrict"),
            &[("until", until), ("reason", "Live investigation OP-HERON")],
        )
        .await
}

#[tokio::test]
async fn restrictions_are_refused_to_non_parties_auditors_and_bad_dates() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let auditor = world.sign_in(&["auditor"]).await;
    let until = (time::OffsetDateTime::now_utc().date() + time::Duration::days(10)).to_string();
    // Hackney's share is no business of the Met's DPO, and the try is recorded.
    let theirs = restrict_as(&world, &dpo, &seeded_id(99), &until).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let looks = entries_of(&world.ledger, "oversee").await;
    let refused = looks.last().unwrap();
    assert_eq!(
        (refused.target.as_str(), refused.error_reason.as_str()),
        (seeded_id(99).as_str(), "NOT_FOUND")
    );
    assert_eq!(
        restrict_as(&world, &auditor, &seeded_id(7), &until)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let past = restrict_as(&world, &dpo, &seeded_id(7), "2020-01-01").await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST);
    assert!(past.body.contains("must be in the future"), "{}", past.body);
    // A denial disclosed nothing, so there is nothing to withhold.
    world
        .seed(&[share(
            200,
            "met-police",
            "u-x",
            "missing-person",
            pb::AuditOutcome::Denied,
            &[],
        )])
        .await;
    let denied = restrict_as(&world, &dpo, &seeded_id(200), &until).await;
    assert_eq!(denied.status, StatusCode::BAD_REQUEST);
    assert!(entries_of(&world.ledger, "review").await.is_empty());
    assert!(denied.body.contains("disclosed nothing"), "{}", denied.body);
    assert!(
        world
            .ledger
            .restrictions(&[7, 62])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_restriction_that_cannot_be_recorded_is_not_honoured() {
    let world = seeded().await;
    let dpo = world.sign_in(&["dpo"]).await;
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&world.url)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let until = (time::OffsetDateTime::now_utc().date() + time::Duration::days(10)).to_string();
    let failed = world
        .post(
            &dpo,
            &format!("/console/entries/{}/restrict", seeded_id(7)),
            &[("until", &until), ("reason", "Live investigation OP-HERON")],
        )
        .await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.body
    );
    sqlx::query("DROP TRIGGER refuse")
        .execute(&mut db)
        .await
        .unwrap();
    assert!(world.ledger.restrictions(&[7]).await.unwrap().is_empty());
    let report = world
        .post(&dpo, "/console/subject", &[("person", "P-1")])
        .await;
    assert!(report.body.contains("<caption>1 disclosure</caption>"));
}

/// Times filtered search pages, end to end through the router, over a
/// ledger of 1,000,000 recorded shares on PostgreSQL, or on SQLite with
/// `LIAISON_BENCH_SQLITE=1` (`BENCHMARKS.md`). `LIAISON_BENCH_ENTRIES`
/// changes the size. `LIAISON_BENCH_KEEP=1` keeps the filled database and
/// prints its URL, so the pages' plans can be read on the same rows;
/// `LIAISON_BENCH_URL` times the pages over such a kept database without
/// filling it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: fills a database with 1,000,000 entries"]
async fn search_pages_over_a_million_entries() {
    let n: u32 = std::env::var("LIAISON_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kept = std::env::var("LIAISON_BENCH_URL").ok();
    let keep = std::env::var("LIAISON_BENCH_KEEP").is_ok();
    let sqlite = std::env::var("LIAISON_BENCH_SQLITE").is_ok()
        || kept.as_deref().is_some_and(|u| u.starts_with("sqlite:"));
    let (url, db, dir) = if let Some(url) = &kept {
        (url.clone(), None, tempfile::tempdir().unwrap())
    } else if sqlite {
        let (url, dir) = fresh_sqlite_db();
        (url, None, dir)
    } else {
        let (url, db) = liaison_ledger::test_util::fresh_postgres_db().await;
        (url, Some(db), tempfile::tempdir().unwrap())
    };
    let (_db, dir) = if keep {
        println!("the database is kept: LIAISON_BENCH_URL={url}");
        std::mem::forget(db);
        let _kept = dir.keep();
        (None, tempfile::tempdir().unwrap())
    } else {
        (db, dir)
    };
    let world = Arc::new(World::start_at(&url, dir).await);
    if kept.is_none() {
        fill(&world, n).await;
        // What autovacuum's analyze would do shortly after a fill this size;
        // `LIAISON_BENCH_STALE=1` times the pages before it has.
        if std::env::var("LIAISON_BENCH_STALE").is_err() {
            if sqlite {
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
            } else {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
            }
        }
    }
    let dpo = world.sign_in(&["dpo"]).await;
    type Form<'a> = &'a [(&'a str, &'a str)];
    let last_week = format!(
        "/console/entries?from={}",
        time::OffsetDateTime::now_utc().date() - time::Duration::days(6)
    );
    let cases: [(&str, &str, Form<'_>); 10] = [
        (
            "newest page, no filter",
            "/console/entries?order=newest",
            &[],
        ),
        ("outcome denied", "/console/entries?outcome=denied", &[]),
        (
            "purpose + user",
            "/console/entries?purpose=missing-person&user=u-101",
            &[],
        ),
        (
            "date range (one week, a year back)",
            "/console/entries?from=2025-12-01&until=2025-12-07",
            &[],
        ),
        ("date range (the last seven days)", &last_week, &[]),
        (
            "deep page (after 500000)",
            "/console/entries?after=500000",
            &[],
        ),
        (
            "provider (one share in twenty)",
            "/console/entries?provider=islington",
            &[],
        ),
        (
            "break-glass only (one in a thousand)",
            "/console/entries?break_glass=on",
            &[],
        ),
        (
            "person (POST)",
            "/console/entries",
            &[("subject", "P-4242")],
        ),
        (
            "person + outcome (POST)",
            "/console/entries",
            &[("subject", "P-4242"), ("outcome", "disclosed")],
        ),
    ];
    for (label, path, form) in cases {
        let mut times = Vec::new();
        for round in 0..23 {
            let t = std::time::Instant::now();
            let answer = if form.is_empty() {
                world.get(&dpo, path).await
            } else {
                world.post(&dpo, path, form).await
            };
            let elapsed = t.elapsed();
            assert_eq!(answer.status, StatusCode::OK, "{label}");
            if round >= 3 {
                times.push(elapsed);
            }
            if round == 0 {
                println!("{label}: {} rows", rows(&answer.body));
            }
        }
        times.sort_unstable();
        println!(
            "{label}: median {:.1?}, p95 {:.1?}, max {:.1?}",
            times[times.len() / 2],
            times[times.len() * 95 / 100],
            times[times.len() - 1]
        );
    }
}

/// Appends `n` synthetic shares through the share stack's audit append, as
/// `search_pages_over_a_million_entries` describes them.
async fn fill(world: &Arc<World>, n: u32) {
    use std::sync::atomic::{AtomicU32, Ordering};
    let started = std::time::Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let next = Arc::new(AtomicU32::new(1));
    let purposes = [
        "safeguarding-children",
        "missing-person",
        "domestic-abuse-marac",
        "crime-prevention",
    ];
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (world, next) = (world.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i > n {
                    break;
                }
                let outcome = if i % 10 == 0 {
                    pb::AuditOutcome::Denied
                } else {
                    pb::AuditOutcome::Disclosed
                };
                let person = format!("P-{}", i % 50_000);
                let mut e = share(
                    i,
                    "met-police",
                    &format!("u-{}", i % 500),
                    purposes[usize::try_from(i % 4).unwrap()],
                    outcome,
                    &[&person],
                );
                // Every twentieth share is of another provider's data, every
                // thousandth a break-glass one.
                if i % 20 == 7 {
                    e.provider_agency_id = "islington".into();
                }
                if i % 1_000 == 3 {
                    e.break_glass = Some(pb::BreakGlass {
                        reason: "a child missing overnight, the MASH closed".into(),
                    });
                }
                // One a minute, in append order as a live ledger is: the
                // newest entry is the latest.
                e.recorded_at = Some(prost_types::Timestamp {
                    seconds: now - i64::from(n - i) * 60,
                    nanos: 0,
                });
                audit::append(&world.ledger, &e).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("filled {n} entries in {:.1?}", started.elapsed());
}
