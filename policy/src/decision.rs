use std::fmt;

use crate::isa::{Action, AgreementStatus, Effect};
use crate::mask::FieldMask;

/// One question put to the policy: may this principal do this to this dataset, for this purpose,
/// under this agreement, now?
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    /// The principal's agency (the would-be recipient).
    pub agency: &'a str,
    pub roles: &'a [String],
    pub action: Action,
    pub dataset: &'a str,
    pub purpose: &'a str,
    /// The agreement the caller names; Liaison never picks one on the caller's behalf, so the
    /// audit trail shows which agreement the caller relied on.
    pub isa_id: &'a str,
    /// When the share happens. Agreement dates are compared with `at.date()`, so pass `at` in
    /// the offset the agreements' dates are written in (UK local time for UK agreements).
    pub at: time::OffsetDateTime,
    /// Whether the caller invokes emergency access. Honoured only where the agreement's
    /// break-glass terms name one of the caller's granted roles; otherwise the share is refused
    /// rather than quietly served at the normal field set, so the caller knows the emergency
    /// route was closed to them.
    pub break_glass: bool,
}

/// The policy's answer, with everything the gateway needs to enforce and audit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    /// Why the share was refused; `None` exactly when `effect` is allow.
    pub deny: Option<DenyReason>,
    /// The ids of the casbin lines that matched, for explain: agreement lines read
    /// `isa:<id>@<version>:<dataset>:<agency>:<role>:<action>:<purpose>`, operator rules
    /// `rule:<id>`.
    pub matched: Vec<String>,
    /// The fields released; empty on deny. Under break-glass, the normal fields and the
    /// break-glass fields of the caller's roles that may invoke it.
    pub mask: FieldMask,
    /// Whether the share is allowed under break-glass; always false on deny.
    pub break_glass: bool,
    /// The record sensitivity markers whose records must not be released under this decision,
    /// each with the operator rule that withholds it, ordered by marker; empty on deny.
    /// Decided once per request, so the gateway's per-record work is a lookup of the record's
    /// markers here ([`Decision::withholding`]).
    pub withheld: Vec<Withholding>,
    /// What the gateway must do when it discloses; empty on deny.
    pub obligations: Vec<Obligation>,
    /// The content hash of the policy that decided, for the audit entry.
    pub policy_version: String,
    /// The named agreement's version, whenever the agreement exists, so a denial under a
    /// suspended agreement is recorded against the version that was suspended.
    pub isa_version: Option<u32>,
    /// The agreement's legal basis, on allow only: it is the basis for a disclosure, and a
    /// denial discloses nothing.
    pub legal_basis: Option<String>,
}

/// Records carrying `marker` are withheld, because operator rule `rule_id` says so.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Withholding {
    pub marker: String,
    /// The earliest rule in the policy file withholding the marker from this share.
    pub rule_id: String,
}

/// Why a share was refused. The checks run in the order of the variants, and the first that
/// fails is reported, so a caller fixes the most basic problem first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    AgreementUnknown {
        isa: String,
    },
    AgreementNotActive {
        isa: String,
        status: AgreementStatus,
    },
    AgreementNotYetValid {
        isa: String,
        valid_from: time::Date,
    },
    AgreementExpired {
        isa: String,
        valid_until: time::Date,
    },
    NotARecipient {
        isa: String,
        agency: String,
    },
    PurposeNotPermitted {
        isa: String,
        purpose: String,
    },
    DatasetNotCovered {
        isa: String,
        dataset: String,
    },
    ActionNotPermitted {
        isa: String,
        dataset: String,
        action: Action,
    },
    NoRoleGranted {
        isa: String,
        dataset: String,
    },
    /// An operator rule denied a share the agreement would have allowed; when several did, the
    /// one earliest in the policy file.
    ExplicitDeny {
        rule_id: String,
    },
    /// The caller invoked break-glass, and the share would be allowed normally, but the
    /// agreement lets none of the caller's roles invoke it on this dataset.
    BreakGlassNotPermitted {
        isa: String,
        dataset: String,
    },
    /// The caller invoked break-glass, the agreement lets them, but an operator rule with
    /// `break_glass = "deny"` closes emergency access here; when several do, the one earliest
    /// in the policy file.
    BreakGlassDenied {
        rule_id: String,
    },
    /// casbin failed while evaluating; the share is refused rather than guessed at.
    EvaluationFailed,
}

/// Something the gateway must do when it discloses under a decision.
///
/// Deliberately small: the gateway must honour every obligation or refuse the share, so each
/// kind added here is a promise the gateway has to keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Obligation {
    /// A handling instruction to attach to every record disclosed.
    HandlingCaveat(String),
    /// The provider asked to be told of every disclosure under these terms.
    NotifyProvider,
}

/// What one agreement lets a principal do with one dataset, for `ListDatasets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub isa_id: String,
    pub isa_version: u32,
    pub dataset: String,
    pub provider: String,
    /// The purposes for which at least one action is allowed.
    pub purposes: Vec<String>,
    /// The actions allowed for at least one purpose.
    pub actions: Vec<Action>,
    pub fields: FieldMask,
    pub legal_basis: String,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// Why a record carrying `markers` must not be released under this decision, if it must
    /// not: the first of its markers that is withheld. A marker no rule names changes nothing.
    pub fn withholding<S: AsRef<str>>(&self, markers: &[S]) -> Option<&Withholding> {
        if self.withheld.is_empty() {
            return None;
        }
        markers
            .iter()
            .find_map(|marker| self.withheld.iter().find(|w| w.marker == marker.as_ref()))
    }

    /// The deny reason's stable code, if denied.
    pub fn reason(&self) -> Option<&'static str> {
        self.deny.as_ref().map(DenyReason::reason)
    }
}

impl DenyReason {
    /// The stable `UPPER_SNAKE` code clients may branch on, as listed in
    /// `proto/liaison/v1/errors.proto`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AgreementUnknown { .. } => "ISA_UNKNOWN",
            Self::AgreementNotActive { .. } => "ISA_NOT_ACTIVE",
            // errors.proto: ISA_EXPIRED covers "expired or not yet in force".
            Self::AgreementNotYetValid { .. } | Self::AgreementExpired { .. } => "ISA_EXPIRED",
            Self::NotARecipient { .. } => "AGENCY_NOT_RECIPIENT",
            Self::PurposeNotPermitted { .. } => "PURPOSE_NOT_PERMITTED",
            Self::DatasetNotCovered { .. } => "DATASET_NOT_COVERED",
            Self::ActionNotPermitted { .. } => "ACTION_NOT_PERMITTED",
            Self::NoRoleGranted { .. } => "ROLE_NOT_PERMITTED",
            Self::ExplicitDeny { .. } | Self::EvaluationFailed => "POLICY_DENIED",
            Self::BreakGlassNotPermitted { .. } | Self::BreakGlassDenied { .. } => {
                "BREAK_GLASS_NOT_PERMITTED"
            }
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AgreementUnknown { isa } => write!(f, "isa `{isa}` is not known"),
            Self::AgreementNotActive { isa, status } => {
                write!(f, "isa `{isa}` is {status}, not active")
            }
            Self::AgreementNotYetValid { isa, valid_from } => {
                write!(f, "isa `{isa}` is not in force until {valid_from}")
            }
            Self::AgreementExpired { isa, valid_until } => {
                write!(f, "isa `{isa}` ended on {valid_until}")
            }
            Self::NotARecipient { isa, agency } => {
                write!(f, "agency `{agency}` is not a recipient under isa `{isa}`")
            }
            Self::PurposeNotPermitted { isa, purpose } => {
                write!(f, "isa `{isa}` does not permit purpose `{purpose}`")
            }
            Self::DatasetNotCovered { isa, dataset } => {
                write!(f, "isa `{isa}` does not cover dataset `{dataset}`")
            }
            Self::ActionNotPermitted {
                isa,
                dataset,
                action,
            } => write!(
                f,
                "isa `{isa}` does not permit `{action}` on dataset `{dataset}`"
            ),
            Self::NoRoleGranted { isa, dataset } => write!(
                f,
                "isa `{isa}` releases no field of dataset `{dataset}` to any of the caller's roles"
            ),
            Self::ExplicitDeny { rule_id } => {
                write!(f, "operator rule `{rule_id}` denies this share")
            }
            Self::BreakGlassNotPermitted { isa, dataset } => write!(
                f,
                "isa `{isa}` lets none of the caller's roles invoke break-glass on dataset \
                 `{dataset}`"
            ),
            Self::BreakGlassDenied { rule_id } => {
                write!(
                    f,
                    "operator rule `{rule_id}` refuses break-glass on this share"
                )
            }
            Self::EvaluationFailed => {
                f.write_str("policy evaluation failed, so the share is denied")
            }
        }
    }
}

impl fmt::Display for Obligation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HandlingCaveat(caveat) => write!(f, "handling caveat: {caveat}"),
            Self::NotifyProvider => f.write_str("notify the provider"),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn reasons_are_the_codes_in_errors_proto() {
        let isa = || "norfolk-mash".to_owned();
        let cases = [
            (DenyReason::AgreementUnknown { isa: isa() }, "ISA_UNKNOWN"),
            (
                DenyReason::AgreementNotActive {
                    isa: isa(),
                    status: AgreementStatus::Suspended,
                },
                "ISA_NOT_ACTIVE",
            ),
            (
                DenyReason::AgreementNotYetValid {
                    isa: isa(),
                    valid_from: date!(2030 - 01 - 01),
                },
                "ISA_EXPIRED",
            ),
            (
                DenyReason::AgreementExpired {
                    isa: isa(),
                    valid_until: date!(2020 - 01 - 01),
                },
                "ISA_EXPIRED",
            ),
            (
                DenyReason::NotARecipient {
                    isa: isa(),
                    agency: "x".into(),
                },
                "AGENCY_NOT_RECIPIENT",
            ),
            (
                DenyReason::PurposeNotPermitted {
                    isa: isa(),
                    purpose: "x".into(),
                },
                "PURPOSE_NOT_PERMITTED",
            ),
            (
                DenyReason::DatasetNotCovered {
                    isa: isa(),
                    dataset: "x".into(),
                },
                "DATASET_NOT_COVERED",
            ),
            (
                DenyReason::ActionNotPermitted {
                    isa: isa(),
                    dataset: "x".into(),
                    action: Action::Read,
                },
                "ACTION_NOT_PERMITTED",
            ),
            (
                DenyReason::NoRoleGranted {
                    isa: isa(),
                    dataset: "x".into(),
                },
                "ROLE_NOT_PERMITTED",
            ),
            (
                DenyReason::ExplicitDeny {
                    rule_id: "x".into(),
                },
                "POLICY_DENIED",
            ),
            (DenyReason::EvaluationFailed, "POLICY_DENIED"),
            (
                DenyReason::BreakGlassNotPermitted {
                    isa: isa(),
                    dataset: "x".into(),
                },
                "BREAK_GLASS_NOT_PERMITTED",
            ),
            (
                DenyReason::BreakGlassDenied {
                    rule_id: "x".into(),
                },
                "BREAK_GLASS_NOT_PERMITTED",
            ),
        ];
        for (reason, code) in cases {
            assert_eq!(reason.reason(), code, "{reason:?}");
        }
    }

    #[test]
    fn messages_name_the_input_in_backticks() {
        let reason = DenyReason::PurposeNotPermitted {
            isa: "norfolk-mash".into(),
            purpose: "crime-prevention".into(),
        };
        assert_eq!(
            reason.to_string(),
            "isa `norfolk-mash` does not permit purpose `crime-prevention`"
        );
        let reason = DenyReason::AgreementNotActive {
            isa: "norfolk-mash".into(),
            status: AgreementStatus::Suspended,
        };
        assert_eq!(
            reason.to_string(),
            "isa `norfolk-mash` is suspended, not active"
        );
    }
}
