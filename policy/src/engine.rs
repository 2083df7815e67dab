use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use casbin::{CoreApi, Enforcer};

use crate::cache::{DEFAULT_CAPACITY, DecisionCache};
use crate::decision::{Decision, DecisionRequest, DenyReason, Grant, Obligation, Withholding};
use crate::error::PolicyError;
use crate::isa::{Action, Agreement, AgreementStatus, BreakGlassScope, Effect, OperatorRule};
use crate::mask::FieldMask;
use crate::model::{MODEL, build_enforcer, parse_model, validate_model};
use crate::set::PolicySet;
use crate::version::policy_version;

/// A compiled policy: immutable, `Send + Sync`, cheap to share in an `Arc` and to swap whole on
/// reload.
///
/// casbin-rs evaluates every policy line on every call, so lines are not kept in one enforcer.
/// Each (agreement, dataset, recipient agency) gets its own small enforcer holding only that
/// agreement's allow lines for that dataset and recipient, plus the operator deny lines whose
/// agency and dataset could match; a decision looks the enforcer up by key and evaluates a
/// handful of lines per role. The index only narrows: every line still carries every attribute
/// and the matcher checks them all, so a wrong lookup can only deny.
pub struct PolicyEngine {
    version: String,
    agreements: BTreeMap<String, CompiledAgreement>,
    /// The operator rules as written, for explain.
    rules: Vec<OperatorRule>,
    /// Decisions already made by this engine; see [`PolicyEngine::with_decision_cache`].
    cache: DecisionCache,
}

struct CompiledAgreement {
    agreement: Agreement,
    datasets: HashMap<String, CompiledDataset>,
}

struct CompiledDataset {
    /// The fields each role of the agreement's terms releases.
    masks: HashMap<String, FieldMask>,
    /// The fields break-glass adds, for each role that may invoke it.
    break_glass: HashMap<String, FieldMask>,
    obligations: Vec<Obligation>,
    by_recipient: HashMap<String, Candidates>,
}

/// The casbin lines that can match requests from one recipient for one dataset.
struct Candidates {
    enforcer: Enforcer,
    /// Roles some line names.
    named_roles: HashSet<String>,
    /// Whether some line matches any role (`*`).
    any_role: bool,
    /// Each deny line's position in the policy file, so that when several rules deny (through
    /// different roles) the one reported does not depend on the order of the caller's roles.
    deny_rank: HashMap<String, usize>,
    /// Deny lines that apply only to break-glass shares (`break_glass = "deny"`).
    glass_only: HashSet<String>,
    /// The markers some marker rule here names; each is put to casbin once per allowed share.
    markers: BTreeSet<String>,
}

/// What casbin said across the roles it was asked about.
#[derive(Default)]
struct Verdict {
    /// Roles for which an agreement line matched.
    granted: BTreeSet<String>,
    /// The operator rule that denied, earliest in the policy file, with its position.
    denied_by: Option<(usize, String)>,
    /// The same for rules that apply only to break-glass shares.
    glass_denied_by: Option<(usize, String)>,
    matched: Vec<String>,
    failed: bool,
}

impl PolicyEngine {
    /// Compiles `set` against the shipped [`MODEL`].
    ///
    /// Synchronous and CPU-bound: a gateway reloading policy from async code should call it
    /// inside `spawn_blocking`.
    pub fn compile(set: &PolicySet) -> Result<Self, PolicyError> {
        Self::compile_with_model(set, MODEL)
    }

    /// Compiles `set` against another casbin model, which must pass [`validate_model`].
    pub fn compile_with_model(set: &PolicySet, model_text: &str) -> Result<Self, PolicyError> {
        validate_model(model_text)?;
        let model = parse_model(model_text)?;
        let version = policy_version(model_text, set.agreements(), set.rules());

        let mut agreements = BTreeMap::new();
        for agreement in set.agreements() {
            let mut datasets = HashMap::new();
            for terms in &agreement.datasets {
                let masks = terms
                    .roles
                    .iter()
                    .map(|grant| (grant.role.clone(), FieldMask::new(&grant.fields)))
                    .collect();
                let break_glass = terms
                    .break_glass
                    .iter()
                    .flat_map(|bg| bg.roles.iter())
                    .filter_map(|role| {
                        let fields = terms.break_glass_fields_for(role)?;
                        Some((role.clone(), FieldMask::new(fields)))
                    })
                    .collect();
                let mut obligations = Vec::new();
                if let Some(caveat) = &terms.handling_caveat {
                    obligations.push(Obligation::HandlingCaveat(caveat.clone()));
                }
                if terms.notify_provider {
                    obligations.push(Obligation::NotifyProvider);
                }
                let mut by_recipient = HashMap::new();
                for recipient in &agreement.recipients {
                    let lines = lines_for(agreement, &terms.dataset, recipient, set.rules());
                    let candidates = Candidates::build(&model, lines)?;
                    candidates.probe(agreement, &terms.dataset, recipient)?;
                    by_recipient.insert(recipient.clone(), candidates);
                }
                datasets.insert(
                    terms.dataset.clone(),
                    CompiledDataset {
                        masks,
                        break_glass,
                        obligations,
                        by_recipient,
                    },
                );
            }
            agreements.insert(
                agreement.id.clone(),
                CompiledAgreement {
                    agreement: agreement.clone(),
                    datasets,
                },
            );
        }
        tracing::debug!(%version, agreements = agreements.len(), "policy compiled");
        Ok(Self {
            version,
            agreements,
            rules: set.rules().to_vec(),
            cache: DecisionCache::new(DEFAULT_CAPACITY),
        })
    }

    /// Keeps up to `capacity` decisions (16,384 unless set), or none when `capacity` is zero.
    ///
    /// A repeated question is answered from the cache in about a microsecond instead of tens
    /// (casbin runs its matcher script once per candidate line). The cache belongs to this engine,
    /// so a reloaded policy, being a new engine, never sees an old policy's decisions; and its key
    /// holds every input of a decision, so a hit is exactly what evaluating would return.
    #[must_use]
    pub fn with_decision_cache(mut self, capacity: usize) -> Self {
        self.cache = DecisionCache::new(capacity);
        self
    }

    /// Decides one request. Synchronous and without I/O: safe on any async worker. The only lock
    /// is the decision cache's, held for a map lookup or insert.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Decision {
        let Some(compiled) = self.agreements.get(req.isa_id) else {
            return self.deny(
                None,
                DenyReason::AgreementUnknown {
                    isa: req.isa_id.to_owned(),
                },
                Vec::new(),
            );
        };
        let agreement = &compiled.agreement;
        // The agreement object's own state is checked before casbin: it is about the document,
        // not about who asks.
        if let Some(reason) = lifecycle(agreement, req.at.date()) {
            return self.deny(Some(agreement), reason, Vec::new());
        }

        // Only questions under an agreement in force reach the cache, so requests naming
        // agreements that do not exist cannot crowd out the ones that do.
        let key = self.cache.key(req);
        if let Some(hit) = key.as_ref().and_then(|key| self.cache.get(key)) {
            return hit;
        }
        let decision = self.decide_in_force(compiled, req);
        // A casbin failure is not an answer to remember.
        if let Some(key) = key
            && decision.deny != Some(DenyReason::EvaluationFailed)
        {
            self.cache.insert(key, &decision);
        }
        decision
    }

    /// Decides a request under an agreement that is active and in force on the request's date.
    fn decide_in_force(&self, compiled: &CompiledAgreement, req: &DecisionRequest<'_>) -> Decision {
        let agreement = &compiled.agreement;
        let dataset = compiled.datasets.get(req.dataset);
        let candidates = dataset.and_then(|d| d.by_recipient.get(req.agency));
        let verdict = candidates
            .map(|candidates| candidates.evaluate(req, NO_MARKER))
            .unwrap_or_default();
        // The first unmet condition of the agreement, in the documented order. casbin decides;
        // this names the reason, and must agree with casbin before anything is allowed.
        let gap = grant_gap(agreement, req);
        let mut matched = verdict.matched;

        if verdict.failed {
            return self.deny(Some(agreement), DenyReason::EvaluationFailed, matched);
        }
        let casbin_grants = !verdict.granted.is_empty();
        match (gap, verdict.denied_by.map(|(_, rule_id)| rule_id)) {
            (Some(reason), _) => {
                if casbin_grants {
                    tracing::error!(
                        isa = req.isa_id,
                        dataset = req.dataset,
                        agency = req.agency,
                        reason = reason.reason(),
                        "casbin granted what the agreement does not; denying"
                    );
                }
                return self.deny(Some(agreement), reason, matched);
            }
            (None, denied_by) if !casbin_grants => {
                tracing::error!(
                    isa = req.isa_id,
                    dataset = req.dataset,
                    agency = req.agency,
                    "casbin granted no role where the agreement does; denying"
                );
                let reason = match denied_by {
                    Some(rule_id) => DenyReason::ExplicitDeny { rule_id },
                    None => DenyReason::NoRoleGranted {
                        isa: req.isa_id.to_owned(),
                        dataset: req.dataset.to_owned(),
                    },
                };
                return self.deny(Some(agreement), reason, matched);
            }
            (None, Some(rule_id)) => {
                return self.deny(
                    Some(agreement),
                    DenyReason::ExplicitDeny { rule_id },
                    matched,
                );
            }
            (None, None) => {}
        }

        let Some(dataset) = dataset else {
            // Unreachable: casbin only granted through this dataset's enforcer.
            return self.deny(Some(agreement), DenyReason::EvaluationFailed, matched);
        };
        let mut mask = FieldMask::empty();
        for role in &verdict.granted {
            if let Some(fields) = dataset.masks.get(role) {
                mask.union_with(fields);
            }
        }
        // Break-glass is weighed last, on a share casbin has already allowed, and only widens
        // the mask of roles casbin granted: it cannot lift any denial above.
        if req.break_glass {
            let mut invoked = false;
            for role in &verdict.granted {
                if let Some(fields) = dataset.break_glass.get(role) {
                    mask.union_with(fields);
                    matched.push(break_glass_id(agreement, req.dataset, role));
                    invoked = true;
                }
            }
            if !invoked {
                return self.deny(
                    Some(agreement),
                    DenyReason::BreakGlassNotPermitted {
                        isa: req.isa_id.to_owned(),
                        dataset: req.dataset.to_owned(),
                    },
                    matched,
                );
            }
            if let Some((_, rule_id)) = verdict.glass_denied_by {
                return self.deny(
                    Some(agreement),
                    DenyReason::BreakGlassDenied { rule_id },
                    matched,
                );
            }
        }
        // Marker rules are weighed only on an allowed share and only withhold records from it.
        let mut withheld = Vec::new();
        if let Some(candidates) = candidates {
            for marker in &candidates.markers {
                let verdict = candidates.evaluate(req, marker);
                if verdict.failed {
                    return self.deny(Some(agreement), DenyReason::EvaluationFailed, matched);
                }
                let earliest = match (verdict.denied_by, verdict.glass_denied_by) {
                    (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                    (a, b) => a.or(b),
                };
                if let Some((_, rule_id)) = earliest {
                    withheld.push(Withholding {
                        marker: marker.clone(),
                        rule_id,
                    });
                }
            }
        }
        Decision {
            effect: Effect::Allow,
            deny: None,
            matched,
            break_glass: req.break_glass,
            withheld,
            mask,
            obligations: dataset.obligations.clone(),
            policy_version: self.version.clone(),
            isa_version: Some(agreement.version),
            legal_basis: Some(agreement.legal_basis.clone()),
        }
    }

    /// What `agency`'s principals holding `roles` may do at `at`, one grant per agreement and
    /// dataset, for `ListDatasets`.
    ///
    /// Built by asking [`PolicyEngine::decide`] about every purpose and action, so a listing
    /// never promises what a share would refuse (operator deny rules included).
    pub fn grants_for(
        &self,
        agency: &str,
        roles: &[String],
        at: time::OffsetDateTime,
    ) -> Vec<Grant> {
        let mut grants = Vec::new();
        for compiled in self.agreements.values() {
            let agreement = &compiled.agreement;
            if !agreement.recipients.iter().any(|r| r == agency) {
                continue;
            }
            for terms in &agreement.datasets {
                let mut purposes = BTreeSet::new();
                let mut actions = BTreeSet::new();
                let mut fields = FieldMask::empty();
                for purpose in &agreement.purposes {
                    for action in Action::ALL {
                        let decision = self.decide(&DecisionRequest {
                            agency,
                            roles,
                            action,
                            dataset: &terms.dataset,
                            purpose,
                            isa_id: &agreement.id,
                            at,
                            break_glass: false,
                        });
                        if decision.is_allowed() {
                            purposes.insert(purpose.clone());
                            actions.insert(action);
                            fields.union_with(&decision.mask);
                        }
                    }
                }
                if !purposes.is_empty() {
                    grants.push(Grant {
                        isa_id: agreement.id.clone(),
                        isa_version: agreement.version,
                        dataset: terms.dataset.clone(),
                        provider: agreement.provider.clone(),
                        purposes: purposes.into_iter().collect(),
                        actions: actions.into_iter().collect(),
                        fields,
                        legal_basis: agreement.legal_basis.clone(),
                    });
                }
            }
        }
        grants
    }

    pub fn agreement(&self, id: &str) -> Option<&Agreement> {
        self.agreements.get(id).map(|c| &c.agreement)
    }

    /// Every agreement, by id.
    pub fn agreements(&self) -> impl Iterator<Item = &Agreement> {
        self.agreements.values().map(|c| &c.agreement)
    }

    /// The operator rules, in policy file order.
    pub fn rules(&self) -> &[OperatorRule] {
        &self.rules
    }

    /// The content hash of the model, agreements and rules, `sha256:` and hex; recorded with
    /// every decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn deny(
        &self,
        agreement: Option<&Agreement>,
        reason: DenyReason,
        matched: Vec<String>,
    ) -> Decision {
        Decision {
            effect: Effect::Deny,
            deny: Some(reason),
            matched,
            mask: FieldMask::empty(),
            break_glass: false,
            withheld: Vec::new(),
            obligations: Vec::new(),
            policy_version: self.version.clone(),
            isa_version: agreement.map(|a| a.version),
            legal_basis: None,
        }
    }
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enforcers: usize = self
            .agreements
            .values()
            .flat_map(|a| a.datasets.values())
            .map(|d| d.by_recipient.len())
            .sum();
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .field("agreements", &self.agreements.keys().collect::<Vec<_>>())
            .field("enforcers", &enforcers)
            .field("decision_cache", &self.cache.capacity())
            .finish()
    }
}

impl Candidates {
    fn build(model: &casbin::DefaultModel, lines: Vec<Vec<String>>) -> Result<Self, PolicyError> {
        let mut named_roles = HashSet::new();
        let mut any_role = false;
        let mut deny_rank = HashMap::new();
        let mut glass_only = HashSet::new();
        let mut markers = BTreeSet::new();
        for line in &lines {
            if line.get(EFT).is_some_and(|eft| eft == "deny")
                && let Some(id) = line.get(ID)
            {
                let rank = deny_rank.len();
                deny_rank.insert(id.clone(), rank);
                if line.get(BREAK_GLASS).is_some_and(|bg| bg == GLASS_YES) {
                    glass_only.insert(id.clone());
                }
                if let Some(marker) = line.get(MARKER).filter(|m| *m != ANY) {
                    markers.insert(marker.clone());
                }
            }
            match line.get(ROLE) {
                Some(role) if role == "*" => any_role = true,
                Some(role) => {
                    named_roles.insert(role.clone());
                }
                None => {}
            }
        }
        Ok(Self {
            enforcer: build_enforcer(model, lines)?,
            named_roles,
            any_role,
            deny_rank,
            glass_only,
            markers,
        })
    }

    /// Enforces one allow line's own values and expects it among the matches, so a model whose
    /// matcher cannot see the compiled lines fails at compile time, not on the first share.
    fn probe(
        &self,
        agreement: &Agreement,
        dataset: &str,
        recipient: &str,
    ) -> Result<(), PolicyError> {
        let Some(terms) = agreement.dataset(dataset) else {
            return Ok(());
        };
        let (Some(grant), Some(purpose), Some(action)) = (
            terms.roles.first(),
            agreement.purposes.first(),
            terms.actions.first(),
        ) else {
            return Ok(());
        };
        let request = (
            agreement.id.as_str(),
            recipient,
            grant.role.as_str(),
            dataset,
            purpose.as_str(),
            action.as_str(),
            NO_MARKER,
            GLASS_NO,
        );
        let expected = allow_id(agreement, dataset, recipient, &grant.role, *action, purpose);
        match self.enforcer.enforce_ex(request) {
            Ok((_, lines)) if lines.iter().any(|l| l.get(ID) == Some(&expected)) => Ok(()),
            Ok(_) => Err(PolicyError::Model {
                reason: format!("its matcher does not match the compiled line `{expected}`"),
            }),
            Err(e) => Err(PolicyError::Model {
                reason: format!("its matcher fails on `{expected}`: {e}"),
            }),
        }
    }

    /// Puts `req` to casbin once per distinct role that could match, about the share itself
    /// (`marker` empty) or about its records carrying `marker`.
    fn evaluate(&self, req: &DecisionRequest<'_>, marker: &str) -> Verdict {
        let glass = if req.break_glass { GLASS_YES } else { GLASS_NO };
        let mut verdict = Verdict::default();
        let mut seen = HashSet::new();
        let mut seen_unnamed = false;
        for role in req.roles {
            if !seen.insert(role.as_str()) {
                continue;
            }
            // A role no line names can only match `*` lines, and matches them all alike, so one
            // such role stands for the rest.
            if !self.named_roles.contains(role) {
                if !self.any_role || seen_unnamed {
                    continue;
                }
                seen_unnamed = true;
            }
            let request = (
                req.isa_id,
                req.agency,
                role.as_str(),
                req.dataset,
                req.purpose,
                req.action.as_str(),
                marker,
                glass,
            );
            match self.enforcer.enforce_ex(request) {
                Ok((_, lines)) => {
                    for line in lines {
                        let (Some(eft), Some(id)) = (line.get(EFT), line.get(ID)) else {
                            continue;
                        };
                        match eft.as_str() {
                            "allow" => {
                                verdict.granted.insert(role.clone());
                            }
                            "deny" => {
                                let rank = self.deny_rank.get(id).copied().unwrap_or(usize::MAX);
                                let slot = if self.glass_only.contains(id) {
                                    &mut verdict.glass_denied_by
                                } else {
                                    &mut verdict.denied_by
                                };
                                if slot.as_ref().is_none_or(|(r, _)| rank < *r) {
                                    let rule = id.strip_prefix(RULE_PREFIX).unwrap_or(id);
                                    *slot = Some((rank, rule.to_owned()));
                                }
                            }
                            _ => {}
                        }
                        if !verdict.matched.contains(id) {
                            verdict.matched.push(id.clone());
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, isa = req.isa_id, "casbin evaluation failed");
                    verdict.failed = true;
                }
            }
        }
        verdict
    }
}

// Column positions in a compiled line; they follow `model::POLICY`.
const EFT: usize = 0;
const ID: usize = 1;
const ROLE: usize = 4;
const MARKER: usize = 8;
const BREAK_GLASS: usize = 9;
const RULE_PREFIX: &str = "rule:";
const ANY: &str = "*";
/// The request's marker when casbin is asked about the share rather than marked records; no
/// marker rule can name it, since markers are identifiers.
const NO_MARKER: &str = "";
const GLASS_YES: &str = "yes";
const GLASS_NO: &str = "no";

/// The casbin lines for one agreement, dataset and recipient: the agreement's allow lines, then
/// the operator deny lines that could match, in file order. Allow lines come first because casbin stops at the
/// first matching deny; this way explain lists every allow that matched as well as the deny.
fn lines_for(
    agreement: &Agreement,
    dataset: &str,
    recipient: &str,
    rules: &[OperatorRule],
) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    if let Some(terms) = agreement.dataset(dataset) {
        for grant in &terms.roles {
            for action in &terms.actions {
                for purpose in &agreement.purposes {
                    let id = allow_id(agreement, dataset, recipient, &grant.role, *action, purpose);
                    lines.push(vec![
                        "allow".to_owned(),
                        id,
                        agreement.id.clone(),
                        recipient.to_owned(),
                        grant.role.clone(),
                        dataset.to_owned(),
                        purpose.clone(),
                        action.as_str().to_owned(),
                        ANY.to_owned(),
                        ANY.to_owned(),
                    ]);
                }
            }
        }
    }
    let could_match = |pattern: &str, value: &str| pattern == "*" || pattern == value;
    for rule in rules.iter().filter(|r| {
        r.effect == Effect::Deny
            && could_match(&r.agency, recipient)
            && could_match(&r.dataset, dataset)
    }) {
        lines.push(vec![
            "deny".to_owned(),
            format!("{RULE_PREFIX}{}", rule.id),
            "*".to_owned(),
            rule.agency.clone(),
            rule.role.clone(),
            rule.dataset.clone(),
            rule.purpose.clone(),
            rule.action.clone(),
            rule.marker.clone().unwrap_or_else(|| ANY.to_owned()),
            match rule.break_glass {
                BreakGlassScope::Applies => ANY,
                BreakGlassScope::Deny => GLASS_YES,
                BreakGlassScope::Exempt => GLASS_NO,
            }
            .to_owned(),
        ]);
    }
    lines
}

fn allow_id(
    agreement: &Agreement,
    dataset: &str,
    recipient: &str,
    role: &str,
    action: Action,
    purpose: &str,
) -> String {
    format!(
        "isa:{}@{}:{dataset}:{recipient}:{role}:{action}:{purpose}",
        agreement.id, agreement.version
    )
}

/// Names the break-glass terms a decision used, for explain and the audit entry's matched rules.
fn break_glass_id(agreement: &Agreement, dataset: &str, role: &str) -> String {
    format!(
        "break-glass:{}@{}:{dataset}:{role}",
        agreement.id, agreement.version
    )
}

/// Whether the agreement is usable at all on `today`.
fn lifecycle(agreement: &Agreement, today: time::Date) -> Option<DenyReason> {
    let isa = || agreement.id.clone();
    if agreement.status != AgreementStatus::Active {
        return Some(DenyReason::AgreementNotActive {
            isa: isa(),
            status: agreement.status,
        });
    }
    if today < agreement.valid_from {
        return Some(DenyReason::AgreementNotYetValid {
            isa: isa(),
            valid_from: agreement.valid_from,
        });
    }
    match agreement.valid_until {
        Some(until) if until < today => Some(DenyReason::AgreementExpired {
            isa: isa(),
            valid_until: until,
        }),
        _ => None,
    }
}

/// The first condition of the agreement's grant that `req` does not meet, in the documented
/// order: recipient, purpose, dataset, action, role.
fn grant_gap(agreement: &Agreement, req: &DecisionRequest<'_>) -> Option<DenyReason> {
    let isa = || agreement.id.clone();
    if !agreement.recipients.iter().any(|r| r == req.agency) {
        return Some(DenyReason::NotARecipient {
            isa: isa(),
            agency: req.agency.to_owned(),
        });
    }
    if !agreement.purposes.iter().any(|p| p == req.purpose) {
        return Some(DenyReason::PurposeNotPermitted {
            isa: isa(),
            purpose: req.purpose.to_owned(),
        });
    }
    let Some(terms) = agreement.dataset(req.dataset) else {
        return Some(DenyReason::DatasetNotCovered {
            isa: isa(),
            dataset: req.dataset.to_owned(),
        });
    };
    if !terms.actions.contains(&req.action) {
        return Some(DenyReason::ActionNotPermitted {
            isa: isa(),
            dataset: req.dataset.to_owned(),
            action: req.action,
        });
    }
    if !req
        .roles
        .iter()
        .any(|role| terms.fields_for(role).is_some())
    {
        return Some(DenyReason::NoRoleGranted {
            isa: isa(),
            dataset: req.dataset.to_owned(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_can_be_shared_across_threads() {
        assert_send_sync::<PolicyEngine>();
    }
}
