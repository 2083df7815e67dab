//! Shared fixtures for the integration tests: the demo policies and a request builder whose
//! defaults are the demo's allowed share, so each test states only what it changes.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of these fixtures"
)]
#![expect(
    clippy::unwrap_used,
    reason = "fixtures, not code under test: a fixture that does not load should fail loudly"
)]

use liaison_policy::{Action, Decision, DecisionRequest, PolicyEngine, PolicySet};
use time::OffsetDateTime;
use time::macros::datetime;

pub const DEMO: &str = include_str!("../../examples/demo.toml");
pub const DEMO_DENY: &str = include_str!("../../examples/demo_deny.toml");

/// A day the demo agreement is in force.
pub const IN_FORCE: OffsetDateTime = datetime!(2026-06-01 10:00 +01:00);

pub fn engine(toml: &str) -> PolicyEngine {
    PolicyEngine::compile(&PolicySet::from_toml(toml).unwrap()).unwrap()
}

#[derive(Debug, Clone)]
pub struct Ask {
    pub agency: String,
    pub roles: Vec<String>,
    pub action: Action,
    pub dataset: String,
    pub purpose: String,
    pub isa: String,
    pub at: OffsetDateTime,
    pub break_glass: bool,
}

/// The demo's allowed share: a Hackney social worker reading police records to safeguard a
/// child.
pub fn ask() -> Ask {
    Ask {
        agency: "hackney-childrens".into(),
        roles: vec!["social-worker".into()],
        action: Action::Read,
        dataset: "police.records".into(),
        purpose: "safeguarding-children".into(),
        isa: "met-hackney-children".into(),
        at: IN_FORCE,
        break_glass: false,
    }
}

impl Ask {
    pub fn agency(mut self, agency: &str) -> Self {
        self.agency = agency.into();
        self
    }

    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    pub fn action(mut self, action: Action) -> Self {
        self.action = action;
        self
    }

    pub fn dataset(mut self, dataset: &str) -> Self {
        self.dataset = dataset.into();
        self
    }

    pub fn purpose(mut self, purpose: &str) -> Self {
        self.purpose = purpose.into();
        self
    }

    pub fn isa(mut self, isa: &str) -> Self {
        self.isa = isa.into();
        self
    }

    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = at;
        self
    }

    /// Invokes break-glass.
    pub fn break_glass(mut self) -> Self {
        self.break_glass = true;
        self
    }

    pub fn decide(&self, engine: &PolicyEngine) -> Decision {
        engine.decide(&DecisionRequest {
            agency: &self.agency,
            roles: &self.roles,
            action: self.action,
            dataset: &self.dataset,
            purpose: &self.purpose,
            isa_id: &self.isa,
            at: self.at,
            break_glass: self.break_glass,
        })
    }
}

/// The demo policy with `from` replaced by `to`, for variations on one attribute.
pub fn demo_with(from: &str, to: &str) -> String {
    assert!(DEMO.contains(from), "the demo policy has no `{from}`");
    DEMO.replacen(from, to, 1)
}

pub fn paths(decision: &Decision) -> Vec<&str> {
    decision.mask.paths().collect()
}
