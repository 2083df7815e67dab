//! The console's own entries in the ledger: every search, entry view,
//! subject access report and export a DPO makes is itself recorded (DPA
//! 2018 s.62 asks for the logging of consultation, and a DPO's look at the
//! ledger is one), and so is every review.
//!
//! One append per request, after the ledger has been read and before the
//! page is sent: the entry can then say how many results the DPO saw, and
//! if it cannot be made durable the DPO sees an error instead of the
//! results, as a share's caller would. An entry names what the DPO typed
//! and the count, never what the results contained.

use liaison_ledger::Ledger;
use liaison_proto::v1 as pb;

use super::error::ConsoleError;
use crate::{identity::Principal, share::audit};

/// What a DPO did at the console, as its entry records it.
#[derive(Debug, Clone)]
pub(super) struct Look {
    /// The console route, in the place a share's RPC name goes.
    pub method: &'static str,
    /// What was asked and how many results it gave, in words.
    pub what: String,
    /// The audit entry the look concerns, if one.
    pub target: String,
    /// Why the console refused, if it did (`NOT_FOUND` for an entry the
    /// DPO may not see).
    pub refused: Option<&'static str>,
}

impl Look {
    /// A look that the console answered.
    pub fn answered(method: &'static str, what: String) -> Self {
        Self {
            method,
            what,
            target: String::new(),
            refused: None,
        }
    }
}

/// Appends the entry for `look` by `principal`; an error means it is not
/// durable and the page must not be shown.
pub(super) async fn record(
    ledger: &Ledger,
    principal: &Principal,
    look: Look,
) -> Result<(), ConsoleError> {
    let entry = pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        principal: Some(audit::audit_principal(principal)),
        recipient_agency_id: principal.agency.clone(),
        action: pb::AuditAction::Oversee as i32,
        method: look.method.to_owned(),
        justification: look.what,
        allowed: look.refused.is_none(),
        outcome: match look.refused {
            None => pb::AuditOutcome::Recorded,
            Some(_) => pb::AuditOutcome::Denied,
        } as i32,
        error_reason: look.refused.unwrap_or_default().to_owned(),
        target: look.target,
        ..pb::AuditEntry::default()
    };
    append(ledger, &entry).await
}

/// Appends an entry the console made; a failure is the ledger's being
/// unavailable, whatever the cause, since the DPO can only try again.
pub(super) async fn append(ledger: &Ledger, entry: &pb::AuditEntry) -> Result<(), ConsoleError> {
    audit::append(ledger, entry).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, method = %entry.method, "console audit append failed");
        ConsoleError::LedgerUnavailable
    })
}

/// A search's filters in words, for its entry: `name=value` pairs as the
/// DPO typed them.
pub(super) fn describe(fields: &[super::entries::Field]) -> String {
    if fields.is_empty() {
        "no filter".to_owned()
    } else {
        fields
            .iter()
            .map(|f| format!("{}={}", f.name, f.value))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
