//! Named, grouped checks that hold a running deployment to the published
//! contract, from outside and through the API alone.
//!
//! Each check is a plain async function over a [`Target`]; the registry in
//! [`all`] gives it a stable dotted id (`deny.isa_unknown`) so a CI job, an
//! expectations file or a bug report can name exactly one behaviour. A check
//! that would disclose data says so (`writes`), because every share is
//! recorded in the deployment's audit ledger and a DPO will see it.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

pub mod fields;
pub mod report;
pub mod status;
pub mod target;

mod authn;
mod contract;
mod deny;
mod minimise;
mod paging;
mod receipts;
mod stream;

pub use target::Target;

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The deployment broke the contract; the text says what was expected and
    /// what came back.
    Fail(String),
    /// The check could not run here (a principal or `--allow-writes` missing).
    Skip(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Fail(s) | Verdict::Skip(s) => f.write_str(s),
        }
    }
}

/// What a check returns: `Ok` is a pass.
pub type CheckResult = Result<(), Verdict>;

/// Shorthand for a failure.
pub fn fail(why: impl Into<String>) -> Verdict {
    Verdict::Fail(why.into())
}

/// Fails unless `cond` holds.
pub fn ensure(cond: bool, why: impl FnOnce() -> String) -> CheckResult {
    if cond { Ok(()) } else { Err(fail(why())) }
}

type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// One named check.
#[derive(Clone)]
pub struct Check {
    /// Stable id, `group.name`.
    pub id: &'static str,
    /// What the deployment must do, in a sentence.
    pub description: &'static str,
    /// Whether the check makes a share the ledger records as a disclosure.
    pub writes: bool,
    run: fn(Arc<Target>) -> CheckFuture,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("id", &self.id)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// The group: the id up to the first dot.
    pub fn group(&self) -> &'static str {
        self.id.split_once('.').map_or(self.id, |(g, _)| g)
    }
}

macro_rules! check {
    ($id:literal, $writes:expr, $f:path, $desc:literal) => {
        Check {
            id: $id,
            description: $desc,
            writes: $writes,
            run: |t| -> CheckFuture { Box::pin($f(t)) },
        }
    };
}

/// A check that only reads, or is refused before anything is disclosed.
const READS: bool = false;
/// A check that makes a share the ledger records as a disclosure.
const WRITES: bool = true;

/// Every check, in the order they run.
pub fn all() -> Vec<Check> {
    vec![
        check!(
            "authn.no_token",
            READS,
            authn::no_token,
            "a call without a bearer token is UNAUTHENTICATED (TOKEN_MISSING)"
        ),
        check!(
            "authn.malformed_token",
            READS,
            authn::malformed_token,
            "a bearer value that is not a JWT is UNAUTHENTICATED (TOKEN_INVALID)"
        ),
        check!(
            "authn.forged_signature",
            READS,
            authn::forged_signature,
            "a genuine token with its signature altered is UNAUTHENTICATED"
        ),
        check!(
            "authn.expired_token",
            READS,
            authn::expired_token,
            "an expired token is UNAUTHENTICATED, whoever signed it"
        ),
        check!(
            "authn.wrong_audience",
            READS,
            authn::wrong_audience,
            "a token issued for another audience is UNAUTHENTICATED"
        ),
        check!(
            "contract.sharing.list_datasets",
            READS,
            contract::list_datasets,
            "ListDatasets names the agreement the sharer is a recipient under"
        ),
        check!(
            "contract.sharing.search_persons",
            WRITES,
            contract::search_persons,
            "SearchPersons with a full share context answers with matches and a receipt"
        ),
        check!(
            "contract.sharing.get_records",
            WRITES,
            contract::get_records,
            "GetRecords for a person found by search answers with a receipt"
        ),
        check!(
            "contract.sharing.subscribe",
            READS,
            contract::subscribe,
            "Subscribe sends a first message with a cursor, or answers UNIMPLEMENTED (NOT_IMPLEMENTED); never hangs"
        ),
        check!(
            "contract.oversight.list_audit_entries",
            READS,
            contract::list_audit_entries,
            "ListAuditEntries answers an overseer"
        ),
        check!(
            "contract.oversight.get_tree_head",
            READS,
            contract::get_tree_head,
            "GetTreeHead answers a 32-byte hex root"
        ),
        check!(
            "contract.oversight.get_audit_entry_unknown",
            READS,
            contract::get_audit_entry_unknown,
            "GetAuditEntry for an unknown id is NOT_FOUND with ErrorInfo"
        ),
        check!(
            "contract.oversight.get_inclusion_proof_unknown",
            READS,
            contract::get_inclusion_proof_unknown,
            "GetInclusionProof for an unknown id is NOT_FOUND with ErrorInfo"
        ),
        check!(
            "contract.oversight.get_consistency_proof",
            READS,
            contract::get_consistency_proof,
            "GetConsistencyProof from 1 to the current size verifies client-side"
        ),
        check!(
            "contract.oversight.get_subject_access_report",
            READS,
            contract::get_subject_access_report,
            "GetSubjectAccessReport answers for any person id"
        ),
        check!(
            "contract.oversight.refused_to_sharer",
            READS,
            contract::oversight_refused_to_sharer,
            "oversight is PERMISSION_DENIED to a principal without `dpo` or `auditor`"
        ),
        check!(
            "contract.admin.list_agencies",
            READS,
            contract::list_agencies,
            "ListAgencies answers with at least one agency"
        ),
        check!(
            "contract.admin.list_issuers",
            READS,
            contract::list_issuers,
            "ListIssuers answers with at least one issuer"
        ),
        check!(
            "contract.admin.list_agreements",
            READS,
            contract::list_agreements,
            "ListAgreements includes the agreement under test"
        ),
        check!(
            "contract.admin.get_agreement",
            READS,
            contract::get_agreement,
            "GetAgreement returns the agreement under test with its datasets"
        ),
        check!(
            "contract.admin.get_agreement_unknown",
            READS,
            contract::get_agreement_unknown,
            "GetAgreement for an unknown id is NOT_FOUND with ErrorInfo"
        ),
        check!(
            "deny.purpose_missing",
            READS,
            deny::purpose_missing,
            "a share without a purpose is INVALID_ARGUMENT naming context.purpose"
        ),
        check!(
            "deny.justification_missing",
            READS,
            deny::justification_missing,
            "a share without a justification is INVALID_ARGUMENT naming context.justification"
        ),
        check!(
            "deny.isa_missing",
            READS,
            deny::isa_missing,
            "a share without an agreement is INVALID_ARGUMENT naming context.isa_id"
        ),
        check!(
            "deny.isa_unknown",
            READS,
            deny::isa_unknown,
            "a share under an unknown agreement is PERMISSION_DENIED (ISA_UNKNOWN) citing its audit entry"
        ),
        check!(
            "deny.purpose_not_permitted",
            READS,
            deny::purpose_not_permitted,
            "a share for a purpose the agreement does not list is PERMISSION_DENIED"
        ),
        check!(
            "deny.not_recipient",
            READS,
            deny::not_recipient,
            "an agency the agreement does not name as recipient is PERMISSION_DENIED"
        ),
        check!(
            "minimise.search",
            WRITES,
            minimise::search,
            "a search discloses no person field outside the agreement's field set"
        ),
        check!(
            "minimise.records",
            WRITES,
            minimise::records,
            "a read discloses no field outside the agreement's field set"
        ),
        check!(
            "receipts.search",
            WRITES,
            receipts::search,
            "a search's receipt resolves to a ledger entry whose inclusion proof verifies"
        ),
        check!(
            "receipts.records",
            WRITES,
            receipts::records,
            "a read's receipt resolves to a ledger entry whose inclusion proof verifies"
        ),
        check!(
            "paging.audit_page_tokens",
            READS,
            paging::audit_page_tokens,
            "ListAuditEntries pages are disjoint and in order, and a forged token is INVALID_ARGUMENT"
        ),
        check!(
            "paging.search_page_size",
            WRITES,
            paging::search_page_size,
            "SearchPersons honours page_size"
        ),
        check!(
            "deadline.one_millisecond",
            READS,
            paging::one_millisecond,
            "a 1 ms deadline completes or is DEADLINE_EXCEEDED, nothing else"
        ),
        check!(
            "stream.resume",
            WRITES,
            stream::resume,
            "Subscribe resumes from its own cursor and refuses an edited or invented one as INVALID_ARGUMENT (INVALID_FIELD naming resume_cursor)"
        ),
    ]
}

/// Runs one check, honouring `--allow-writes`.
pub async fn run(check: &Check, target: Arc<Target>) -> CheckResult {
    if check.writes && !target.allow_writes {
        return Err(Verdict::Skip(
            "discloses data to run; pass --allow-writes where the ledger may record it".into(),
        ));
    }
    (check.run)(target).await
}

/// Checks whose id equals one of `selectors` or starts with `selector.`
/// (so `deny` selects the group); all of them when `selectors` is empty.
pub fn select(selectors: &[String]) -> Vec<Check> {
    all()
        .into_iter()
        .filter(|c| {
            selectors.is_empty()
                || selectors.iter().any(|s| {
                    c.id == s
                        || c.id
                            .strip_prefix(s.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                })
        })
        .collect()
}

/// Runs `checks` one after another, so a check's shares and the ledger
/// entries another check reads never race.
pub async fn run_all(checks: Vec<Check>, target: Arc<Target>, gaps: &Gaps) -> Vec<report::Outcome> {
    let mut outcomes = Vec::with_capacity(checks.len());
    for check in checks {
        let started = std::time::Instant::now();
        let result = run(&check, target.clone()).await;
        outcomes.push(report::Outcome {
            gap: gaps.reason(check.id),
            check,
            result,
            elapsed: started.elapsed(),
        });
    }
    outcomes
}

/// Known gaps of a deployment (`--expectations FILE`): checks it is known
/// not to pass, each with the reason, so a run stays green on what is
/// already tracked and still fails on anything new.
///
/// ```toml
/// [[gap]]
/// case = "deadline.one_millisecond"
/// reason = "the proxy in front of the gateway drops grpc-timeout; INFRA-123"
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gaps {
    #[serde(default, rename = "gap")]
    gaps: Vec<Gap>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Gap {
    case: String,
    reason: String,
}

impl Gaps {
    /// Reads an expectations file; every case must name a check.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let gaps: Self = toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
        let ids: Vec<&str> = all().iter().map(|c| c.id).collect();
        for g in &gaps.gaps {
            if !ids.contains(&g.case.as_str()) {
                return Err(format!(
                    "`{}`: `{}` is not a check; see --list",
                    path.display(),
                    g.case
                ));
            }
            if g.reason.trim().is_empty() {
                return Err(format!(
                    "`{}`: the gap `{}` needs a reason",
                    path.display(),
                    g.case
                ));
            }
        }
        Ok(gaps)
    }

    /// The reason `case` is a known gap, if it is.
    pub fn reason(&self, case: &str) -> Option<String> {
        self.gaps
            .iter()
            .find(|g| g.case == case)
            .map(|g| g.reason.clone())
    }
}
