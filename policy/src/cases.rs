//! `liaison policy test`: a file of requests, each with the decision a DPO expects, run against
//! a policy offline.
//!
//! Files are YAML (`.yaml`, `.yml`) or TOML (`.toml`), the same shape either way:
//!
//! ```yaml
//! policy: demo.toml            # relative to this file
//! defaults:                    # what every case asks unless it says otherwise
//!   agency: hackney-childrens
//!   roles: [social-worker]
//!   action: read
//!   dataset: police.records
//!   purpose: safeguarding-children
//!   isa: met-hackney-children
//!   at: 2026-06-01T10:00:00+01:00   # or a plain date
//! cases:
//!   - name: a social worker reads for safeguarding
//!     expect:
//!       decision: allow
//!       fields: [person.names, incident.summary]
//!   - name: not for crime prevention
//!     request: { purpose: crime-prevention }
//!     expect: { decision: deny, reason: PURPOSE_NOT_PERMITTED }
//!   - name: a team manager invokes break-glass
//!     request: { roles: [team-manager], break_glass: true }
//!     expect:
//!       decision: allow
//!       break_glass: true
//!       fields: [person.names, incident.summary, intelligence.*]
//!   - name: a partner never sees witness-protection records
//!     request: { markers: [witness-protection] }
//!     expect:
//!       decision: allow
//!       fields: [person.names, incident.summary]
//!       records: withheld
//!       rule: no-witness-protection
//! ```
//!
//! An `allow` must list the fields it releases, and a `deny` must name its reason code (and may
//! name the operator `rule` behind a `POLICY_DENIED`), so a case always states what is disclosed
//! and why not. A request invoking break-glass that is allowed must expect `break_glass: true`,
//! so an emergency disclosure is never mistaken for a normal one. A request may state the
//! sensitivity `markers` of a record; an allow must then say whether such a record is `released`
//! or `withheld` (and may name the marker `rule` that withholds it).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use time::OffsetDateTime;

use crate::decision::{Decision, DecisionRequest, DenyReason};
use crate::engine::PolicyEngine;
use crate::error::PolicyError;
use crate::isa::{Action, Effect};
use crate::mask::FieldMask;
use crate::set::{PolicySet, line_column, one_line};

/// The reason codes a case may expect, as [`DenyReason::reason`] gives them.
pub const REASON_CODES: [&str; 10] = [
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

/// A file of test cases, checked for completeness when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCases {
    /// The policy the cases are about, relative to the cases file, when the file names one.
    pub policy: Option<PathBuf>,
    pub cases: Vec<TestCase>,
}

/// One request and what the policy should decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    pub name: String,
    pub request: RequestSpec,
    pub expect: Expectation,
}

/// A share request with owned values, as case files and `liaison policy explain` state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub agency: String,
    pub roles: Vec<String>,
    pub action: Action,
    pub dataset: String,
    pub purpose: String,
    pub isa: String,
    pub at: OffsetDateTime,
    /// Whether the request invokes break-glass; false unless a file says so.
    pub break_glass: bool,
    /// The sensitivity markers of a record the case asks about; empty unless a file says so.
    pub markers: Vec<String>,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Allowed, releasing exactly these fields, under break-glass or not; and, when the request
    /// states markers, with a record carrying them released or withheld.
    Allow {
        fields: FieldMask,
        break_glass: bool,
        records: Option<Records>,
    },
    /// Denied with this reason code, and by this operator rule when one is named.
    Deny {
        reason: String,
        rule: Option<String>,
    },
}

/// What becomes of a record carrying the request's markers under an allowed share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    Released,
    /// Withheld, by this marker rule when one is named.
    Withheld {
        rule: Option<String>,
    },
}

/// The outcome of running a file of cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// The version of the policy the cases ran against.
    pub policy_version: String,
    pub results: Vec<CaseResult>,
}

/// One case's outcome: passed when `mismatches` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub decision: Decision,
    pub mismatches: Vec<Mismatch>,
}

/// One way a decision differs from a case's expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Expected allow, got deny.
    Denied { reason: Option<DenyReason> },
    /// Expected deny, got allow.
    Allowed {
        expected_reason: String,
        fields: FieldMask,
    },
    /// Denied, but for another reason.
    Reason {
        expected: String,
        got: Option<DenyReason>,
    },
    /// Denied by another operator rule, or by none.
    Rule {
        expected: String,
        got: Option<String>,
    },
    /// Allowed, but under break-glass when a normal share was expected, or the other way round.
    BreakGlass { expected: bool },
    /// Allowed, but a record carrying the request's markers is released where it was expected
    /// withheld.
    RecordsReleased,
    /// Allowed, but a record carrying the request's markers is withheld, by this rule, where it
    /// was expected released.
    RecordsWithheld { rule: String },
    /// Allowed, but releasing other fields.
    Fields {
        /// Expected and not released.
        missing: Vec<String>,
        /// Released and not expected.
        unexpected: Vec<String>,
    },
}

/// The file as written: every request attribute optional, so cases inherit `defaults`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCases {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    defaults: RawRequest,
    #[serde(default)]
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    request: RawRequest,
    expect: RawExpectation,
}

#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    agency: Option<String>,
    roles: Option<Vec<String>>,
    action: Option<Action>,
    dataset: Option<String>,
    purpose: Option<String>,
    isa: Option<String>,
    #[serde(default, deserialize_with = "moment")]
    at: Option<OffsetDateTime>,
    #[serde(default)]
    break_glass: Option<bool>,
    #[serde(default)]
    markers: Option<Vec<String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawRecords {
    Released,
    Withheld,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectation {
    decision: Effect,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    records: Option<RawRecords>,
}

/// The file formats cases and requests may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Toml,
}

impl TestCases {
    /// Reads cases written in YAML.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        Self::from_raw(parse(text, Format::Yaml, "test cases")?)
    }

    /// Reads cases written in TOML (`[defaults]`, `[[cases]]`, `[cases.expect]`).
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Self::from_raw(parse(text, Format::Toml, "test cases")?)
    }

    /// Reads a cases file, YAML or TOML by its extension.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = read(path)?;
        match format_of(path)? {
            Format::Yaml => Self::from_yaml(&text),
            Format::Toml => Self::from_toml(&text),
        }
    }

    /// Runs every case against `engine`.
    pub fn run(&self, engine: &PolicyEngine) -> TestReport {
        TestReport {
            policy_version: engine.version().to_owned(),
            results: self.cases.iter().map(|case| case.run(engine)).collect(),
        }
    }

    fn from_raw(raw: RawCases) -> Result<Self, PolicyError> {
        let mut problems = Vec::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        let mut names = BTreeSet::new();
        if raw.cases.is_empty() {
            problems.push("the file holds no cases".to_owned());
        }
        for (index, case) in raw.cases.into_iter().enumerate() {
            let label = if case.name.trim().is_empty() {
                format!("case #{}", index + 1)
            } else {
                format!("case `{}`", case.name)
            };
            if case.name.trim().is_empty() {
                problems.push(format!("{label}: name is empty"));
            } else if !names.insert(case.name.clone()) {
                problems.push(format!("{label}: the name is used more than once"));
            }
            let request = case
                .request
                .or(&raw.defaults)
                .complete()
                .map_err(|missing| {
                    let them = if missing.contains(", ") { "them" } else { "it" };
                    format!("{missing} (set {them} in the case or in `defaults`)")
                });
            let expect = match &request {
                Ok(request) => case.expect.check(!request.markers.is_empty()),
                Err(_) => case.expect.check(true),
            };
            match (request, expect) {
                (Ok(request), Ok(expect)) => cases.push(TestCase {
                    name: case.name,
                    request,
                    expect,
                }),
                (request, expect) => {
                    for missing in [request.err(), expect.err()].into_iter().flatten() {
                        problems.push(format!("{label}: {missing}"));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Document {
                what: "test cases",
                line: None,
                message: problems.join("; "),
            });
        }
        Ok(Self {
            policy: raw.policy.map(PathBuf::from),
            cases,
        })
    }
}

/// Runs the cases in `cases_path` against the policy the file names, resolved beside it, or
/// against `policy_path` when given; the policy compiles against the shipped model.
pub fn run_case_file(
    cases_path: &Path,
    policy_path: Option<&Path>,
) -> Result<TestReport, PolicyError> {
    let cases = TestCases::load(cases_path)?;
    let policy_path = match (policy_path, &cases.policy) {
        (Some(path), _) => path.to_owned(),
        (None, Some(relative)) => cases_path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(relative),
        (None, None) => {
            return Err(PolicyError::Document {
                what: "test cases",
                line: None,
                message: "the file names no `policy`, and none was given".to_owned(),
            });
        }
    };
    let set = PolicySet::from_toml(&read(&policy_path)?)?;
    let engine = PolicyEngine::compile(&set)?;
    Ok(cases.run(&engine))
}

impl TestCase {
    pub fn run(&self, engine: &PolicyEngine) -> CaseResult {
        let decision = engine.decide(&self.request.as_request());
        let mismatches = self.expect.compare(&decision, &self.request.markers);
        CaseResult {
            name: self.name.clone(),
            decision,
            mismatches,
        }
    }
}

impl RequestSpec {
    pub fn as_request(&self) -> DecisionRequest<'_> {
        DecisionRequest {
            agency: &self.agency,
            roles: &self.roles,
            action: self.action,
            dataset: &self.dataset,
            purpose: &self.purpose,
            isa_id: &self.isa,
            at: self.at,
            break_glass: self.break_glass,
        }
    }

    /// Reads one request written in YAML, with every attribute, as `policy explain` takes it.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        Self::from_raw(parse(text, Format::Yaml, "request")?)
    }

    /// Reads one request written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Self::from_raw(parse(text, Format::Toml, "request")?)
    }

    /// Reads a request file, YAML or TOML by its extension.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = read(path)?;
        match format_of(path)? {
            Format::Yaml => Self::from_yaml(&text),
            Format::Toml => Self::from_toml(&text),
        }
    }

    fn from_raw(raw: RawRequest) -> Result<Self, PolicyError> {
        raw.complete().map_err(|message| PolicyError::Document {
            what: "request",
            line: None,
            message,
        })
    }
}

impl RawRequest {
    /// `self`, with anything it leaves out taken from `defaults`.
    fn or(self, defaults: &RawRequest) -> RawRequest {
        let defaults = defaults.clone();
        RawRequest {
            agency: self.agency.or(defaults.agency),
            roles: self.roles.or(defaults.roles),
            action: self.action.or(defaults.action),
            dataset: self.dataset.or(defaults.dataset),
            purpose: self.purpose.or(defaults.purpose),
            isa: self.isa.or(defaults.isa),
            at: self.at.or(defaults.at),
            break_glass: self.break_glass.or(defaults.break_glass),
            markers: self.markers.or(defaults.markers),
        }
    }

    /// The request, or the names of the attributes it lacks.
    fn complete(self) -> Result<RequestSpec, String> {
        match self {
            RawRequest {
                agency: Some(agency),
                roles: Some(roles),
                action: Some(action),
                dataset: Some(dataset),
                purpose: Some(purpose),
                isa: Some(isa),
                at: Some(at),
                break_glass,
                markers,
            } => Ok(RequestSpec {
                agency,
                roles,
                action,
                dataset,
                purpose,
                isa,
                at,
                break_glass: break_glass.unwrap_or(false),
                markers: markers.unwrap_or_default(),
            }),
            raw => {
                let missing: Vec<&str> = [
                    ("agency", raw.agency.is_none()),
                    ("roles", raw.roles.is_none()),
                    ("action", raw.action.is_none()),
                    ("dataset", raw.dataset.is_none()),
                    ("purpose", raw.purpose.is_none()),
                    ("isa", raw.isa.is_none()),
                    ("at", raw.at.is_none()),
                ]
                .into_iter()
                .filter_map(|(name, absent)| absent.then_some(name))
                .collect();
                Err(format!("the request has no {}", missing.join(", ")))
            }
        }
    }
}

impl RawExpectation {
    /// `marked`: whether the request states record markers, which an allow must then account
    /// for.
    fn check(self, marked: bool) -> Result<Expectation, String> {
        match self.decision {
            Effect::Allow => {
                if self.reason.is_some() {
                    return Err("an allow has no `reason`".to_owned());
                }
                let records = match (self.records, marked) {
                    (Some(RawRecords::Released), true) if self.rule.is_none() => {
                        Some(Records::Released)
                    }
                    (Some(RawRecords::Withheld), true) => {
                        Some(Records::Withheld { rule: self.rule })
                    }
                    (Some(RawRecords::Released), true) => {
                        return Err("`rule` names the marker rule that withholds records; \
                                    remove it from an expectation that they are released"
                            .to_owned());
                    }
                    (Some(_), false) => {
                        return Err("`records` says what becomes of records carrying the \
                                    request's `markers`, and the request has none"
                            .to_owned());
                    }
                    (None, true) => {
                        return Err(
                            "the request states `markers`, so an allow must say whether \
                                    such records are `released` or `withheld` (`records`)"
                                .to_owned(),
                        );
                    }
                    (None, false) if self.rule.is_some() => {
                        return Err("an allow names a `rule` only for records withheld".to_owned());
                    }
                    (None, false) => None,
                };
                match self.fields {
                    Some(fields) => Ok(Expectation::Allow {
                        fields: FieldMask::new(fields),
                        break_glass: self.break_glass,
                        records,
                    }),
                    None => Err("an expected allow must list the `fields` it releases".to_owned()),
                }
            }
            Effect::Deny => {
                if self.fields.is_some_and(|f| !f.is_empty()) {
                    return Err("a deny releases no fields; remove `fields`".to_owned());
                }
                if self.break_glass {
                    return Err(
                        "a deny discloses nothing, under break-glass or not; remove \
                         `break_glass` from `expect`"
                            .to_owned(),
                    );
                }
                if self.records.is_some() {
                    return Err("a deny releases no records; remove `records`".to_owned());
                }
                match self.reason {
                    Some(reason) if REASON_CODES.contains(&reason.as_str()) => {
                        if self.rule.is_some()
                            && reason != "POLICY_DENIED"
                            && reason != "BREAK_GLASS_NOT_PERMITTED"
                        {
                            return Err(format!(
                                "`rule` only goes with reason `POLICY_DENIED` or \
                                 `BREAK_GLASS_NOT_PERMITTED`, not `{reason}`"
                            ));
                        }
                        Ok(Expectation::Deny {
                            reason,
                            rule: self.rule,
                        })
                    }
                    Some(reason) => Err(format!(
                        "reason `{reason}` is not a reason code; expected one of {}",
                        REASON_CODES
                            .iter()
                            .map(|code| format!("`{code}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    None => Err("an expected deny must name its `reason` code".to_owned()),
                }
            }
        }
    }
}

impl Expectation {
    /// How `decision` differs from this expectation; empty when it meets it.
    /// `markers` are the request's record markers.
    pub fn compare(&self, decision: &Decision, markers: &[String]) -> Vec<Mismatch> {
        let mut mismatches = Vec::new();
        match (self, decision.is_allowed()) {
            (
                Self::Allow {
                    fields,
                    break_glass,
                    records,
                },
                true,
            ) => {
                let got = decision.withholding(markers).map(|w| w.rule_id.clone());
                match (records, got) {
                    (Some(Records::Released), Some(rule)) => {
                        mismatches.push(Mismatch::RecordsWithheld { rule });
                    }
                    (Some(Records::Withheld { .. }), None) => {
                        mismatches.push(Mismatch::RecordsReleased);
                    }
                    (Some(Records::Withheld { rule: Some(rule) }), Some(by)) if *rule != by => {
                        mismatches.push(Mismatch::Rule {
                            expected: rule.clone(),
                            got: Some(by),
                        });
                    }
                    _ => {}
                }
                if *break_glass != decision.break_glass {
                    mismatches.push(Mismatch::BreakGlass {
                        expected: *break_glass,
                    });
                }
                if *fields != decision.mask {
                    let expected: BTreeSet<&str> = fields.paths().collect();
                    let got: BTreeSet<&str> = decision.mask.paths().collect();
                    mismatches.push(Mismatch::Fields {
                        missing: expected.difference(&got).map(|p| (*p).to_owned()).collect(),
                        unexpected: got.difference(&expected).map(|p| (*p).to_owned()).collect(),
                    });
                }
            }
            (Self::Allow { .. }, false) => mismatches.push(Mismatch::Denied {
                reason: decision.deny.clone(),
            }),
            (Self::Deny { reason, .. }, true) => mismatches.push(Mismatch::Allowed {
                expected_reason: reason.clone(),
                fields: decision.mask.clone(),
            }),
            (Self::Deny { reason, rule }, false) => {
                if decision.reason() != Some(reason.as_str()) {
                    mismatches.push(Mismatch::Reason {
                        expected: reason.clone(),
                        got: decision.deny.clone(),
                    });
                } else if let Some(rule) = rule {
                    let got = match &decision.deny {
                        Some(
                            DenyReason::ExplicitDeny { rule_id }
                            | DenyReason::BreakGlassDenied { rule_id },
                        ) => Some(rule_id.clone()),
                        _ => None,
                    };
                    if got.as_ref() != Some(rule) {
                        mismatches.push(Mismatch::Rule {
                            expected: rule.clone(),
                            got,
                        });
                    }
                }
            }
        }
        mismatches
    }
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Whether every case passed.
    pub fn is_ok(&self) -> bool {
        self.failed() == 0
    }
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied {
                reason: Some(reason),
            } => {
                write!(
                    f,
                    "expected allow, got deny: {} ({reason})",
                    reason.reason()
                )
            }
            Self::Denied { reason: None } => f.write_str("expected allow, got deny"),
            Self::Allowed {
                expected_reason,
                fields,
            } => write!(
                f,
                "expected deny ({expected_reason}), got allow releasing {}",
                fields_or_nothing(fields)
            ),
            Self::Reason { expected, got } => match got {
                Some(got) => write!(
                    f,
                    "expected deny for {expected}, got deny for {} ({got})",
                    got.reason()
                ),
                None => write!(f, "expected deny for {expected}, got deny with no reason"),
            },
            Self::Rule { expected, got } => match got {
                Some(got) => write!(
                    f,
                    "expected operator rule `{expected}` to deny, but rule `{got}` did"
                ),
                None => write!(
                    f,
                    "expected operator rule `{expected}` to deny, but no operator rule did"
                ),
            },
            Self::RecordsReleased => f.write_str(
                "expected records carrying the request's markers to be withheld, but they are \
                 released",
            ),
            Self::RecordsWithheld { rule } => write!(
                f,
                "expected records carrying the request's markers to be released, but rule \
                 `{rule}` withholds them"
            ),
            Self::BreakGlass { expected: true } => {
                f.write_str("expected an allow under break-glass, got a normal allow")
            }
            Self::BreakGlass { expected: false } => {
                f.write_str("expected a normal allow, got an allow under break-glass")
            }
            Self::Fields {
                missing,
                unexpected,
            } => {
                f.write_str("allowed, but the fields differ:")?;
                if !missing.is_empty() {
                    write!(f, " expected but not released: {};", missing.join(", "))?;
                }
                if !unexpected.is_empty() {
                    write!(f, " released but not expected: {};", unexpected.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// One line per case (`ok` or `FAIL`, with each mismatch indented beneath), then a count.
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy {}", self.policy_version)?;
        for result in &self.results {
            if result.passed() {
                writeln!(f, "ok    {}", result.name)?;
            } else {
                writeln!(f, "FAIL  {}", result.name)?;
                for mismatch in &result.mismatches {
                    writeln!(f, "        {mismatch}")?;
                }
            }
        }
        write!(
            f,
            "{} cases: {} passed, {} failed",
            self.results.len(),
            self.passed(),
            self.failed()
        )
    }
}

fn fields_or_nothing(mask: &FieldMask) -> String {
    if mask.is_empty() {
        "nothing".to_owned()
    } else {
        mask.to_string()
    }
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn format_of(path: &Path) -> Result<Format, PolicyError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Ok(Format::Yaml),
        Some("toml") => Ok(Format::Toml),
        _ => Err(PolicyError::Read {
            path: path.display().to_string(),
            message: "expected a `.yaml`, `.yml` or `.toml` file".to_owned(),
        }),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(
    text: &str,
    format: Format,
    what: &'static str,
) -> Result<T, PolicyError> {
    match format {
        Format::Toml => toml::from_str(text).map_err(|e| PolicyError::Document {
            what,
            line: e.span().map(|span| line_column(text, span.start).0),
            message: one_line(e.message()),
        }),
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| PolicyError::Document {
            what,
            line: e
                .location()
                .and_then(|l| usize::try_from(l.line()).ok())
                .filter(|line| *line > 0),
            message: yaml_message(&e),
        }),
    }
}

/// serde-saphyr's message without its source snippet, and with the column first, since the
/// line is carried beside it: `unknown field at line 3, column 5` becomes
/// `column 5: unknown field`.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = one_line(&text);
    match text.rsplit_once(" at line ") {
        Some((message, location)) => match location.split_once(", column ") {
            Some((_, column)) => format!("column {column}: {message}"),
            None => message.to_owned(),
        },
        None => text,
    }
}

/// A moment: an RFC 3339 date-time with an offset (`2026-06-01T10:00:00+01:00`), or a plain date
/// (`2026-06-01`), read as midnight UTC; agreements compare dates only. Accepts YAML's strings and
/// TOML's own date-times alike.
fn moment<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
    deserializer.deserialize_any(MomentVisitor).map(Some)
}

struct MomentVisitor;

impl<'de> Visitor<'de> for MomentVisitor {
    type Value = OffsetDateTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date such as 2026-06-01 or a date-time such as 2026-06-01T10:00:00+01:00")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let parsed: toml::value::Datetime = s.parse().map_err(|_| {
            E::custom(format!(
                "`{s}` is not a date such as 2026-06-01 or a date-time such as \
                 2026-06-01T10:00:00+01:00"
            ))
        })?;
        to_moment(&parsed).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let parsed =
            toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
        to_moment(&parsed).map_err(de::Error::custom)
    }
}

fn to_moment(value: &toml::value::Datetime) -> Result<OffsetDateTime, String> {
    let bad = |e: &dyn fmt::Display| format!("`{value}`: {e}");
    let Some(date) = value.date else {
        return Err(format!("`{value}` has no date"));
    };
    let month = time::Month::try_from(date.month).map_err(|e| bad(&e))?;
    let day = time::Date::from_calendar_date(i32::from(date.year), month, date.day)
        .map_err(|e| bad(&e))?;
    let (clock, offset) = match (value.time, value.offset) {
        (None, None) => (time::Time::MIDNIGHT, time::UtcOffset::UTC),
        (Some(t), Some(offset)) => {
            let clock = time::Time::from_hms_nano(
                t.hour,
                t.minute,
                t.second.unwrap_or(0),
                t.nanosecond.unwrap_or(0),
            )
            .map_err(|e| bad(&e))?;
            let offset = match offset {
                toml::value::Offset::Z => time::UtcOffset::UTC,
                toml::value::Offset::Custom { minutes } => {
                    time::UtcOffset::from_whole_seconds(i32::from(minutes) * 60)
                        .map_err(|e| bad(&e))?
                }
            };
            (clock, offset)
        }
        (Some(_), None) => {
            return Err(format!(
                "`{value}` has no offset; write one, such as `+01:00` or `Z`, since agreements \
                 run by local dates"
            ));
        }
        (None, Some(_)) => return Err(format!("`{value}` has an offset but no time")),
    };
    Ok(OffsetDateTime::new_in_offset(day, clock, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_read_dates_and_date_times() {
        let at = |s: &str| MomentVisitor.visit_str::<de::value::Error>(s);
        assert_eq!(
            at("2026-06-01").unwrap(),
            time::macros::datetime!(2026-06-01 00:00 UTC)
        );
        assert_eq!(
            at("2026-06-01T10:00:00+01:00").unwrap(),
            time::macros::datetime!(2026-06-01 10:00 +01:00)
        );
        assert_eq!(
            at("2026-06-01T23:30:00Z").unwrap(),
            time::macros::datetime!(2026-06-01 23:30 UTC)
        );
        assert!(
            at("2026-06-01T10:00:00")
                .unwrap_err()
                .to_string()
                .contains("no offset")
        );
        assert!(at("tomorrow").is_err());
    }

    #[test]
    fn every_deny_reason_has_a_code_cases_may_expect() {
        for code in REASON_CODES {
            assert_eq!(code, code.to_uppercase());
        }
        assert!(REASON_CODES.contains(&DenyReason::EvaluationFailed.reason()));
        let refused = DenyReason::BreakGlassNotPermitted {
            isa: "i".into(),
            dataset: "d".into(),
        };
        assert!(REASON_CODES.contains(&refused.reason()));
    }
}
