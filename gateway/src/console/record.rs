//! One ledger entry in plain words: what the console's pages and exports
//! show. The canonical protobuf body stays the evidence; this is a reading
//! of it, built once so the page, the CSV, the JSON and the FHIR export
//! cannot disagree about what an entry says.

use liaison_ledger::StoredEntry;
use liaison_proto::v1 as pb;
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// An entry's s.62 record, every field a string or a list of them.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Record {
    pub entry_id: String,
    pub sequence: u64,
    pub recorded_at: String,
    pub agency: String,
    pub user: String,
    pub user_name: String,
    pub roles: Vec<String>,
    pub client_id: String,
    pub issuer: String,
    pub is_system: bool,
    pub on_behalf_of: Option<OnBehalf>,
    pub recipient_agency: String,
    /// The agency whose data the share concerns, if known.
    pub provider_agency: String,
    pub action: String,
    pub method: String,
    pub purpose: String,
    pub justification: String,
    pub case_reference: String,
    pub isa_id: String,
    pub isa_version: u32,
    pub legal_basis: String,
    pub policy_version: String,
    pub allowed: bool,
    pub matched_rules: Vec<String>,
    pub outcome: String,
    pub error_reason: String,
    pub error_message: String,
    pub sources: Vec<String>,
    pub gaps: Vec<Gap>,
    pub disclosures: Vec<Disclosure>,
    pub trace_id: String,
    pub correlation_id: String,
    pub client_address: String,
    /// Why emergency access was invoked, when it was.
    pub break_glass: Option<String>,
    /// What a review or administrative entry concerns.
    pub target: String,
    /// On an entry recording an s.45 restriction or its lift.
    pub restriction: Option<RestrictionNote>,
    pub leaf_hash: String,
}

/// What an entry recording a restriction says.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RestrictionNote {
    /// Withheld until (UTC), when restricting.
    pub until: Option<String>,
    /// Whether it lifts every restriction of its target.
    pub lifted: bool,
}

/// The practitioner a system acted for.
#[derive(Debug, Clone, Serialize)]
pub(super) struct OnBehalf {
    pub agency: String,
    pub user: String,
    pub user_name: String,
}

/// A source that did not answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Gap {
    pub dataset_id: String,
    pub reason: String,
    pub message: String,
}

/// What left about one person from one dataset.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Disclosure {
    pub dataset_id: String,
    pub person_id: String,
    pub record_ids: Vec<String>,
    pub fields: Vec<String>,
    pub digest: String,
}

impl Record {
    pub fn new(stored: &StoredEntry, e: pb::AuditEntry) -> Self {
        let p = e.principal.unwrap_or_default();
        Self {
            entry_id: e.entry_id,
            sequence: stored.seq,
            recorded_at: rfc3339(
                e.recorded_at
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
                    .unwrap_or(stored.recorded_at),
            ),
            agency: p.agency_id,
            user: p.subject,
            user_name: p.display_name,
            roles: p.roles,
            client_id: p.client_id,
            issuer: p.issuer,
            is_system: p.is_system,
            on_behalf_of: e.on_behalf_of.map(|o| OnBehalf {
                agency: o.agency_id,
                user: o.subject,
                user_name: o.display_name,
            }),
            recipient_agency: e.recipient_agency_id,
            // Entries recorded before the body named the provider carry it
            // in the index only, filled in from their agreement.
            provider_agency: if e.provider_agency_id.is_empty() {
                stored.index.provider.clone()
            } else {
                e.provider_agency_id
            },
            action: enum_name(
                pb::AuditAction::try_from(e.action)
                    .unwrap_or_default()
                    .as_str_name(),
                "AUDIT_ACTION_",
            ),
            method: e.method,
            purpose: e.purpose,
            justification: e.justification,
            case_reference: e.case_reference,
            isa_id: e.isa_id,
            isa_version: e.isa_version,
            legal_basis: e.legal_basis,
            policy_version: e.policy_version,
            allowed: e.allowed,
            matched_rules: e.matched_rules,
            outcome: enum_name(
                pb::AuditOutcome::try_from(e.outcome)
                    .unwrap_or_default()
                    .as_str_name(),
                "AUDIT_OUTCOME_",
            ),
            error_reason: e.error_reason,
            error_message: e.error_message,
            sources: e.sources,
            gaps: e
                .gaps
                .into_iter()
                .map(|g| Gap {
                    dataset_id: g.dataset_id,
                    reason: g.reason,
                    message: g.message,
                })
                .collect(),
            disclosures: e
                .disclosures
                .into_iter()
                .map(|d| Disclosure {
                    dataset_id: d.dataset_id,
                    person_id: d.person_id,
                    record_ids: d.record_ids,
                    fields: d.fields,
                    digest: d.digest,
                })
                .collect(),
            trace_id: e.trace_id,
            correlation_id: e.correlation_id,
            client_address: e.client_address,
            break_glass: e.break_glass.map(|b| b.reason),
            target: e.target,
            restriction: e.restriction.map(|r| RestrictionNote {
                until: r
                    .until
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
                    .map(rfc3339),
                lifted: r.lifted,
            }),
            leaf_hash: hex::encode(stored.leaf_hash),
        }
    }

    /// The user as a person would name them.
    pub fn who(&self) -> &str {
        if self.user_name.is_empty() {
            &self.user
        } else {
            &self.user_name
        }
    }

    /// The datasets the entry touched: consulted, disclosed from, or
    /// missing from the answer.
    pub fn datasets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .sources
            .iter()
            .map(String::as_str)
            .chain(self.disclosures.iter().map(|d| d.dataset_id.as_str()))
            .chain(self.gaps.iter().map(|g| g.dataset_id.as_str()))
            .filter(|d| !d.is_empty())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The people the entry disclosed about, each once.
    pub fn people(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .disclosures
            .iter()
            .map(|d| d.person_id.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The outcome in words.
    pub fn outcome_words(&self) -> &'static str {
        outcome_words(&self.outcome)
    }
}

/// An outcome's index name in words.
pub(super) fn outcome_words(outcome: &str) -> &'static str {
    match outcome {
        "disclosed" => "Disclosed",
        "nothing_found" => "Nothing found",
        "denied" => "Denied by policy",
        "invalid" => "Refused as malformed",
        "failed" => "Failed",
        _ => "Not stated",
    }
}

/// The outcomes a search may ask for, as the ledger's index names them.
pub(super) const OUTCOMES: &[&str] = &["disclosed", "nothing_found", "denied", "invalid", "failed"];

fn enum_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}
