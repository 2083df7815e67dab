//! Liaison's policy layer: Information Sharing Agreements and operator rules, compiled to casbin
//! ABAC and evaluated per share.
//!
//! Deny is the default and an explicit deny overrides any allow. A share is allowed only under an
//! agreement that exists, is active and in force, names the caller's agency as a recipient,
//! permits the stated purpose, covers the dataset, permits the action, and releases fields to at
//! least one of the caller's roles; and only if no operator rule denies it. The decision carries
//! the field mask (the union of the caller's roles' fields), the obligations, the rules that
//! matched, and the policy's content hash for the audit entry.
//!
//! **Break-glass.** Dataset terms may list roles that can invoke emergency access and the further
//! fields they then see:
//!
//! ```toml
//! [[agreement.datasets.break_glass]]
//! roles = ["team-manager"]     # each must also have normal terms on this dataset
//! fields = ["incident.location", "warning_marker.description"]
//! ```
//!
//! A request with [`DecisionRequest::break_glass`] set is decided exactly like a normal one; only
//! if that allows is break-glass weighed: when some granted role of the caller is listed, the
//! mask gains those roles' break-glass fields and [`Decision::break_glass`] is set; otherwise the
//! share is refused with [`DenyReason::BreakGlassNotPermitted`]. So break-glass never lifts a
//! denial and never widens beyond the normal fields and the listed ones, and terms that are not
//! invoked change nothing. An operator rule with `break_glass = "deny"` applies only to
//! invocations: a matching one is refused [`DenyReason::BreakGlassDenied`] (also
//! `BREAK_GLASS_NOT_PERMITTED`) while normal shares go on.
//!
//! **Sensitivity markers.** A rule naming a `marker` refuses no share; it withholds records
//! carrying that marker from the shares it matches:
//!
//! ```toml
//! [[rule]]
//! id = "no-witness-protection"
//! effect = "deny"
//! agency = "*"
//! role = "*"
//! dataset = "police.records"
//! purpose = "*"
//! action = "*"
//! marker = "witness-protection"
//! # break_glass = "exempt"   # would release such records to an allowed break-glass share
//! description = "Records of people under witness protection are never shared with partners"
//! ```
//!
//! casbin decides it (through the decision table it filled when the policy was compiled), once
//! per allowed request, and [`Decision::withheld`] lists the markers
//! withheld with their rules; [`Decision::withholding`] is the per-record lookup. Markers only
//! narrow: a record is released only where it would be without its markers, and a marker no rule
//! names changes nothing.
//!
//! ```
//! use liaison_policy::{Action, DecisionRequest, PolicyEngine, PolicySet};
//!
//! let set = PolicySet::from_toml(include_str!("../examples/demo.toml"))?;
//! let engine = PolicyEngine::compile(&set)?;
//! let roles = ["social-worker".to_owned()];
//! let decision = engine.decide(&DecisionRequest {
//!     agency: "hackney-childrens",
//!     roles: &roles,
//!     action: Action::Read,
//!     dataset: "police.records",
//!     purpose: "safeguarding-children",
//!     isa_id: "met-hackney-children",
//!     at: time::macros::datetime!(2026-06-01 10:00 +01:00),
//!     break_glass: false,
//! });
//! assert!(decision.is_allowed());
//! assert!(decision.mask.allows("person.names"));
//! assert!(!decision.mask.allows("relationship.kind"));
//! # Ok::<(), liaison_policy::PolicyError>(())
//! ```
//!
//! The offline tools behind `liaison policy check|test|explain` live here too, each returning a
//! structured result whose `Display` is what the CLI prints:
//!
//! * [`check`] validates the casbin model (refusing one without `eft`), reads the policy and
//!   runs [`lint_on`] against the names a deployment knows ([`KnownNames`]): unknown agencies,
//!   datasets, roles, purposes and field paths; dead, redundant and shadowing rules; agreements
//!   past their end or their review date.
//! * [`run_case_file`] and [`TestCases`] run YAML or TOML cases with expected decisions, reason
//!   codes and field masks, and report each difference.
//! * [`explain`] tells one decision in plain English for a DPO.
//!
//! Domain types only: converting to and from `liaison.v1` messages happens at the gateway's edge.

mod cache;
mod cases;
mod decision;
mod engine;
mod error;
mod explain;
mod isa;
mod lint;
mod mask;
mod model;
mod set;
mod table;
mod version;

pub use cases::{
    CaseResult, Expectation, Mismatch, REASON_CODES, Records, RequestSpec, TestCase, TestCases,
    TestReport, run_case_file,
};
pub use decision::{Decision, DecisionRequest, DenyReason, Grant, Obligation, Withholding};
pub use engine::{CompileOptions, PolicyEngine, TableCoverage};
pub use error::{PolicyError, Problem};
pub use explain::{Asked, Check, Explanation, explain};
pub use isa::{
    Action, Agreement, AgreementStatus, BreakGlassScope, BreakGlassTerms, Controllership,
    DatasetTerms, Effect, OperatorRule, RoleFields, SignOff, UnknownAction,
};
pub use lint::{CheckReport, KnownNames, Lint, LintCode, Severity, check, lint, lint_on};
pub use mask::FieldMask;
pub use model::{MODEL, validate_model};
pub use set::PolicySet;
