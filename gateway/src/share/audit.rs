//! Audit: the outermost stage. Every share — invalid, denied, failed or
//! disclosed — becomes one ledger entry, appended durably before anything
//! is returned. If the append fails the caller gets `UNAVAILABLE` and no
//! data: the gateway fails closed.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use liaison_ledger::{EntryIndex, Ledger, NewEntry};
use liaison_policy::Action;
use liaison_proto::v1 as pb;
use prost::Message;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{Answer, BoxFuture, Facts, Refused, ShareCall, Shared};
use crate::{
    alerts::{Alerts, BreakGlassAlert},
    error::GatewayError,
    identity::Principal,
};

/// The canonical form version written into every entry.
pub const FORMAT_VERSION: u32 = 1;

/// Adds the audit stage.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    ledger: Arc<Ledger>,
    alerts: Alerts,
}

impl AuditLayer {
    /// Appends every outcome to `ledger`; break-glass alerts are logged and
    /// counted only.
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self {
            ledger,
            alerts: Alerts::log_only(),
        }
    }

    /// Raises break-glass alerts through `alerts`. They are raised here, once
    /// the entry is durable, so every alert names an entry a DPO can open.
    #[must_use]
    pub fn with_alerts(mut self, alerts: Alerts) -> Self {
        self.alerts = alerts;
        self
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            ledger: self.ledger.clone(),
            alerts: self.alerts.clone(),
        }
    }
}

/// The audit stage.
#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
    ledger: Arc<Ledger>,
    alerts: Alerts,
}

impl<S> Service<ShareCall> for Audit<S>
where
    S: Service<ShareCall, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Shared;
    type Error = Refused;
    type Future = BoxFuture<Result<Shared, Refused>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, call: ShareCall) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let ledger = self.ledger.clone();
        let alerts = self.alerts.clone();
        Box::pin(async move {
            let answer = match inner.call(call.clone()).await {
                Ok(a) => a,
                Err(never) => match never {},
            };
            let entry = entry_for(&call, &answer.facts, answer.result.as_ref().err());
            let started = std::time::Instant::now();
            let appended = append(&ledger, &entry)
                .instrument(tracing::debug_span!(
                    "audit-append",
                    outcome = entry.outcome
                ))
                .await;
            if let Some(m) = crate::telemetry::metrics() {
                m.ledger_append(started.elapsed(), appended.is_ok());
                record(m, &entry);
            }
            let receipt = match appended {
                Ok(r) => r,
                Err(e) => {
                    // INVARIANT: nothing is disclosed without a durable
                    // entry; the payload is dropped here.
                    tracing::error!(error = %e, method = call.method, "audit append failed; refusing share");
                    return Err(Refused {
                        error: GatewayError::AuditUnavailable,
                        receipt: None,
                    });
                }
            };
            if answer.result.is_ok() && !answer.facts.break_glass_datasets.is_empty() {
                raise_break_glass(&alerts, &entry, &receipt, &answer.facts);
            }
            match answer.result {
                Ok(payload) => Ok(Shared { payload, receipt }),
                Err(error) => Err(Refused {
                    error,
                    receipt: Some(receipt),
                }),
            }
        })
    }
}

/// Appends one entry and returns its receipt.
pub async fn append(
    ledger: &Ledger,
    entry: &pb::AuditEntry,
) -> Result<pb::Receipt, liaison_ledger::LedgerError> {
    let recorded_at = entry
        .recorded_at
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let principal = entry.principal.clone().unwrap_or_default();
    let outcome = pb::AuditOutcome::try_from(entry.outcome)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("AUDIT_OUTCOME_")
        .to_ascii_lowercase();
    let action = pb::AuditAction::try_from(entry.action)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("AUDIT_ACTION_")
        .to_ascii_lowercase();
    let receipt = ledger
        .append(NewEntry {
            entry_id: entry.entry_id.clone(),
            recorded_at,
            body: entry.encode_to_vec(),
            index: EntryIndex {
                agency: principal.agency_id,
                subject: principal.subject,
                recipient: entry.recipient_agency_id.clone(),
                provider: entry.provider_agency_id.clone(),
                break_glass: entry.break_glass.is_some(),
                action,
                purpose: entry.purpose.clone(),
                isa_id: entry.isa_id.clone(),
                outcome,
                subjects: entry
                    .disclosures
                    .iter()
                    .map(|d| d.person_id.clone())
                    .collect(),
            },
        })
        .await?;
    Ok(pb::Receipt {
        entry_id: receipt.entry_id,
        sequence: receipt.seq,
        leaf_hash: hex::encode(receipt.leaf_hash),
        recorded_at: entry.recorded_at,
    })
}

/// Raises the DPO alert for an allowed break-glass share whose entry is
/// durable.
fn raise_break_glass(
    alerts: &Alerts,
    entry: &pb::AuditEntry,
    receipt: &pb::Receipt,
    facts: &Facts,
) {
    let principal = entry.principal.clone().unwrap_or_default();
    let recorded_at = receipt
        .recorded_at
        .and_then(|t| {
            time::OffsetDateTime::from_unix_timestamp(t.seconds)
                .ok()?
                .replace_nanosecond(u32::try_from(t.nanos).ok()?)
                .ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let reason = entry
        .break_glass
        .as_ref()
        .map(|b| b.reason.as_str())
        .unwrap_or_default();
    alerts.break_glass(
        BreakGlassAlert {
            kind: "break_glass".to_owned(),
            entry_id: receipt.entry_id.clone(),
            sequence: receipt.sequence,
            agency: principal.agency_id,
            subject: principal.subject,
            isa_id: entry.isa_id.clone(),
            dataset_ids: facts.break_glass_datasets.clone(),
            recorded_at,
            console_path: format!("/console/entries/{}", receipt.entry_id),
        },
        reason,
    );
}

/// Counts one share by method and outcome, and a denial by its reason.
fn record(m: &crate::telemetry::Metrics, entry: &pb::AuditEntry) {
    let outcome = pb::AuditOutcome::try_from(entry.outcome).unwrap_or_default();
    let name = outcome
        .as_str_name()
        .trim_start_matches("AUDIT_OUTCOME_")
        .to_ascii_lowercase();
    m.share(&entry.method, &name);
    if outcome == pb::AuditOutcome::Denied {
        m.denial(&entry.error_reason);
    }
}

/// The principal as recorded: never the token, only who it vouched for.
pub fn audit_principal(p: &Principal) -> pb::AuditPrincipal {
    pb::AuditPrincipal {
        agency_id: p.agency.clone(),
        subject: p.subject.clone(),
        display_name: p.display_name.clone().unwrap_or_default(),
        roles: p.roles.clone(),
        client_id: p.client_id.clone().unwrap_or_default(),
        issuer: p.issuer.clone(),
        is_system: p.is_system,
    }
}

/// Now, as a protobuf timestamp with microsecond precision (what both
/// ledger backends store).
pub fn now() -> prost_types::Timestamp {
    let now = time::OffsetDateTime::now_utc();
    prost_types::Timestamp {
        seconds: now.unix_timestamp(),
        nanos: i32::try_from(now.microsecond() * 1_000).unwrap_or(0),
    }
}

/// Builds the entry for one share from what the stages learned.
pub fn entry_for(call: &ShareCall, facts: &Facts, error: Option<&GatewayError>) -> pb::AuditEntry {
    // Record the context as validated when it was; otherwise what was sent,
    // bounded, so an invalid request is still attributable.
    let raw = call.context.clone().unwrap_or_default();
    let bounded = |s: &str| s.chars().take(2_000).collect::<String>();
    let (purpose, justification, isa_id, case_reference, on_behalf_of, correlation_id) =
        match &facts.context {
            Some(c) => (
                c.purpose.clone(),
                c.justification.clone(),
                c.isa_id.clone(),
                c.case_reference.clone(),
                c.on_behalf_of.clone(),
                c.correlation_id.clone(),
            ),
            None => (
                bounded(&raw.purpose),
                bounded(&raw.justification),
                bounded(&raw.isa_id),
                bounded(&raw.case_reference),
                raw.on_behalf_of.clone(),
                bounded(&raw.correlation_id),
            ),
        };
    // Every invocation is recorded, allowed, refused or malformed, so a DPO
    // sees attempts as well as emergency disclosures.
    let break_glass = match &facts.context {
        Some(c) => c.break_glass.as_ref().map(|reason| pb::BreakGlass {
            reason: reason.clone(),
        }),
        None => raw.break_glass.as_ref().map(|b| pb::BreakGlass {
            reason: bounded(&b.reason),
        }),
    };
    let outcome = match error {
        None if facts.disclosures.is_empty() => pb::AuditOutcome::NothingFound,
        None => pb::AuditOutcome::Disclosed,
        Some(GatewayError::Denied { .. } | GatewayError::SourcesDeclined { .. }) => {
            pb::AuditOutcome::Denied
        }
        Some(
            GatewayError::ContextMissing { .. }
            | GatewayError::InvalidField { .. }
            | GatewayError::QueryTooBroad,
        ) => pb::AuditOutcome::Invalid,
        Some(_) => pb::AuditOutcome::Failed,
    };
    pb::AuditEntry {
        format_version: FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(now()),
        principal: Some(audit_principal(&call.principal)),
        on_behalf_of,
        recipient_agency_id: call.principal.agency.clone(),
        action: match call.action {
            Action::Search => pb::AuditAction::Search,
            Action::Read => pb::AuditAction::Read,
            Action::Subscribe => pb::AuditAction::Subscribe,
        } as i32,
        method: call.method.to_owned(),
        purpose,
        justification,
        case_reference,
        isa_id,
        isa_version: facts.isa_version,
        legal_basis: facts.legal_basis.clone(),
        policy_version: facts.policy_version.clone(),
        allowed: facts.allowed && error.is_none(),
        matched_rules: facts.matched_rules.clone(),
        disclosures: if error.is_none() {
            facts.disclosures.clone()
        } else {
            Vec::new()
        },
        outcome: outcome as i32,
        error_reason: error.map(|e| e.reason().to_owned()).unwrap_or_default(),
        error_message: error.map(ToString::to_string).unwrap_or_default(),
        sources: facts.sources.clone(),
        gaps: facts.gaps.clone(),
        trace_id: call.trace_id.clone(),
        correlation_id,
        client_address: call.client_address.clone(),
        break_glass,
        target: String::new(),
        provider_agency_id: facts.provider.clone(),
        restriction: None,
        withheld: if error.is_none() {
            facts.withheld.clone()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests;
