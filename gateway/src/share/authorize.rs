//! Authorize: policy decides, per dataset the share would touch, whether the
//! caller's agency and roles may perform the action for the stated purpose
//! under the stated agreement. Deny by default: a share goes on only to the
//! datasets allowed, each with its own field mask; if none is allowed the
//! share is refused `PERMISSION_DENIED` with the policy's reason.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use liaison_policy::{DecisionRequest, PolicyEngine};
use tokio::sync::watch;
use tower::{Layer, Service};

use super::{Answer, Authorized, BoxFuture, Facts, ValidOperation, Validated};
use crate::error::GatewayError;

/// Every reason policy may deny with; each is published in `errors.proto`.
pub const POLICY_REASONS: &[&str] = &[
    "ISA_UNKNOWN",
    "ISA_NOT_ACTIVE",
    "ISA_EXPIRED",
    "AGENCY_NOT_RECIPIENT",
    "PURPOSE_NOT_PERMITTED",
    "DATASET_NOT_COVERED",
    "ACTION_NOT_PERMITTED",
    "ROLE_NOT_PERMITTED",
    "POLICY_DENIED",
    "BREAK_GLASS_NOT_PERMITTED",
];

/// The current policy, replaced as a whole when policy reloads.
pub type PolicyHandle = watch::Receiver<Arc<PolicyEngine>>;

/// Adds the authorization stage.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: PolicyHandle,
}

impl AuthorizeLayer {
    /// Decides with whatever policy `policy` holds at the time of each call.
    pub fn new(policy: PolicyHandle) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The authorization stage.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: PolicyHandle,
}

impl<S> Service<Validated> for Authorize<S>
where
    S: Service<Authorized, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFuture<Result<Answer, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, validated: Validated) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.policy.borrow().clone();
        Box::pin(async move {
            let (plan, facts, denial) =
                tracing::debug_span!("authorise").in_scope(|| decide(&engine, &validated));
            if plan.is_empty() {
                let error = denial.unwrap_or_else(|| GatewayError::Denied {
                    reason: "DATASET_NOT_COVERED",
                    message: format!(
                        "isa `{}` covers no dataset this gateway serves",
                        validated.context.isa_id
                    ),
                });
                return Ok(Answer {
                    facts,
                    result: Err(error),
                });
            }
            let mut answer = inner.call(Authorized { validated, plan }).await?;
            let inner_facts = std::mem::take(&mut answer.facts);
            answer.facts = Facts {
                disclosures: inner_facts.disclosures,
                withheld: inner_facts.withheld,
                sources: inner_facts.sources,
                gaps: inner_facts.gaps,
                ..facts
            };
            Ok(answer)
        })
    }
}

/// The datasets a share may touch, each with its decision.
pub type Plan = Vec<(String, Arc<liaison_policy::Decision>)>;

/// Decides every dataset the share could touch. An open subscription calls
/// this again whenever policy changes, with the share it was started by.
pub fn decide(engine: &PolicyEngine, v: &Validated) -> (Plan, Facts, Option<GatewayError>) {
    let principal = &v.call.principal;
    let candidates: Vec<String> = match &v.operation {
        ValidOperation::Search { dataset_ids, .. } if !dataset_ids.is_empty() => {
            dataset_ids.clone()
        }
        ValidOperation::Search { .. } => engine
            .agreement(&v.context.isa_id)
            .map(|a| a.datasets.iter().map(|d| d.dataset.clone()).collect())
            .unwrap_or_default(),
        ValidOperation::Read { dataset_id, .. } => vec![dataset_id.clone()],
        ValidOperation::Subscribe { persons, .. } => persons.keys().cloned().collect(),
    };
    // An unknown agreement still gets a decision, so the refusal carries
    // policy's own reason and version.
    let candidates = if candidates.is_empty() {
        vec![String::new()]
    } else {
        candidates
    };
    let now = time::OffsetDateTime::now_utc();
    let mut facts = Facts {
        policy_version: engine.version().to_owned(),
        provider: engine
            .agreement(&v.context.isa_id)
            .map(|a| a.provider.clone())
            .unwrap_or_default(),
        ..Facts::default()
    };
    let mut plan = Vec::new();
    let mut denial = None;
    for dataset in candidates {
        let decision = engine.decide(&DecisionRequest {
            agency: &principal.agency,
            roles: &principal.roles,
            action: v.call.action,
            dataset: &dataset,
            purpose: &v.context.purpose,
            isa_id: &v.context.isa_id,
            at: now,
            break_glass: v.context.break_glass.is_some(),
        });
        if let Some(version) = decision.isa_version {
            facts.isa_version = version;
        }
        if let Some(basis) = &decision.legal_basis {
            facts.legal_basis.clone_from(basis);
        }
        for rule in &decision.matched {
            if !facts.matched_rules.contains(rule) {
                facts.matched_rules.push(rule.clone());
            }
        }
        match &decision.deny {
            None if decision.effect == liaison_policy::Effect::Allow => {
                if decision.break_glass {
                    facts.break_glass_datasets.push(dataset.clone());
                }
                plan.push((dataset, Arc::new(decision)));
            }
            deny => {
                if denial.is_none() {
                    denial = Some(match deny {
                        Some(reason) => GatewayError::Denied {
                            reason: reason.reason(),
                            message: reason.to_string(),
                        },
                        None => GatewayError::Denied {
                            reason: "POLICY_DENIED",
                            message: "no policy rule allows this share".into(),
                        },
                    });
                }
            }
        }
    }
    facts.allowed = !plan.is_empty();
    (plan, facts, denial)
}

#[cfg(test)]
mod tests;
