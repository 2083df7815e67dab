//! `OversightService`: the ledger as Data Protection Officers and auditors
//! see it. Only the `dpo` and `auditor` roles may use it, and each sees
//! their own agency's shares, sent and received: the entries of its own
//! principals and the shares of data it provided.

use std::sync::Arc;

use liaison_ledger::{EntryFilter, KeyRing, Ledger, LedgerError, SignedTreeHead, StoredEntry};
use liaison_proto::v1::{self as pb, oversight_service_server::OversightService};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::{authn, error::GatewayError, identity::Principal, restriction, share::audit};

/// Roles that may use oversight.
pub const OVERSIGHT_ROLES: &[&str] = &["dpo", "auditor"];
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// The oversight service.
#[derive(Debug, Clone)]
pub struct Oversight {
    ledger: Arc<Ledger>,
    keys: Arc<KeyRing>,
}

impl Oversight {
    /// Serves oversight of `ledger`, whose signed heads are checked with
    /// `keys` before they are served.
    pub fn new(ledger: Arc<Ledger>, keys: KeyRing) -> Self {
        Self {
            ledger,
            keys: Arc::new(keys),
        }
    }

    /// The latest signed head, checked with the configured keys, so a head
    /// written into the database by someone without the key is never
    /// handed out as the ledger's. `None` before the first seal.
    async fn signed_head(&self) -> Result<Option<SignedTreeHead>, Status> {
        let Some(head) = self
            .ledger
            .latest_signed_head()
            .await
            .map_err(ledger_error)?
        else {
            return Ok(None);
        };
        if !self.keys.keys().is_empty() {
            use liaison_ledger::HeadVerifier as _;
            self.keys.verify_head(&head).map_err(|e| {
                tracing::error!(error = %e, "the latest signed tree head does not verify");
                Status::data_loss("the ledger's latest signed tree head does not verify")
            })?;
        }
        Ok(Some(head))
    }

    async fn stored(&self, principal: &Principal, entry_id: &str) -> Result<StoredEntry, Status> {
        let entry = self
            .ledger
            .get(entry_id)
            .await
            .map_err(ledger_error)?
            .filter(|e| visible(principal, e))
            .ok_or_else(|| GatewayError::NotFound {
                what: format!("audit entry `{entry_id}`"),
            })?;
        Ok(entry)
    }
}

fn overseer<T>(request: &Request<T>) -> Result<Arc<Principal>, Status> {
    let principal = authn::principal(request)?;
    if OVERSIGHT_ROLES.iter().any(|r| principal.has_role(r)) {
        Ok(principal)
    } else {
        Err(GatewayError::FunctionNotPermitted {
            message: "oversight needs the `dpo` or `auditor` role".into(),
        }
        .into())
    }
}

/// A principal sees the entries its agency is party to: those its own
/// principals made, and shares of data its agency provided, whoever asked.
/// Authentication failures (which name no agency) are visible to none. The
/// console applies the same rule, so a DPO sees the same ledger whichever
/// way they look at it.
pub(crate) fn visible(principal: &Principal, entry: &StoredEntry) -> bool {
    !principal.agency.is_empty()
        && (entry.index.agency == principal.agency || entry.index.provider == principal.agency)
}

/// The part of every oversight filter that [`visible`] demands, so a
/// search never reads what the principal may not see.
pub(crate) fn visible_filter(principal: &Principal) -> EntryFilter {
    EntryFilter {
        party: Some(principal.agency.clone()),
        ..EntryFilter::default()
    }
}

/// A ledger failure in the gateway's own terms: the ledger being away is
/// `AuditUnavailable`, anything else is the gateway's fault.
pub(crate) fn ledger_fault(e: LedgerError) -> GatewayError {
    tracing::error!(error = %e, "ledger read failed");
    match e {
        LedgerError::Unavailable { .. } => GatewayError::AuditUnavailable,
        other => GatewayError::internal(other),
    }
}

fn ledger_error(e: LedgerError) -> Status {
    ledger_fault(e).into()
}

/// The entry's s.62 record. The body is the evidence; one that does not
/// decode is reported, never skipped.
pub(crate) fn decode(e: &StoredEntry) -> Result<pb::AuditEntry, GatewayError> {
    pb::AuditEntry::decode(e.body.as_slice())
        .map_err(|_| GatewayError::internal(format!("entry {} does not decode", e.seq)))
}

/// A subject access report: what the subject may be told, and what is
/// withheld from them under s.45 for now.
#[derive(Debug, Default)]
pub(crate) struct SubjectReport {
    /// Disclosures to report, oldest first.
    pub disclosures: Vec<pb::SubjectDisclosure>,
    /// Disclosures restricted at the time of the report, oldest first.
    pub withheld: Vec<pb::WithheldDisclosure>,
}

/// Every disclosure about `person_id` that `principal` may see, oldest
/// first, with those under a restriction in force at `now` set apart: the
/// subject access report, for the API and the console alike.
pub(crate) async fn subject_report(
    ledger: &Ledger,
    principal: &Principal,
    person_id: &str,
    now: time::OffsetDateTime,
) -> Result<SubjectReport, GatewayError> {
    let filter = EntryFilter {
        subject_ref: Some(person_id.to_owned()),
        order: liaison_ledger::Order::OldestFirst,
        ..visible_filter(principal)
    };
    let mut report = SubjectReport::default();
    let mut after = None;
    loop {
        let page = ledger
            .list(&filter, MAX_PAGE, after)
            .await
            .map_err(ledger_fault)?;
        let full = page.len() == usize::try_from(MAX_PAGE).unwrap_or(usize::MAX);
        after = page.last().map(|e| e.seq);
        let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
        let restrictions = ledger.restrictions(&seqs).await.map_err(ledger_fault)?;
        for stored in &page {
            let e = decode(stored)?;
            let restriction = restrictions.get(&stored.seq).filter(|r| r.in_force(now));
            let p = e.principal.clone().unwrap_or_default();
            for d in e.disclosures.iter().filter(|d| d.person_id == person_id) {
                let disclosure = pb::SubjectDisclosure {
                    disclosed_at: e.recorded_at,
                    recipient_agency_id: e.recipient_agency_id.clone(),
                    recipient_user: if p.display_name.is_empty() {
                        p.subject.clone()
                    } else {
                        p.display_name.clone()
                    },
                    purpose: e.purpose.clone(),
                    isa_id: e.isa_id.clone(),
                    legal_basis: e.legal_basis.clone(),
                    fields: d.fields.clone(),
                    entry_id: e.entry_id.clone(),
                };
                match restriction {
                    Some(r) => report.withheld.push(pb::WithheldDisclosure {
                        disclosure: Some(disclosure),
                        restriction: Some(crate::restriction::to_pb(r, &e.entry_id)),
                    }),
                    None => report.disclosures.push(disclosure),
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(report)
}

fn ledger_entry(e: StoredEntry) -> Result<pb::LedgerEntry, Status> {
    let entry = decode(&e)?;
    Ok(pb::LedgerEntry {
        entry: Some(entry),
        sequence: e.seq,
        leaf_hash: hex::encode(e.leaf_hash),
        canonical: e.body,
    })
}

fn timestamp(t: Option<prost_types::Timestamp>) -> Option<time::OffsetDateTime> {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
}

fn outcome_name(o: i32) -> Option<String> {
    pb::AuditOutcome::try_from(o)
        .ok()
        .filter(|o| *o != pb::AuditOutcome::Unspecified)
        .map(|o| {
            o.as_str_name()
                .trim_start_matches("AUDIT_OUTCOME_")
                .to_ascii_lowercase()
        })
}

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// A signed head as the API shows it.
fn signed_tree_head(head: &SignedTreeHead) -> pb::TreeHead {
    let millis = i64::try_from(head.timestamp).unwrap_or(i64::MAX);
    pb::TreeHead {
        tree_size: head.size,
        root_hash: hex::encode(head.root),
        timestamp: Some(prost_types::Timestamp {
            seconds: millis.div_euclid(1000),
            nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        signature: hex::encode(head.signature),
        key_id: head.key_id.to_string(),
    }
}

async fn current_size(ledger: &Ledger, requested: u64) -> Result<u64, Status> {
    let size = ledger.size().await.map_err(ledger_error)?;
    match requested {
        0 => Ok(size),
        n if n <= size => Ok(n),
        n => Err(GatewayError::InvalidField {
            field: "tree_size".into(),
            message: format!("the ledger holds {size} entries, not {n}"),
        }
        .into()),
    }
}

#[tonic::async_trait]
impl OversightService for Oversight {
    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        let principal = overseer(&request)?;
        let r = request.into_inner();
        let limit = match r.page_size {
            0 => DEFAULT_PAGE,
            n => u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_PAGE)
                .ok_or_else(|| GatewayError::InvalidField {
                    field: "page_size".into(),
                    message: "must be between 1 and 500".into(),
                })?,
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(
                r.page_token
                    .parse::<u64>()
                    .map_err(|_| GatewayError::InvalidField {
                        field: "page_token".into(),
                        message: "is not a token from a previous page".into(),
                    })?,
            )
        };
        // `agency_id` and `provider_agency_id` narrow what the caller may
        // see; they never widen it.
        let filter = EntryFilter {
            agency: some(r.agency_id),
            provider: some(r.provider_agency_id),
            break_glass: r.break_glass_only.then_some(true),
            subject: some(r.subject),
            purpose: some(r.purpose),
            isa_id: some(r.isa_id),
            subject_ref: some(r.person_id),
            outcome: outcome_name(r.outcome),
            from: timestamp(r.from_time),
            until: timestamp(r.to_time),
            ..visible_filter(&principal)
        };
        let page = self
            .ledger
            .list(&filter, limit, after)
            .await
            .map_err(ledger_error)?;
        let next_page_token = if page.len() == usize::try_from(limit).unwrap_or(usize::MAX) {
            page.last().map(|e| e.seq.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        let entries = page
            .into_iter()
            .map(ledger_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn get_audit_entry(
        &self,
        request: Request<pb::GetAuditEntryRequest>,
    ) -> Result<Response<pb::GetAuditEntryResponse>, Status> {
        let principal = overseer(&request)?;
        let stored = self
            .stored(&principal, &request.into_inner().entry_id)
            .await?;
        Ok(Response::new(pb::GetAuditEntryResponse {
            entry: Some(ledger_entry(stored)?),
        }))
    }

    async fn get_tree_head(
        &self,
        request: Request<pb::GetTreeHeadRequest>,
    ) -> Result<Response<pb::GetTreeHeadResponse>, Status> {
        overseer(&request)?;
        if let Some(head) = self.signed_head().await? {
            return Ok(Response::new(pb::GetTreeHeadResponse {
                head: Some(signed_tree_head(&head)),
            }));
        }
        let size = current_size(&self.ledger, 0).await?;
        let head = self.ledger.tree_head(size).await.map_err(ledger_error)?;
        Ok(Response::new(pb::GetTreeHeadResponse {
            head: Some(pb::TreeHead {
                tree_size: head.size,
                root_hash: hex::encode(head.root),
                timestamp: Some(audit::now()),
                signature: String::new(),
                key_id: String::new(),
            }),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let principal = overseer(&request)?;
        let r = request.into_inner();
        let stored = self.stored(&principal, &r.entry_id).await?;
        // By default prove against the latest signed head, which a client
        // can check with the public key; an entry newer than that head is
        // proved against the current tree until the next seal.
        let signed = match r.tree_size {
            0 => self
                .signed_head()
                .await?
                .map(|h| h.size)
                .filter(|&size| size >= stored.seq),
            _ => None,
        };
        let size = match signed {
            Some(size) => size,
            None => current_size(&self.ledger, r.tree_size).await?,
        };
        if stored.seq > size {
            return Err(GatewayError::InvalidField {
                field: "tree_size".into(),
                message: format!("entry {} is not in a tree of {size} entries", stored.seq),
            }
            .into());
        }
        let proof = self
            .ledger
            .inclusion_proof(stored.seq, size)
            .await
            .map_err(ledger_error)?;
        let head = self.ledger.tree_head(size).await.map_err(ledger_error)?;
        Ok(Response::new(pb::GetInclusionProofResponse {
            leaf_index: stored.seq - 1,
            tree_size: size,
            leaf_hash: hex::encode(stored.leaf_hash),
            audit_path: proof.iter().map(hex::encode).collect(),
            root_hash: hex::encode(head.root),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        overseer(&request)?;
        let r = request.into_inner();
        let second = current_size(&self.ledger, r.second_size).await?;
        if r.first_size > second {
            return Err(GatewayError::InvalidField {
                field: "first_size".into(),
                message: "must not exceed the second size".into(),
            }
            .into());
        }
        let proof = self
            .ledger
            .consistency_proof(r.first_size, second)
            .await
            .map_err(ledger_error)?;
        let first_root = self
            .ledger
            .tree_head(r.first_size)
            .await
            .map_err(ledger_error)?;
        let second_root = self.ledger.tree_head(second).await.map_err(ledger_error)?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            first_size: r.first_size,
            second_size: second,
            proof: proof.iter().map(hex::encode).collect(),
            first_root: hex::encode(first_root.root),
            second_root: hex::encode(second_root.root),
        }))
    }

    async fn get_subject_access_report(
        &self,
        request: Request<pb::GetSubjectAccessReportRequest>,
    ) -> Result<Response<pb::GetSubjectAccessReportResponse>, Status> {
        let principal = overseer(&request)?;
        let person_id = request.into_inner().person_id;
        if person_id.is_empty() {
            return Err(GatewayError::InvalidField {
                field: "person_id".into(),
                message: "is required".into(),
            }
            .into());
        }
        let report = subject_report(
            &self.ledger,
            &principal,
            &person_id,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
        Ok(Response::new(pb::GetSubjectAccessReportResponse {
            person_id,
            disclosures: report.disclosures,
            withheld: report.withheld,
        }))
    }

    async fn restrict_entry(
        &self,
        request: Request<pb::RestrictEntryRequest>,
    ) -> Result<Response<pb::RestrictEntryResponse>, Status> {
        let principal = overseer(&request)?;
        let r = request.into_inner();
        let until = r
            .until
            .and_then(|t| {
                time::OffsetDateTime::from_unix_timestamp(t.seconds)
                    .ok()?
                    .replace_nanosecond(u32::try_from(t.nanos).ok()?)
                    .ok()
            })
            .ok_or_else(|| GatewayError::InvalidField {
                field: "until".into(),
                message: "is required".into(),
            })?;
        let done = restriction::restrict(
            &self.ledger,
            &principal,
            "/liaison.v1.OversightService/RestrictEntry",
            r.sequence,
            until,
            &r.reason,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
        Ok(Response::new(pb::RestrictEntryResponse {
            restriction: Some(restriction::to_pb(&done.restriction, &done.entry_id)),
        }))
    }

    async fn lift_restriction(
        &self,
        request: Request<pb::LiftRestrictionRequest>,
    ) -> Result<Response<pb::LiftRestrictionResponse>, Status> {
        let principal = overseer(&request)?;
        let r = request.into_inner();
        let (audit_entry_id, lifted) = restriction::lift(
            &self.ledger,
            &principal,
            "/liaison.v1.OversightService/LiftRestriction",
            r.sequence,
            &r.reason,
        )
        .await?;
        Ok(Response::new(pb::LiftRestrictionResponse {
            audit_entry_id,
            lifted: u32::try_from(lifted).unwrap_or(u32::MAX),
        }))
    }
}
