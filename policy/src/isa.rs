//! Information Sharing Agreements and operator rules as the policy file states them.
//!
//! These types are what DPOs sign off, so they stay close to the agreement's own wording; the
//! engine compiles them to casbin lines and never changes them.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// One Information Sharing Agreement at one version.
///
/// A change to an agreement is a new version, so the version recorded in an audit entry names
/// exactly the terms a share was decided under.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// For example `met-hackney-children`.
    pub id: String,
    pub version: u32,
    pub title: String,
    /// The agency that provides the data.
    pub provider: String,
    /// The agencies that may receive it.
    pub recipients: Vec<String>,
    /// For example `safeguarding-children`, `missing-person`.
    pub purposes: Vec<String>,
    /// Statute and section, free text; recorded with every share made under the agreement.
    pub legal_basis: String,
    pub datasets: Vec<DatasetTerms>,
    /// The first day the agreement is in force.
    #[serde(deserialize_with = "date", serialize_with = "write_date")]
    pub valid_from: time::Date,
    /// The last day the agreement is in force; open-ended when absent.
    #[serde(
        default,
        deserialize_with = "optional_date",
        serialize_with = "write_optional_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_until: Option<time::Date>,
    /// When the DPOs must next review it; reported, never enforced.
    #[serde(
        default,
        deserialize_with = "optional_date",
        serialize_with = "write_optional_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub review_date: Option<time::Date>,
    pub status: AgreementStatus,
    #[serde(default)]
    pub dpo_contacts: Vec<String>,
    /// Whether the parties are independent controllers (the usual case) or joint controllers
    /// with a joint-controller arrangement (UK GDPR Art. 26).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllership: Option<Controllership>,
    /// Whether special category data (UK GDPR Art. 9) may be shared under it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub special_category: bool,
    /// Whether the sharing is law-enforcement processing under Part 3 of the Data Protection
    /// Act 2018, which changes the rights and logging duties that apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub law_enforcement: bool,
    /// How requests to exercise individual rights (access, rectification, erasure,
    /// restriction, objection) are handled between the parties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights_handling: Option<String>,
    /// How long recipients keep shared data and how they delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// The security each party must maintain (for example a vetting level or a
    /// classification's handling rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_requirements: Option<String>,
    /// The senior officer who approved the agreement for each party.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sign_off: Vec<SignOff>,
}

/// Whether the parties to an agreement decide the purposes of processing alone or together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Controllership {
    Independent,
    Joint,
}

/// A senior officer's approval of an agreement on behalf of one party.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignOff {
    /// The party (agency id).
    pub agency: String,
    pub name: String,
    /// For example `Senior Information Risk Owner`.
    pub role: String,
    #[serde(deserialize_with = "date", serialize_with = "write_date")]
    pub date: time::Date,
}

/// What an agreement releases from one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetTerms {
    /// For example `police.records`.
    pub dataset: String,
    pub actions: Vec<Action>,
    /// The fields each recipient role may see; a role not listed sees nothing.
    pub roles: Vec<RoleFields>,
    /// A handling instruction the recipient must follow, carried on every allowed share as an
    /// [`crate::Obligation::HandlingCaveat`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling_caveat: Option<String>,
    /// Whether the provider asked to be told of every disclosure under these terms.
    #[serde(default)]
    pub notify_provider: bool,
    /// Emergency access: the roles that may invoke break-glass on this dataset and the further
    /// fields they then see. Empty (the default) means break-glass is never honoured here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub break_glass: Vec<BreakGlassTerms>,
}

/// Who may invoke break-glass on one dataset, and what it adds to their normal field set.
///
/// Break-glass only widens: every role listed must also have normal terms on the same dataset,
/// so an invocation can never reach data the role could not see at all, and every check a normal
/// share passes (agreement state, recipient, purpose, action, operator rules) still applies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassTerms {
    /// Roles that may invoke it, each also named in the dataset's `roles`.
    pub roles: Vec<String>,
    /// Field paths released on top of the role's normal fields while break-glass is invoked.
    pub fields: Vec<String>,
}

/// The fields one role may see.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFields {
    pub role: String,
    /// Field paths such as `person.names`; `incident` or `incident.*` releases every field of an
    /// incident.
    pub fields: Vec<String>,
}

/// What a caller does with a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Search,
    Read,
    Subscribe,
}

/// Where an agreement is in its life; only [`AgreementStatus::Active`] permits sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgreementStatus {
    Draft,
    Active,
    Suspended,
    Expired,
}

/// Allow or deny, for operator rules and decisions alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// A rule an operator adds beside the agreements.
///
/// Operators use these to stop sharing quickly and narrowly (one purpose, one dataset, one
/// agency) without editing an agreement the DPOs signed. Only `deny` is accepted for now: a share
/// is only possible under an active agreement, so an allow rule could only widen access beyond
/// what an agreement says. A rule with a [`OperatorRule::marker`] denies records rather than
/// shares: "no partner sees records marked `witness-protection`".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRule {
    pub id: String,
    pub effect: Effect,
    /// An agency id, or `*` for any.
    pub agency: String,
    /// A role, or `*` for any.
    pub role: String,
    /// A dataset, or `*` for any.
    pub dataset: String,
    /// A purpose, or `*` for any.
    pub purpose: String,
    /// `search`, `read`, `subscribe`, or `*` for any.
    pub action: String,
    /// Why the rule exists, for the DPO reading an explain.
    pub description: String,
    /// A record sensitivity marker (for example `witness-protection`). When set, the rule does
    /// not refuse the share: it withholds every record carrying the marker from the shares it
    /// matches, and releases the rest. Markers come from the source, so such a rule can only
    /// narrow what an agreement releases.
    #[serde(default)]
    pub marker: Option<String>,
    /// Which shares the rule applies to, as far as emergency access goes; see
    /// [`BreakGlassScope`].
    #[serde(default)]
    pub break_glass: BreakGlassScope,
}

/// How an operator rule treats break-glass (emergency access) shares.
///
/// The default keeps the guarantee that break-glass never lifts a denial: the rule applies to
/// every share, invoked or not. `deny` narrows a rule to invocations, so an operator can close
/// the emergency route for some agency, dataset or purpose and leave normal sharing as it is.
/// `exempt` lets an invocation past a marker rule, for records whose withholding must yield in
/// an emergency; it is refused on a rule without a marker, where it would let break-glass lift
/// a denial.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BreakGlassScope {
    /// The rule applies to normal and break-glass shares alike.
    #[default]
    Applies,
    /// The rule applies only to break-glass shares; a matching invocation is refused
    /// `BREAK_GLASS_NOT_PERMITTED` (or, for a marker rule, withholds the marked records).
    Deny,
    /// The rule applies only to normal shares (marker rules only).
    Exempt,
}

impl BreakGlassScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applies => "applies",
            Self::Deny => "deny",
            Self::Exempt => "exempt",
        }
    }

    /// Whether the rule applies to a share with break-glass invoked or not.
    pub fn covers(self, break_glass: bool) -> bool {
        match self {
            Self::Applies => true,
            Self::Deny => break_glass,
            Self::Exempt => !break_glass,
        }
    }
}

impl Agreement {
    /// The agreement as a policy-file document holding just it (one `[[agreement]]` table), in
    /// a canonical form: the same terms always give the same text, so its hash identifies them.
    pub fn to_toml(&self) -> Result<String, crate::PolicyError> {
        #[derive(Serialize)]
        struct One<'a> {
            agreement: [&'a Agreement; 1],
        }
        toml::to_string(&One { agreement: [self] }).map_err(|e| crate::PolicyError::Invalid {
            problems: vec![crate::error::Problem {
                subject: format!("agreement `{}`", self.id),
                line: None,
                message: format!("cannot be written as TOML: {e}"),
            }],
        })
    }

    /// `sha256:` and the hex SHA-256 of [`Agreement::to_toml`]: what a stored version is known by.
    pub fn content_hash(&self) -> Result<String, crate::PolicyError> {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.to_toml()?.as_bytes());
        Ok(format!("sha256:{}", hex_lower(&digest)))
    }

    /// The terms for one dataset, if the agreement covers it.
    pub fn dataset(&self, dataset: &str) -> Option<&DatasetTerms> {
        self.datasets.iter().find(|terms| terms.dataset == dataset)
    }

    /// Whether the agreement is in force on `date`, judging its dates only.
    pub fn in_force_on(&self, date: time::Date) -> bool {
        self.valid_from <= date && self.valid_until.is_none_or(|until| date <= until)
    }
}

impl DatasetTerms {
    /// The fields released to `role`, if the terms name it.
    pub fn fields_for(&self, role: &str) -> Option<&[String]> {
        self.roles
            .iter()
            .find(|grant| grant.role == role)
            .map(|grant| grant.fields.as_slice())
    }

    /// The fields break-glass adds for `role`, if any of the terms lets it invoke break-glass.
    pub fn break_glass_fields_for<'t>(&'t self, role: &str) -> Option<Vec<&'t str>> {
        let mut fields = self
            .break_glass
            .iter()
            .filter(|terms| terms.roles.iter().any(|r| r == role))
            .peekable();
        fields.peek()?;
        Some(
            fields
                .flat_map(|terms| terms.fields.iter().map(String::as_str))
                .collect(),
        )
    }
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Search, Action::Read, Action::Subscribe];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Read => "read",
            Self::Subscribe => "subscribe",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The action is not one Liaison knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action `{0}`, expected `search`, `read` or `subscribe`")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

impl AgreementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for AgreementStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes a date as a bare TOML date, the form people write.
fn write_date<S: serde::Serializer>(date: &time::Date, serializer: S) -> Result<S::Ok, S::Error> {
    let value = toml::value::Datetime {
        date: Some(toml::value::Date {
            year: u16::try_from(date.year()).map_err(serde::ser::Error::custom)?,
            month: u8::from(date.month()),
            day: date.day(),
        }),
        time: None,
        offset: None,
    };
    value.serialize(serializer)
}

fn write_optional_date<S: serde::Serializer>(
    date: &Option<time::Date>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match date {
        Some(date) => write_date(date, serializer),
        None => serializer.serialize_none(),
    }
}

/// Accepts a bare TOML date (`2026-04-01`), which is what people write, and a quoted one, which
/// is what generated files often hold; `time`'s own serde support only takes the latter.
fn date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<time::Date, D::Error> {
    deserializer.deserialize_any(DateVisitor)
}

fn optional_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<time::Date>, D::Error> {
    date(deserializer).map(Some)
}

struct DateVisitor;

impl<'de> Visitor<'de> for DateVisitor {
    type Value = time::Date;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date such as 2026-04-01")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let parsed: toml::value::Datetime = s
            .parse()
            .map_err(|_| E::custom(format!("`{s}` is not a date such as 2026-04-01")))?;
        to_date(&parsed).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let parsed =
            toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
        to_date(&parsed).map_err(de::Error::custom)
    }
}

fn to_date(value: &toml::value::Datetime) -> Result<time::Date, String> {
    let (Some(date), None, None) = (value.date, value.time, value.offset) else {
        return Err(format!(
            "`{value}` is not a plain date; agreements run from day to day"
        ));
    };
    let month = time::Month::try_from(date.month).map_err(|e| format!("`{value}`: {e}"))?;
    time::Date::from_calendar_date(i32::from(date.year), month, date.day)
        .map_err(|e| format!("`{value}`: {e}"))
}

fn hex_lower(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
