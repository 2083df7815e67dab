//! Restriction of disclosures under DPA 2018 s.45(4): a Data Protection
//! Officer may withhold a share from the subject access report while an
//! investigation it served is live, until a date. The console, the
//! `OversightService` and `liaison audit restrict|lift` all go through
//! here, so the rules are written once.
//!
//! Restricting is written in three steps, as the agreement register's
//! changes are: reserved beside the ledger (not honoured), recorded as a
//! `REVIEW` entry whose `restriction` names the date and whose `target`
//! names the entry, then committed. A restriction whose record failed
//! takes effect nowhere. Lifting is recorded first and then applied. The
//! restricted entry itself never changes.

use liaison_ledger::{Ledger, Restriction, StoredEntry};
use liaison_proto::v1 as pb;
use time::OffsetDateTime;

use crate::{
    error::GatewayError,
    identity::Principal,
    services::oversight::{self, ledger_fault},
    share::audit::{self, audit_principal},
};

/// The role that may restrict and lift; auditors see restrictions only.
pub const RESTRICTER_ROLE: &str = "dpo";
/// Shortest reason accepted: enough to name the investigation.
pub const MIN_REASON_CHARS: usize = 10;
/// Longest reason accepted.
pub const MAX_REASON_CHARS: usize = 2_000;
/// The furthest ahead a restriction may run. s.45 restrictions are for
/// as long as the investigation needs; a date past this is a typing
/// mistake, and a long investigation is restricted again.
pub const MAX_RESTRICTION_DAYS: i64 = 3 * 366;

/// A restriction and the entry it withholds.
#[derive(Debug, Clone)]
pub struct Restricted {
    /// The restriction.
    pub restriction: Restriction,
    /// The restricted entry's id.
    pub entry_id: String,
}

/// The entry at `seq` if `principal`'s agency is party to it, else
/// `NotFound`, as for an entry that does not exist.
pub async fn party_entry(
    ledger: &Ledger,
    principal: &Principal,
    seq: u64,
) -> Result<StoredEntry, GatewayError> {
    ledger
        .get_by_seq(seq)
        .await
        .map_err(ledger_fault)?
        .filter(|e| oversight::visible(principal, e))
        .ok_or_else(|| GatewayError::NotFound {
            what: format!("audit entry {seq}"),
        })
}

/// Restricts entry `seq` until `until`, as `principal`, recording it under
/// `method`; `now` is the time the date must lie beyond.
pub async fn restrict(
    ledger: &Ledger,
    principal: &Principal,
    method: &str,
    seq: u64,
    until: OffsetDateTime,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Restricted, GatewayError> {
    may_restrict(principal)?;
    let reason = check_reason(reason)?;
    if until <= now {
        return Err(GatewayError::InvalidField {
            field: "until".into(),
            message: "must be in the future".into(),
        });
    }
    if until > now + time::Duration::days(MAX_RESTRICTION_DAYS) {
        return Err(GatewayError::InvalidField {
            field: "until".into(),
            message: format!("must be within {MAX_RESTRICTION_DAYS} days"),
        });
    }
    let stored = party_entry(ledger, principal, seq).await?;
    let body = oversight::decode(&stored)?;
    if body.disclosures.is_empty() {
        return Err(GatewayError::InvalidField {
            field: "sequence".into(),
            message: format!("entry {seq} disclosed nothing, so there is nothing to withhold"),
        });
    }
    let entry = restriction_entry(
        principal,
        method,
        &stored.entry_id,
        reason,
        Some(timestamp(until)),
    );
    let recorded_at = entry
        .recorded_at
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .unwrap_or(now);
    let restriction = Restriction {
        id: entry.entry_id.clone(),
        seq,
        until,
        reason: reason.to_owned(),
        agency: principal.agency.clone(),
        restricted_by: principal.subject.clone(),
        recorded_at,
    };
    ledger
        .reserve_restriction(&restriction)
        .await
        .map_err(ledger_fault)?;
    if let Err(e) = audit::append(ledger, &entry).await {
        // INVARIANT: a restriction is honoured only once its record is
        // durable; this one never will be.
        tracing::error!(error = %e, seq, "restriction record failed; not restricted");
        if let Err(e) = ledger.abandon_restriction(&restriction.id).await {
            tracing::warn!(error = %e, "an unrecorded restriction was left reserved");
        }
        return Err(GatewayError::AuditUnavailable);
    }
    ledger
        .commit_restriction(&restriction.id)
        .await
        .map_err(ledger_fault)?;
    tracing::info!(agency = %principal.agency, seq, "entry restricted under s.45");
    Ok(Restricted {
        restriction,
        entry_id: stored.entry_id,
    })
}

/// Lifts every restriction of entry `seq`; returns the id of the entry
/// recording the lift and how many were lifted.
pub async fn lift(
    ledger: &Ledger,
    principal: &Principal,
    method: &str,
    seq: u64,
    reason: &str,
) -> Result<(String, u64), GatewayError> {
    may_restrict(principal)?;
    let reason = check_reason(reason)?;
    let stored = party_entry(ledger, principal, seq).await?;
    let entry = restriction_entry(principal, method, &stored.entry_id, reason, None);
    audit::append(ledger, &entry).await.map_err(|e| {
        tracing::error!(error = %e, seq, "lift record failed; still restricted");
        GatewayError::AuditUnavailable
    })?;
    let lifted = ledger
        .lift_restrictions(seq, &entry.entry_id)
        .await
        .map_err(ledger_fault)?;
    tracing::info!(agency = %principal.agency, seq, lifted, "s.45 restriction lifted");
    Ok((entry.entry_id, lifted))
}

/// Whether `principal` may restrict and lift.
pub fn may_restrict(principal: &Principal) -> Result<(), GatewayError> {
    if principal.has_role(RESTRICTER_ROLE) {
        Ok(())
    } else {
        Err(GatewayError::FunctionNotPermitted {
            message: format!("restricting an entry needs the `{RESTRICTER_ROLE}` role"),
        })
    }
}

/// A restriction as the API shows it.
pub fn to_pb(r: &Restriction, entry_id: &str) -> pb::EntryRestriction {
    pb::EntryRestriction {
        sequence: r.seq,
        entry_id: entry_id.to_owned(),
        until: Some(timestamp(r.until)),
        reason: r.reason.clone(),
        restricted_by_agency_id: r.agency.clone(),
        restricted_by: r.restricted_by.clone(),
        restricted_at: Some(timestamp(r.recorded_at)),
        audit_entry_id: r.id.clone(),
    }
}

fn check_reason(reason: &str) -> Result<&str, GatewayError> {
    let reason = reason.trim();
    let n = reason.chars().count();
    if !(MIN_REASON_CHARS..=MAX_REASON_CHARS).contains(&n) {
        return Err(GatewayError::InvalidField {
            field: "reason".into(),
            message: format!(
                "must be {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters naming the investigation"
            ),
        });
    }
    Ok(reason)
}

/// The `REVIEW` entry recording a restriction (`until` set) or a lift.
fn restriction_entry(
    principal: &Principal,
    method: &str,
    target: &str,
    reason: &str,
    until: Option<prost_types::Timestamp>,
) -> pb::AuditEntry {
    let lifted = until.is_none();
    pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        principal: Some(audit_principal(principal)),
        recipient_agency_id: principal.agency.clone(),
        action: pb::AuditAction::Review as i32,
        method: method.to_owned(),
        justification: reason.to_owned(),
        allowed: true,
        outcome: pb::AuditOutcome::Recorded as i32,
        target: target.to_owned(),
        restriction: Some(pb::AuditRestriction { until, lifted }),
        ..pb::AuditEntry::default()
    }
}

/// A time as a protobuf timestamp.
pub fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}
