//! A deterministic, entirely fictional health JSON API, served over HTTP
//! for demonstrations and tests of the JSON over HTTP connector.
//!
//! Its shape is deliberately unlike the common model, after the FHIR style
//! many health systems use: names are arrays of `{family, given[]}`, NHS
//! numbers are spaced, postcodes are typed any old way, search results are
//! wrapped in a bundle and paged by `next` links, and records live at their
//! own endpoints. `connectors/examples/health-api.toml` maps it.
//!
//! | request | answer |
//! |---|---|
//! | `GET /fhir/patients?surname=&given=&dob=&postcode=&nhs=&_count=&page=` | `{ "total", "entry": [{ "resource": patient }], "link": [{ "relation": "next", "url" }] }`, at most two per page; no criteria, no one |
//! | `GET /fhir/patients/{id}` | a patient: `{ "id", "nhsNo", "name": [{ "use", "family", "given": [] }], "gender", "birthDate", "address": [{ "line": [], "city", "postalCode", "period": { "start", "end" } }], "meta": { "lastUpdated" } }`, or 404 |
//! | `GET /fhir/patients/{id}/alerts` | `{ "alerts": [{ "alertId", "code" (CPP, SH, VUL, DV), "text", "period" }], "link": [] }` |
//! | `GET /fhir/patients/{id}/safeguarding` | `{ "items": [{ "ref", "category", "summary", "raisedAt", "status", "lead" }], "link": [] }` |
//! | `GET /fhir/changes?since=&_count=` | `{ "changes": [{ "seq", "patient", "at" }] }`: the change log after `since` (from the start without it), oldest first, at most `_count` (1 to 100) |
//! | `GET /fhir/changes/latest` | `{ "seq" }`, the latest change's sequence number, `null` before any |
//!
//! The change log starts empty; [`HealthServer::add_alert`] adds an alert
//! to a patient and logs the change, [`HealthServer::log_change`] logs one
//! without changing anything.
//!
//! # The fixed patients
//!
//! - `H1001` **Leah Jade MARSH**, born 2013-05-14, NHS `943 476 5919`,
//!   `e81dy`; alert `CPP` (child protection plan, `AL-1`); safeguarding
//!   item `SG-1` (neglect, open).
//! - `H1002` **Kerry Anne MARSH**, born 1989-11-02, NHS `999 000 0018`,
//!   `E8 1DY`; alerts `SH` (`AL-2`) and `DV` (`AL-3`).
//! - `H1004` **Jordan HALE**, every value hostile: born `2010-02-31`, NHS
//!   `943 476 5918`, postcode `not a postcode`; alert of unknown code `ZZZ`
//!   (`AL-4`, skipped) beside a valid `VUL` (`AL-5`); a safeguarding item
//!   with no `ref` (skipped) and one (`SG-2`) with a 100 KiB summary.
//!
//! Everyone else is generated from the seed as `H2001`, `H2002`, ….
//!
//! # Faults on demand
//!
//! Patient ids that misbehave, for tests of containment: `stall` never
//! answers, `html` answers HTML, `huge` answers 3 MiB of JSON,
//! `redirect` redirects to another host, `unavailable` answers 503, and
//! `wrong-person` answers with Leah's record. A search for surname
//! `OFFSITE` answers one patient and a next link to another host.
//! [`HealthServer::fail_next`] makes the next requests answer 503.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Leah Marsh's patient id.
pub const LEAH_MARSH: &str = "H1001";
/// Kerry Marsh's patient id.
pub const KERRY_MARSH: &str = "H1002";
/// Jordan Hale's patient id; every value about them is malformed.
pub const JORDAN_HALE: &str = "H1004";

/// Results per page, whatever `_count` asks for, so paging is exercised.
const PAGE_SIZE: usize = 2;

/// A running synthetic health API on a local port; stopped when dropped.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct ServerState {
    patients: Vec<Patient>,
    base: String,
    fail_next: AtomicU32,
    requests: AtomicU64,
    last_headers: Mutex<HeaderMap>,
    /// Alerts added since the server started, by patient id.
    added_alerts: Mutex<HashMap<String, Vec<Value>>>,
    /// The change log: sequence number and patient id, oldest first.
    changes: Mutex<Vec<(u64, String)>>,
}

#[derive(Debug, Clone)]
struct Patient {
    resource: Value,
    alerts: Vec<Value>,
    safeguarding: Vec<Value>,
}

impl HealthServer {
    /// Serves the fixed patients and `people` generated from `seed` on an
    /// ephemeral port of 127.0.0.1.
    pub async fn start(people: usize, seed: u64) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState {
            patients: patients(people, seed),
            base: format!("http://{addr}/fhir"),
            fail_next: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            last_headers: Mutex::new(HeaderMap::new()),
            added_alerts: Mutex::new(HashMap::new()),
            changes: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/fhir/patients", get(search))
            .route("/fhir/patients/{id}", get(patient))
            .route("/fhir/patients/{id}/alerts", get(alerts))
            .route("/fhir/patients/{id}/safeguarding", get(safeguarding))
            .route("/fhir/changes", get(changes))
            .route("/fhir/changes/latest", get(latest_change))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "synthetic health server stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The API's base URL, `http://127.0.0.1:<port>/fhir`.
    pub fn base_url(&self) -> String {
        self.state.base.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes the next `n` requests answer 503.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// A header of the last request, if it had one.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.state
            .last_headers
            .lock()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// How many patients it serves, the fixed ones included.
    pub fn patients(&self) -> usize {
        self.state.patients.len()
    }

    /// Adds an alert (`code` as the API spells it, such as `VUL`) to a
    /// patient and logs the change; returns the alert's id.
    pub fn add_alert(&self, patient: &str, code: &str, text: &str) -> String {
        let alert_id = {
            let mut added = self.state.added_alerts.lock();
            let count: usize = added.values().map(Vec::len).sum();
            let alert_id = format!("AL-N{}", count + 1);
            added.entry(patient.to_owned()).or_default().push(json!({
                "alertId": alert_id, "code": code, "text": text,
                "period": { "start": "2026-12-05" },
            }));
            alert_id
        };
        self.log_change(patient);
        alert_id
    }

    /// Logs a change to a patient without changing their data, as a
    /// system that logs every save does; returns its sequence number.
    pub fn log_change(&self, patient: &str) -> u64 {
        let mut log = self.state.changes.lock();
        let seq = log.last().map_or(1, |(seq, _)| seq + 1);
        log.push((seq, patient.to_owned()));
        seq
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts the request, remembers its headers, and fails it if asked to.
fn arrive(state: &ServerState, headers: &HeaderMap) -> Option<Response> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock() = headers.clone();
    let failing = state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    failing.then(|| (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response())
}

fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

fn text_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn matches(resource: &Value, params: &HashMap<String, String>) -> bool {
    let names = resource
        .get("name")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let surname_ok = params.get("surname").is_none_or(|want| {
        names
            .iter()
            .any(|n| text_at(n, "/family").eq_ignore_ascii_case(want))
    });
    let given_ok = params.get("given").is_none_or(|want| {
        let want = want.to_lowercase();
        names.iter().any(|n| {
            n.get("given")
                .and_then(Value::as_array)
                .and_then(|g| g.first())
                .and_then(Value::as_str)
                .is_some_and(|g| g.to_lowercase().starts_with(&want))
        })
    });
    let dob_ok = params
        .get("dob")
        .is_none_or(|want| text_at(resource, "/birthDate") == want);
    let nhs_ok = params
        .get("nhs")
        .is_none_or(|want| compact(text_at(resource, "/nhsNo")) == compact(want));
    let postcode_ok = params.get("postcode").is_none_or(|want| {
        resource
            .get("address")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|a| compact(text_at(a, "/postalCode")) == compact(want))
            })
    });
    surname_ok && given_ok && dob_ok && nhs_ok && postcode_ok
}

async fn search(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failed) = arrive(&state, &headers) {
        return failed;
    }
    let criteria = ["surname", "given", "dob", "nhs", "postcode"];
    let offsite = params
        .get("surname")
        .is_some_and(|s| s.eq_ignore_ascii_case("offsite"));
    let hits: Vec<&Patient> = if offsite {
        state.patients.iter().take(1).collect()
    } else if criteria.iter().any(|c| params.contains_key(*c)) {
        state
            .patients
            .iter()
            .filter(|p| matches(&p.resource, &params))
            .collect()
    } else {
        // Never list everyone.
        Vec::new()
    };
    let page: usize = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let size = params
        .get("_count")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(PAGE_SIZE)
        .clamp(1, PAGE_SIZE);
    let entries: Vec<Value> = hits
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|p| json!({ "fullUrl": format!("{}/patients/{}", state.base, text_at(&p.resource, "/id")), "resource": p.resource }))
        .collect();
    let mut links = vec![json!({ "relation": "self", "url": "…" })];
    if offsite {
        links.push(
            json!({ "relation": "next", "url": "http://elsewhere.invalid/fhir/patients?page=2" }),
        );
    } else if page * size < hits.len() {
        let mut next: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.sort();
        next.push(("page".into(), (page + 1).to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        links
            .push(json!({ "relation": "next", "url": format!("{}/patients?{query}", state.base) }));
    }
    axum::Json(json!({
        "resourceType": "Bundle",
        "total": hits.len(),
        "entry": entries,
        "link": links,
    }))
    .into_response()
}

/// The patient, or an answer for the misbehaving ids.
fn find<'s>(state: &'s ServerState, id: &str) -> Result<&'s Patient, Box<Response>> {
    match id {
        "stall" => Err(Box::new(StatusCode::REQUEST_TIMEOUT.into_response())),
        "html" => Err(Box::new(
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Login</body></html>",
            )
                .into_response(),
        )),
        "huge" => {
            let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
            Err(Box::new(
                ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            ))
        }
        "redirect" => Err(Box::new(
            (
                StatusCode::FOUND,
                [(
                    header::LOCATION,
                    "http://elsewhere.invalid/fhir/patients/H1001",
                )],
            )
                .into_response(),
        )),
        "unavailable" => Err(Box::new(StatusCode::SERVICE_UNAVAILABLE.into_response())),
        "wrong-person" => state
            .patients
            .iter()
            .find(|p| text_at(&p.resource, "/id") == LEAH_MARSH)
            .ok_or_else(|| Box::new(StatusCode::NOT_FOUND.into_response())),
        _ => state
            .patients
            .iter()
            .find(|p| text_at(&p.resource, "/id") == id)
            .ok_or_else(|| {
                Box::new(
                    (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({ "error": "no such patient" })),
                    )
                        .into_response(),
                )
            }),
    }
}

async fn patient(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(failed) = arrive(&state, &headers) {
        return failed;
    }
    if id == "stall" {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    match find(&state, &id) {
        Ok(p) => axum::Json(p.resource.clone()).into_response(),
        Err(response) => *response,
    }
}

async fn alerts(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(failed) = arrive(&state, &headers) {
        return failed;
    }
    match find(&state, &id) {
        Ok(p) => {
            let mut alerts = p.alerts.clone();
            if let Some(added) = state.added_alerts.lock().get(&id) {
                alerts.extend(added.iter().cloned());
            }
            axum::Json(json!({ "alerts": alerts, "link": [] })).into_response()
        }
        Err(response) => *response,
    }
}

async fn safeguarding(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(failed) = arrive(&state, &headers) {
        return failed;
    }
    match find(&state, &id) {
        Ok(p) => axum::Json(json!({ "items": p.safeguarding, "link": [] })).into_response(),
        Err(response) => *response,
    }
}

async fn changes(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failed) = arrive(&state, &headers) {
        return failed;
    }
    let since: u64 = match params.get("since").map(|s| s.parse()) {
        None => 0,
        Some(Ok(since)) => since,
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": "since is a sequence number" })),
            )
                .into_response();
        }
    };
    let count = params
        .get("_count")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let changes: Vec<Value> = state
        .changes
        .lock()
        .iter()
        .filter(|(seq, _)| *seq > since)
        .take(count)
        .map(|(seq, patient)| json!({ "seq": seq, "patient": patient, "at": "2026-12-05T10:30:00Z" }))
        .collect();
    axum::Json(json!({ "changes": changes })).into_response()
}

async fn latest_change(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Some(failed) = arrive(&state, &headers) {
        return failed;
    }
    let seq = state.changes.lock().last().map(|(seq, _)| *seq);
    axum::Json(json!({ "seq": seq })).into_response()
}

#[expect(
    clippy::too_many_arguments,
    reason = "each fixture patient reads best as one call"
)]
fn resource(
    id: &str,
    nhs: &str,
    family: &str,
    given: &[&str],
    gender: &str,
    born: &str,
    address: Value,
    updated: &str,
) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "nhsNo": nhs,
        "name": [{ "use": "official", "family": family, "given": given }],
        "gender": gender,
        "birthDate": born,
        "address": [address],
        "meta": { "lastUpdated": updated },
    })
}

fn patients(people: usize, seed: u64) -> Vec<Patient> {
    let albion = |postcode: &str| {
        json!({
            "line": ["Flat 3, Kingsmead House", "27 Albion Drive"],
            "city": "London",
            "postalCode": postcode,
            "period": { "start": "2021-09-01" },
        })
    };
    let mut out = vec![
        Patient {
            resource: resource(
                LEAH_MARSH,
                "943 476 5919",
                "MARSH",
                &["Leah", "Jade"],
                "female",
                "2013-05-14",
                albion("e81dy"),
                "2024-06-12T20:15:00Z",
            ),
            alerts: vec![json!({
                "alertId": "AL-1", "code": "CPP", "text": "Subject to a child protection plan",
                "period": { "start": "2024-03-05", "end": null },
            })],
            safeguarding: vec![json!({
                "ref": "SG-1", "category": "neglect",
                "summary": "Missed immunisations and dental appointments; health visitor concerned.",
                "raisedAt": "2024-03-04T10:00:00Z", "status": "open",
                "lead": "Named nurse for safeguarding children",
            })],
        },
        Patient {
            resource: resource(
                KERRY_MARSH,
                "999 000 0018",
                "MARSH",
                &["Kerry", "Anne"],
                "female",
                "1989-11-02",
                albion("E8 1DY"),
                "2024-03-02T09:00:00Z",
            ),
            alerts: vec![
                json!({ "alertId": "AL-2", "code": "SH", "text": "History of self-harm",
                        "period": { "start": "2022-01-10" } }),
                json!({ "alertId": "AL-3", "code": "DV", "text": "Disclosed domestic abuse",
                        "period": { "start": "2024-03-02" } }),
            ],
            safeguarding: Vec::new(),
        },
        Patient {
            resource: resource(
                JORDAN_HALE,
                "943 476 5918",
                "HALE",
                &["Jordan"],
                "unknown",
                "2010-02-31",
                json!({ "line": ["9 Cedar Close"], "city": "London", "postalCode": "not a postcode" }),
                "yesterday",
            ),
            alerts: vec![
                json!({ "alertId": "AL-4", "code": "ZZZ", "text": "Unknown flag" }),
                json!({ "alertId": "AL-5", "code": "VUL", "text": "Vulnerable", "period": { "start": "2023-07-01" } }),
            ],
            safeguarding: vec![
                json!({ "category": "neglect", "summary": "no reference" }),
                json!({ "ref": "SG-2", "category": "other", "summary": "Repeated narrative text. ".repeat(4096),
                        "raisedAt": "2024-01-01T00:00:00Z", "status": "closed" }),
            ],
        },
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    const FAMILY: &[&str] = &[
        "ASHWORTH",
        "BEGUM",
        "CHEN",
        "DAVIES",
        "EKWUEME",
        "FINCH",
        "GRIFFITHS",
        "HUSSAIN",
        "IBRAHIM",
        "JONES",
        "KOWALSKI",
        "LOWE",
        "MENSAH",
        "NOWAK",
        "OKAFOR",
        "PATEL",
    ];
    const GIVEN: &[&str] = &[
        "Amira", "Ben", "Chloe", "Daniel", "Ella", "Farah", "George", "Hana", "Isaac", "Jade",
        "Kofi", "Lily", "Mo", "Nia", "Oscar", "Priya",
    ];
    const OUTWARD: &[&str] = &["E8", "E9", "N16", "BR1", "SE15", "SW9"];
    for i in 0..people {
        let id = format!("H{}", 2001 + i);
        let family = FAMILY
            .get(rng.usize(..FAMILY.len()))
            .copied()
            .unwrap_or("JONES");
        let given = GIVEN
            .get(rng.usize(..GIVEN.len()))
            .copied()
            .unwrap_or("Ben");
        let outward = OUTWARD
            .get(rng.usize(..OUTWARD.len()))
            .copied()
            .unwrap_or("E8");
        let postcode = format!(
            "{outward} {}{}{}",
            rng.u8(1..10),
            char::from(rng.u8(b'A'..=b'Z')),
            char::from(rng.u8(b'A'..=b'Z'))
        );
        let born = format!(
            "{}-{:02}-{:02}",
            rng.i32(1950..2020),
            rng.u8(1..=12),
            rng.u8(1..=28)
        );
        let nhs = super::test_nhs_number(&mut rng);
        let mut alerts = Vec::new();
        if rng.u8(0..100) < 20 {
            alerts.push(json!({ "alertId": format!("AL-{}", 100 + i), "code": "VUL",
                                "text": "Vulnerable", "period": { "start": "2023-01-01" } }));
        }
        out.push(Patient {
            resource: resource(
                &id,
                &nhs,
                family,
                &[given],
                if rng.bool() { "female" } else { "male" },
                &born,
                json!({ "line": [format!("{} High Street", rng.u16(1..300))], "city": "London", "postalCode": postcode }),
                "2024-01-01T00:00:00Z",
            ),
            alerts,
            safeguarding: Vec::new(),
        });
    }
    out
}
