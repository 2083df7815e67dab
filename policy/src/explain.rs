//! `liaison policy explain`: one decision told in plain English, for a Data Protection Officer.
//!
//! The explanation follows the decision, never the other way round: [`explain`] asks
//! [`PolicyEngine::decide`], and the deny reason says which check failed, in the documented
//! order. The checks before it passed; those after it were not reached. So an explanation cannot
//! tell a different story from the decision the gateway would make.

use std::fmt;

use crate::decision::{Decision, DecisionRequest, DenyReason, Obligation};
use crate::engine::PolicyEngine;
use crate::isa::{Agreement, OperatorRule};
use crate::mask::FieldMask;

/// A decision with the reasoning behind it; `Display` writes it out for a reader who knows the
/// agreements, not the software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub request: Asked,
    pub decision: Decision,
    /// The agreement the caller named, when the policy holds it.
    pub agreement: Option<Agreement>,
    /// The checks in the order they are made, up to and including the first that failed.
    pub checks: Vec<Check>,
    /// The operator rule that refused the share, when one did.
    pub denied_by: Option<OperatorRule>,
    /// On allow, the fields each of the caller's roles releases; the decision's mask is their
    /// union with [`Explanation::break_glass_releases`].
    pub releases: Vec<(String, FieldMask)>,
    /// On an allowed break-glass share, the further fields each invoking role receives.
    pub break_glass_releases: Vec<(String, FieldMask)>,
    /// On allow, each marker whose records are withheld and the rule withholding them.
    pub withheld: Vec<(String, OperatorRule)>,
}

/// The request, owned, as the explanation repeats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub agency: String,
    pub roles: Vec<String>,
    pub action: crate::isa::Action,
    pub dataset: String,
    pub purpose: String,
    pub isa: String,
    pub date: time::Date,
    pub break_glass: bool,
}

/// One condition of sharing and whether the request met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub passed: bool,
    /// A sentence saying what was checked and what was found.
    pub finding: String,
}

/// Decides `req` with `engine` and explains the decision.
pub fn explain(engine: &PolicyEngine, req: &DecisionRequest<'_>) -> Explanation {
    let decision = engine.decide(req);
    let request = Asked {
        agency: req.agency.to_owned(),
        roles: req.roles.to_vec(),
        action: req.action,
        dataset: req.dataset.to_owned(),
        purpose: req.purpose.to_owned(),
        isa: req.isa_id.to_owned(),
        date: req.at.date(),
        break_glass: req.break_glass,
    };
    let agreement = engine.agreement(req.isa_id).cloned();
    let failed_at = decision.deny.as_ref().map(step_of);
    let denied_by = match &decision.deny {
        Some(DenyReason::ExplicitDeny { rule_id } | DenyReason::BreakGlassDenied { rule_id }) => {
            engine.rules().iter().find(|r| &r.id == rule_id).cloned()
        }
        _ => None,
    };
    let mut checks = Vec::new();
    if let Some(agreement) = &agreement {
        for step in 0..steps(req.break_glass) {
            let passed = failed_at.is_none_or(|failed| step < failed);
            checks.push(Check {
                passed,
                finding: finding(step, passed, agreement, &request, denied_by.as_ref()),
            });
            if !passed {
                break;
            }
        }
    } else {
        checks.push(Check {
            passed: false,
            finding: format!(
                "This policy holds no agreement `{}`, and nothing is shared without one.",
                request.isa
            ),
        });
    }
    let terms = agreement
        .as_ref()
        .filter(|_| decision.is_allowed())
        .and_then(|a| a.dataset(req.dataset));
    let mut roles: Vec<&String> = req.roles.iter().collect();
    roles.sort();
    roles.dedup();
    let by_role = |fields_for: &dyn Fn(&str) -> Option<FieldMask>| -> Vec<(String, FieldMask)> {
        roles
            .iter()
            .filter_map(|role| fields_for(role).map(|mask| ((*role).clone(), mask)))
            .collect()
    };
    let releases = match terms {
        Some(terms) => by_role(&|role| terms.fields_for(role).map(FieldMask::new)),
        None => Vec::new(),
    };
    let break_glass_releases = match terms {
        Some(terms) if decision.break_glass => by_role(&|role| {
            terms.fields_for(role)?;
            terms.break_glass_fields_for(role).map(FieldMask::new)
        }),
        _ => Vec::new(),
    };
    let withheld = decision
        .withheld
        .iter()
        .filter_map(|w| {
            let rule = engine.rules().iter().find(|r| r.id == w.rule_id)?;
            Some((w.marker.clone(), rule.clone()))
        })
        .collect();
    Explanation {
        request,
        decision,
        agreement,
        checks,
        denied_by,
        releases,
        break_glass_releases,
        withheld,
    }
}

/// How many checks there are: active, in force, recipient, purpose, dataset, action, role,
/// operator rules; and break-glass when it was invoked.
const STEPS: usize = 8;

fn steps(break_glass: bool) -> usize {
    STEPS + usize::from(break_glass)
}

/// The check a deny reason reports as failed.
fn step_of(reason: &DenyReason) -> usize {
    match reason {
        DenyReason::AgreementUnknown { .. } | DenyReason::AgreementNotActive { .. } => 0,
        DenyReason::AgreementNotYetValid { .. } | DenyReason::AgreementExpired { .. } => 1,
        DenyReason::NotARecipient { .. } => 2,
        DenyReason::PurposeNotPermitted { .. } => 3,
        DenyReason::DatasetNotCovered { .. } => 4,
        DenyReason::ActionNotPermitted { .. } => 5,
        DenyReason::NoRoleGranted { .. } => 6,
        DenyReason::ExplicitDeny { .. } | DenyReason::EvaluationFailed => 7,
        DenyReason::BreakGlassNotPermitted { .. } | DenyReason::BreakGlassDenied { .. } => 8,
    }
}

fn finding(
    step: usize,
    passed: bool,
    a: &Agreement,
    r: &Asked,
    denied_by: Option<&OperatorRule>,
) -> String {
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (step, passed) {
        (0, true) => "The agreement is active.".to_owned(),
        (0, false) => format!(
            "The agreement is {}, not active, so nothing is shared under it.",
            a.status
        ),
        (1, _) => {
            let window = match a.valid_until {
                Some(until) => format!("from {} to {until}", a.valid_from),
                None => format!("from {}, with no end date", a.valid_from),
            };
            if passed {
                format!("It is in force on {} ({window}).", r.date)
            } else {
                format!("It is not in force on {} (it runs {window}).", r.date)
            }
        }
        (2, true) => format!("`{}` is one of its recipients.", r.agency),
        (2, false) => format!(
            "`{}` is not one of its recipients ({}).",
            r.agency,
            quoted(&a.recipients)
        ),
        (3, true) => format!("It permits sharing for `{}`.", r.purpose),
        (3, false) => format!(
            "It does not permit sharing for `{}`; it permits {}.",
            r.purpose,
            quoted(&a.purposes)
        ),
        (4, true) => format!("It covers the dataset `{}`.", r.dataset),
        (4, false) => {
            let covered: Vec<String> = a.datasets.iter().map(|t| t.dataset.clone()).collect();
            format!(
                "It does not cover the dataset `{}`; it covers {}.",
                r.dataset,
                quoted(&covered)
            )
        }
        (5, _) => {
            let actions: Vec<String> = a
                .dataset(&r.dataset)
                .map(|t| t.actions.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            if passed {
                format!("It permits `{}` on `{}`.", r.action, r.dataset)
            } else {
                format!(
                    "It does not permit `{}` on `{}`; it permits {}.",
                    r.action,
                    r.dataset,
                    quoted(&actions)
                )
            }
        }
        (6, _) => {
            let named: Vec<String> = a
                .dataset(&r.dataset)
                .map(|t| t.roles.iter().map(|g| g.role.clone()).collect())
                .unwrap_or_default();
            if passed {
                let mut granted: Vec<String> = Vec::new();
                for role in r.roles.iter().filter(|role| named.contains(role)) {
                    if !granted.contains(role) {
                        granted.push(role.clone());
                    }
                }
                format!(
                    "It releases fields of `{}` to {}, which the caller holds.",
                    r.dataset,
                    quoted(&granted)
                )
            } else {
                let held = if r.roles.is_empty() {
                    "no role".to_owned()
                } else {
                    quoted(&r.roles)
                };
                format!(
                    "It releases fields of `{}` only to {}, and the caller holds {held}.",
                    r.dataset,
                    quoted(&named)
                )
            }
        }
        (8, _) => {
            let invokers: Vec<String> = a
                .dataset(&r.dataset)
                .map(|t| {
                    t.break_glass
                        .iter()
                        .flat_map(|bg| bg.roles.iter().cloned())
                        .collect()
                })
                .unwrap_or_default();
            if passed {
                format!(
                    "The caller invoked break-glass (emergency access), and the agreement lets \
                     {} do so on `{}`.",
                    quoted(&invokers),
                    r.dataset
                )
            } else if let Some(rule) = denied_by {
                format!(
                    "The caller invoked break-glass (emergency access), and the agreement lets \
                     {} do so on `{}`, but operator rule `{}` closes emergency access here: \
                     \"{}\".",
                    quoted(&invokers),
                    r.dataset,
                    rule.id,
                    rule.description
                )
            } else if invokers.is_empty() {
                format!(
                    "The caller invoked break-glass (emergency access), but the agreement allows \
                     no emergency access to `{}`; the caller should ask for the normal share \
                     instead.",
                    r.dataset
                )
            } else {
                format!(
                    "The caller invoked break-glass (emergency access), but the agreement lets \
                     only {} do so on `{}`.",
                    quoted(&invokers),
                    r.dataset
                )
            }
        }
        (_, true) => "No operator rule stops this share.".to_owned(),
        (_, false) => match denied_by {
            Some(rule) => format!(
                "Operator rule `{}` stops it: \"{}\".",
                rule.id, rule.description
            ),
            None => "The policy could not be evaluated, so the share is refused rather than \
                     guessed at."
                .to_owned(),
        },
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        match &self.decision.deny {
            None => writeln!(
                f,
                "ALLOWED: `{}` may {} `{}` for `{}` under agreement `{}`.",
                r.agency, r.action, r.dataset, r.purpose, r.isa
            )?,
            Some(reason) => writeln!(f, "DENIED ({}): {reason}.", reason.reason())?,
        }

        writeln!(f, "\nThe request")?;
        let roles = match r.roles.as_slice() {
            [] => "no role".to_owned(),
            [role] => format!("the role `{role}`"),
            roles => format!(
                "the roles {}",
                roles
                    .iter()
                    .map(|role| format!("`{role}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        writeln!(
            f,
            "  Someone at `{}` holding {roles} asked to {} `{}` for `{}`, under agreement `{}`, \
             on {}.",
            r.agency, r.action, r.dataset, r.purpose, r.isa, r.date
        )?;
        if r.break_glass {
            writeln!(
                f,
                "  They invoked break-glass: emergency access beyond their normal fields, for an \
                 immediate risk to life or of serious harm."
            )?;
        }

        if let Some(a) = &self.agreement {
            writeln!(f, "\nThe agreement")?;
            writeln!(
                f,
                "  \"{}\" (`{}`, version {}), provided by `{}`.",
                a.title, a.id, a.version, a.provider
            )?;
            writeln!(f, "  Legal basis: {}", a.legal_basis)?;
            if !a.dpo_contacts.is_empty() {
                writeln!(f, "  DPO contacts: {}", a.dpo_contacts.join(", "))?;
            }
        }

        writeln!(f, "\nWhat was checked")?;
        for check in &self.checks {
            let mark = if check.passed { "yes" } else { "NO " };
            writeln!(f, "  {mark}  {}", check.finding)?;
        }
        if self.checks.last().is_some_and(|c| !c.passed) && self.checks.len() < steps(r.break_glass)
        {
            writeln!(f, "  The remaining checks were not needed.")?;
        }

        writeln!(f, "\nWhat is released")?;
        if self.decision.is_allowed() {
            for (role, fields) in &self.releases {
                writeln!(f, "  To `{role}`: {fields}.")?;
            }
            for (role, fields) in &self.break_glass_releases {
                writeln!(f, "  Under break-glass, `{role}` also receives: {fields}.")?;
            }
            if !self.break_glass_releases.is_empty() {
                writeln!(f, "  In all, the caller receives: {}.", self.decision.mask)?;
            } else if self.releases.len() > 1 {
                writeln!(
                    f,
                    "  The caller holds several roles, so receives all of these: {}.",
                    self.decision.mask
                )?;
            }
            writeln!(
                f,
                "  Every other field is removed from the records before they leave."
            )?;
            for (marker, rule) in &self.withheld {
                writeln!(
                    f,
                    "  Records marked `{marker}` are withheld by rule `{}`: {}",
                    rule.id, rule.description
                )?;
            }
            if let Some(basis) = &self.decision.legal_basis {
                writeln!(f, "  The disclosure is recorded under: {basis}")?;
            }
            if self.decision.break_glass {
                writeln!(
                    f,
                    "  This is an emergency disclosure: the ledger marks it as break-glass and a \
                     DPO must review it."
                )?;
            }
            if !self.decision.obligations.is_empty() {
                writeln!(f, "\nConditions on the recipient")?;
                for obligation in &self.decision.obligations {
                    match obligation {
                        Obligation::HandlingCaveat(caveat) => {
                            writeln!(f, "  Handling caveat on every record: {caveat}")?;
                        }
                        Obligation::NotifyProvider => {
                            writeln!(f, "  The provider is told of this disclosure.")?;
                        }
                    }
                }
            }
        } else {
            writeln!(f, "  Nothing.")?;
        }

        writeln!(f, "\nFor the audit trail")?;
        writeln!(f, "  Policy version: {}", self.decision.policy_version)?;
        if self.decision.matched.is_empty() {
            write!(f, "  Policy lines matched: none")
        } else {
            write!(
                f,
                "  Policy lines matched: {}",
                self.decision.matched.join(", ")
            )
        }
    }
}
