//! Exports of a ledger search: CSV for spreadsheets, JSON for scripts, and
//! a FHIR R4 `Bundle` of `AuditEvent`s in the shape of IHE Basic Audit Log
//! Patterns (BALP), for health partners' audit repositories.
//!
//! ```text
//! GET  /console/entries/export?format=csv|json|fhir&…   non-personal filters
//! POST /console/entries/export                          any filters
//! ```
//!
//! An export holds every matching entry up to [`MAX_EXPORT`]; a larger one
//! is refused rather than cut short, so a file never looks complete when it
//! is not.

use axum::{
    Form,
    extract::{
        Query, State,
        rejection::{FormRejection, QueryRejection},
    },
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{
    ConsoleState,
    entries::{Search, find, overseer, person_in_url},
    error::ConsoleError,
    guard::SignedIn,
    oversee::{self, Look},
    record::{Record, rfc3339},
};

/// The most entries one export holds.
pub const MAX_EXPORT: usize = 100_000;

/// `GET /console/entries/export`.
pub(super) async fn export_get(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    query: Result<Query<Search>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(search) = query.map_err(|e| ConsoleError::BadRequest {
        message: format!("the export is malformed: {}", e.body_text()),
    })?;
    if !search.subject.trim().is_empty() {
        return Err(person_in_url());
    }
    export(&state, &signed_in, &search).await
}

/// `POST /console/entries/export`.
pub(super) async fn export_post(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    form: Result<Form<Search>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(search) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the export is malformed: {}", e.body_text()),
    })?;
    export(&state, &signed_in, &search).await
}

async fn export(
    state: &ConsoleState,
    signed_in: &SignedIn,
    search: &Search,
) -> Result<Response, ConsoleError> {
    let principal = overseer(signed_in)?;
    let format = match search.format.trim() {
        f @ ("csv" | "json" | "fhir") => f,
        other => {
            return Err(ConsoleError::BadRequest {
                message: format!("`{other}` is not an export format; use `csv`, `json` or `fhir`"),
            });
        }
    };
    let mut criteria = search.criteria(principal)?;
    criteria.after = None;
    let found = find(
        state.ledger()?,
        &criteria,
        MAX_EXPORT.saturating_add(1),
        usize::MAX,
    )
    .await?;
    if found.records.len() > MAX_EXPORT {
        return Err(ConsoleError::BadRequest {
            message: format!(
                "more than {MAX_EXPORT} entries match; narrow the search, for example by date"
            ),
        });
    }
    tracing::info!(
        agency = %principal.agency,
        format,
        entries = found.records.len(),
        "console export"
    );
    oversee::record(
        state.ledger()?,
        principal,
        Look::answered(
            "/console/entries/export",
            format!(
                "{format} export ({}); {} entries",
                oversee::describe(&search.fields()),
                found.records.len()
            ),
        ),
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    let (body, content_type, extension) = match format {
        "csv" => (to_csv(&found.records)?, "text/csv; charset=utf-8", "csv"),
        "json" => (
            serde_json::to_vec_pretty(&found.records).map_err(ConsoleError::internal)?,
            "application/json",
            "json",
        ),
        _ => (
            serde_json::to_vec_pretty(&fhir_bundle(&found.records, now))
                .map_err(ConsoleError::internal)?,
            "application/fhir+json",
            "fhir.json",
        ),
    };
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"liaison-audit-{stamp}.{extension}\""
    ))
    .map_err(ConsoleError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The CSV columns, in order.
const HEADER: &[&str] = &[
    "entry_id",
    "sequence",
    "recorded_at",
    "agency",
    "user",
    "user_name",
    "roles",
    "on_behalf_of",
    "recipient_agency",
    "provider_agency",
    "action",
    "method",
    "purpose",
    "justification",
    "case_reference",
    "isa_id",
    "isa_version",
    "legal_basis",
    "policy_version",
    "allowed",
    "matched_rules",
    "outcome",
    "error_reason",
    "error_message",
    "datasets",
    "people",
    "fields_disclosed",
    "trace_id",
    "correlation_id",
    "break_glass",
    "target",
    "leaf_hash",
];

/// The records as CSV, one row per entry, lists joined with `; `.
pub(super) fn to_csv(records: &[Record]) -> Result<Vec<u8>, ConsoleError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(HEADER).map_err(ConsoleError::internal)?;
    for r in records {
        let behalf = r
            .on_behalf_of
            .as_ref()
            .map(|o| format!("{} ({})", o.user, o.agency))
            .unwrap_or_default();
        let fields: Vec<String> = r
            .disclosures
            .iter()
            .map(|d| format!("{}: {}", d.person_id, d.fields.join(" ")))
            .collect();
        let row = [
            r.entry_id.clone(),
            r.sequence.to_string(),
            r.recorded_at.clone(),
            r.agency.clone(),
            r.user.clone(),
            r.user_name.clone(),
            r.roles.join("; "),
            behalf,
            r.recipient_agency.clone(),
            r.provider_agency.clone(),
            r.action.clone(),
            r.method.clone(),
            r.purpose.clone(),
            r.justification.clone(),
            r.case_reference.clone(),
            r.isa_id.clone(),
            r.isa_version.to_string(),
            r.legal_basis.clone(),
            r.policy_version.clone(),
            r.allowed.to_string(),
            r.matched_rules.join("; "),
            r.outcome.clone(),
            r.error_reason.clone(),
            r.error_message.clone(),
            r.datasets().join("; "),
            r.people().join("; "),
            fields.join("; "),
            r.trace_id.clone(),
            r.correlation_id.clone(),
            r.break_glass.clone().unwrap_or_default(),
            r.target.clone(),
            r.leaf_hash.clone(),
        ];
        out.write_record(row.into_iter().map(defuse))
            .map_err(ConsoleError::internal)?;
    }
    out.into_inner().map_err(ConsoleError::internal)
}

/// A cell that cannot be taken for a spreadsheet formula: one starting
/// `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` (OWASP's
/// advice on CSV injection). Justifications and error messages are free
/// text from callers, so this matters.
fn defuse(s: String) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    }
}

/// The records as a FHIR R4 `Bundle` (type `collection`) of `AuditEvent`s
/// shaped as BALP's Query (searches) and Read (reads) events.
pub(super) fn fhir_bundle(records: &[Record], now: OffsetDateTime) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": rfc3339(now),
        "total": records.len(),
        "entry": records.iter().map(|r| json!({
            "fullUrl": format!("urn:uuid:{}", r.entry_id),
            "resource": audit_event(r),
        })).collect::<Vec<_>>(),
    })
}

fn audit_event(r: &Record) -> Value {
    let read = r.action == "read";
    let (outcome, outcome_desc) = match r.outcome.as_str() {
        "disclosed" | "nothing_found" => ("0", r.outcome_words().to_owned()),
        "denied" | "invalid" => ("4", format!("{}: {}", r.outcome_words(), r.error_reason)),
        _ => ("8", format!("{}: {}", r.outcome_words(), r.error_reason)),
    };
    let mut agents = vec![json!({
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP", "display": "information recipient" }] },
        "who": {
            "identifier": { "system": r.issuer, "value": r.user },
            "display": r.who(),
        },
        "role": r.roles.iter().map(|role| json!({ "text": role })).collect::<Vec<_>>(),
        "requestor": true,
        "policy": [r.isa_id],
        "network": { "address": r.client_address, "type": "2" },
        "purposeOfUse": [{ "text": r.purpose }],
    })];
    if let Some(o) = &r.on_behalf_of {
        agents.push(json!({
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                "code": "PROV", "display": "healthcare provider" }],
                "text": "on behalf of" },
            "who": {
                "identifier": { "value": o.user },
                "display": if o.user_name.is_empty() { &o.user } else { &o.user_name },
            },
            "requestor": false,
        }));
    }
    if !r.client_id.is_empty() {
        agents.push(json!({
            "type": { "coding": [{
                "system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": "110153", "display": "Source Role ID" }] },
            "who": { "identifier": { "value": r.client_id } },
            "requestor": false,
        }));
    }
    agents.push(json!({
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "custodian", "display": "Custodian" }] },
        "who": { "display": "Liaison gateway" },
        "requestor": false,
    }));
    let mut entities = vec![json!({
        "what": { "identifier": { "system": "urn:liaison:audit-entry", "value": r.entry_id } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                  "code": "2", "display": "System Object" },
        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role",
                  "code": if read { "4" } else { "24" },
                  "display": if read { "Domain Resource" } else { "Query" } },
        "description": r.method,
        "query": base64::engine::general_purpose::STANDARD.encode(query_text(r)),
        "detail": [
            { "type": "isa", "valueString": format!("{} v{}", r.isa_id, r.isa_version) },
            { "type": "legal-basis", "valueString": r.legal_basis },
            { "type": "policy-version", "valueString": r.policy_version },
            { "type": "matched-rules", "valueString": r.matched_rules.join("; ") },
            { "type": "leaf-hash", "valueString": r.leaf_hash },
            { "type": "provider-agency", "valueString": r.provider_agency },
        ],
    })];
    for d in &r.disclosures {
        entities.push(json!({
            "what": { "identifier": { "value": d.person_id } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "1", "display": "Patient" },
            "description": d.dataset_id,
            "detail": [
                { "type": "fields", "valueString": d.fields.join(" ") },
                { "type": "records", "valueString": d.record_ids.join(" ") },
                { "type": "digest", "valueString": d.digest },
            ],
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": r.entry_id,
        "meta": { "profile": [if read {
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"
        } else {
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query"
        }] },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                  "code": "rest", "display": "RESTful Operation" },
        "subtype": [if read {
            json!({ "system": "http://hl7.org/fhir/restful-interaction", "code": "read", "display": "read" })
        } else {
            json!({ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112", "display": "Query" })
        }],
        "action": if read { "R" } else { "E" },
        "recorded": r.recorded_at,
        "outcome": outcome,
        "outcomeDesc": outcome_desc,
        "purposeOfEvent": [{
            "coding": [{ "system": "urn:liaison:purpose", "code": r.purpose }],
            "text": r.purpose,
        }],
        "agent": agents,
        "source": {
            "site": r.recipient_agency,
            "observer": { "display": "Liaison gateway" },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                       "code": "4", "display": "Application Server" }],
        },
        "entity": entities,
    });
    if r.purpose.is_empty()
        && let Some(obj) = event.as_object_mut()
    {
        obj.remove("purposeOfEvent");
    }
    event
}

/// What the query entity carries: the request as the ledger knows it, the
/// justification and case reference, never the data returned.
fn query_text(r: &Record) -> String {
    format!(
        "method={} purpose={} datasets={} case={} justification={}",
        r.method,
        r.purpose,
        r.datasets().join(","),
        r.case_reference,
        r.justification
    )
}
