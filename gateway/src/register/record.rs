//! [`record`]: the audit step between reserving a version and committing
//! it, and the `ADMINISTER` entry every register change is recorded by.

use std::time::Duration;

use liaison_ledger::Ledger;
use liaison_proto::v1 as pb;

use super::{Change, Reserved, StoreError, VersionStore, Versioned};
use crate::{error::GatewayError, share::audit};

/// Who asked for a change, through which call, from where.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The principal as the ledger records it.
    pub principal: pb::AuditPrincipal,
    /// The RPC, or what imported the change (`policy-file/import`).
    pub method: &'a str,
    /// The caller's address; empty for an import.
    pub client_address: String,
    /// The trace the call ran in; empty for an import.
    pub trace_id: String,
}

impl Origin<'_> {
    /// A file imported by the gateway itself, on behalf of `agency`.
    pub fn import(
        agency: String,
        subject: &str,
        display_name: String,
        method: &'static str,
    ) -> Origin<'static> {
        Origin {
            principal: pb::AuditPrincipal {
                agency_id: agency,
                subject: subject.to_owned(),
                display_name,
                is_system: true,
                ..Default::default()
            },
            method,
            client_address: String::new(),
            trace_id: String::new(),
        }
    }
}

/// The `ADMINISTER` entry for one change to a register, naming `target`;
/// each register adds what its value says about itself.
pub fn change_entry(change: &Change, origin: Origin<'_>, target: String) -> pb::AuditEntry {
    pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        recipient_agency_id: origin.principal.agency_id.clone(),
        principal: Some(origin.principal),
        action: pb::AuditAction::Administer as i32,
        method: origin.method.to_owned(),
        justification: change.justification.clone(),
        allowed: true,
        outcome: pb::AuditOutcome::Recorded as i32,
        target,
        client_address: origin.client_address,
        trace_id: origin.trace_id,
        ..Default::default()
    }
}

/// How often a commit is tried once its entry is in the ledger.
const COMMIT_ATTEMPTS: u32 = 5;

/// Appends `entry` and only then puts `reserved` in force. If the append
/// fails the reservation is dropped and nothing changes anywhere.
pub async fn record<T: Versioned>(
    store: &VersionStore<T>,
    ledger: &Ledger,
    reserved: &Reserved<T>,
    entry: &pb::AuditEntry,
) -> Result<pb::Receipt, GatewayError> {
    let change = T::TABLES.change;
    let key = reserved.value.key();
    let receipt = match audit::append(ledger, entry).await {
        Ok(receipt) => receipt,
        Err(e) => {
            tracing::error!(error = %e, key, "cannot record {change}; it is not made");
            if let Err(e) = store.abandon(reserved).await {
                tracing::warn!(error = %e, "cannot drop the reservation; it expires by itself");
            }
            return Err(GatewayError::AuditUnavailable);
        }
    };
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=COMMIT_ATTEMPTS {
        match store.commit(reserved, &receipt.entry_id).await {
            Ok(()) => return Ok(receipt),
            Err(StoreError::Conflict(message)) => {
                return Err(GatewayError::VersionConflict { message });
            }
            Err(e) if attempt == COMMIT_ATTEMPTS => {
                tracing::error!(
                    error = %e,
                    entry_id = %receipt.entry_id,
                    "{change} is recorded in the ledger but could not be put in force"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "retrying the commit of {change}");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
    Err(GatewayError::internal(
        "the change could not be put in force",
    ))
}
