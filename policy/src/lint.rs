//! `liaison policy check`: what a policy file gets wrong beyond what stops it loading.
//!
//! [`PolicySet::from_toml`] refuses a policy that is malformed. A policy can load and still be
//! wrong: it can name a dataset or role the deployment has never heard of (so it silently grants
//! nothing, or a deny rule silently denies nothing), hold a rule no share could ever meet, or
//! keep an agreement marked active after it ended. [`lint`] finds those, and [`check`] runs the
//! whole pipeline a deployment would (model, file, lints, compile) and reports every finding at
//! once, so the CLI only reads files and prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::engine::PolicyEngine;
use crate::error::PolicyError;
use crate::isa::{
    Action, Agreement, AgreementStatus, BreakGlassScope, DatasetTerms, Effect, OperatorRule,
};
use crate::mask::FieldMask;
use crate::model::validate_model;
use crate::set::PolicySet;

/// The names a deployment knows, to check a policy against. Every list is optional: a list left
/// `None` is not checked, so a policy can be checked before the deployment around it exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownNames {
    /// Agency ids, as tokens carry them.
    pub agencies: Option<BTreeSet<String>>,
    /// Dataset ids the connectors serve, such as `met-police.records`.
    pub datasets: Option<BTreeSet<String>>,
    /// Roles the identity providers issue.
    pub roles: Option<BTreeSet<String>>,
    /// Purposes the deployment recognises, such as `safeguarding-children`.
    pub purposes: Option<BTreeSet<String>>,
    /// Every field path the gateway can release, leaves included, such as
    /// `person.names.given_names`. A policy may name a leaf or any of its ancestors
    /// (`person.names`, `person`).
    pub fields: Option<BTreeSet<String>>,
    /// For each dataset whose mappings bound the sensitivity markers its records can carry,
    /// those markers. A dataset not listed may carry any marker (its mapping reads markers from
    /// the source untranslated, or another gateway's mapping decides them).
    pub markers: Option<BTreeMap<String, BTreeSet<String>>>,
}

/// One finding of [`lint`] or [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub severity: Severity,
    pub code: LintCode,
    /// What the finding is about, for example ``agreement `met-hackney-children` ``.
    pub subject: String,
    /// The line the entry starts on, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Whether a finding stops `policy check` from passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The policy must not be deployed as it is.
    Error,
    /// The policy works as written, but probably not as meant.
    Warning,
}

/// What kind of finding a [`Lint`] is; stable, so scripts and tests can branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LintCode {
    /// The casbin model would let a deny rule grant access, or ignore deny rules.
    UnsafeModel,
    /// The casbin model cannot be read or lacks the columns the compiler writes.
    UnusableModel,
    /// The policy file is not TOML, or not the shape of a policy file.
    Syntax,
    /// The policy file says something [`PolicySet::from_toml`] refuses.
    Invalid,
    /// The policy loaded but did not compile.
    Compile,
    UnknownAgency,
    UnknownDataset,
    UnknownRole,
    UnknownPurpose,
    UnknownField,
    /// A deny rule that matches no share any agreement grants.
    DeadRule,
    /// A deny rule that another rule already covers entirely.
    RedundantRule,
    /// A deny rule that matches only shares under agreements that have ended.
    RuleForEndedAgreements,
    /// A role's grant under an agreement that operator rules deny in every case.
    ShadowedGrant,
    /// An agreement still marked active after its `valid_until`.
    ActivePastEnd,
    /// An agreement whose review date has passed.
    ReviewOverdue,
    /// Break-glass terms that release nothing beyond the role's normal fields, so invoking them
    /// raises an alert for no wider access.
    BreakGlassAddsNothing,
    /// A rule names a marker that no mapping of the datasets it covers puts on a record, so it
    /// withholds nothing.
    UnproducedMarker,
}

/// Everything `liaison policy check` reports about one policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Every finding: the model's first, then the file's in file order, then the lints.
    pub lints: Vec<Lint>,
    /// The policy version, when the policy compiled.
    pub version: Option<String>,
    pub agreements: usize,
    pub rules: usize,
}

impl KnownNames {
    pub fn with_agencies<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.agencies = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn with_datasets<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.datasets = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.roles = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn with_purposes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.purposes = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn with_fields<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.fields = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// Records that the records of `dataset` can carry exactly `markers` and no other.
    pub fn with_markers<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        dataset: impl Into<String>,
        markers: I,
    ) -> Self {
        self.markers.get_or_insert_default().insert(
            dataset.into(),
            markers.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Whether `path` (`x.*` read as `x`) is a known field path or an ancestor of one.
    fn knows_field(fields: &BTreeSet<String>, path: &str) -> bool {
        let path = path.strip_suffix(".*").unwrap_or(path);
        let beneath = format!("{path}.");
        fields.contains(path)
            || fields
                .range(beneath.clone()..)
                .next()
                .is_some_and(|first| first.starts_with(&beneath))
    }
}

impl Lint {
    fn new(
        severity: Severity,
        code: LintCode,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code,
            subject: subject.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl LintCode {
    /// The code as `policy check` prints it, for example `unknown-dataset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsafeModel => "unsafe-model",
            Self::UnusableModel => "unusable-model",
            Self::Syntax => "syntax",
            Self::Invalid => "invalid",
            Self::Compile => "compile",
            Self::UnknownAgency => "unknown-agency",
            Self::UnknownDataset => "unknown-dataset",
            Self::UnknownRole => "unknown-role",
            Self::UnknownPurpose => "unknown-purpose",
            Self::UnknownField => "unknown-field",
            Self::DeadRule => "dead-rule",
            Self::RedundantRule => "redundant-rule",
            Self::RuleForEndedAgreements => "rule-for-ended-agreements",
            Self::ShadowedGrant => "shadowed-grant",
            Self::ActivePastEnd => "active-past-end",
            Self::ReviewOverdue => "review-overdue",
            Self::BreakGlassAddsNothing => "break-glass-adds-nothing",
            Self::UnproducedMarker => "unproduced-marker",
        }
    }
}

impl CheckReport {
    /// Whether the policy may be deployed: no finding is an error.
    pub fn is_ok(&self) -> bool {
        self.errors() == 0
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// The findings with `code`, for callers and tests that look for one kind.
    pub fn with_code(&self, code: LintCode) -> impl Iterator<Item = &Lint> {
        self.lints.iter().filter(move |l| l.code == code)
    }

    fn count(&self, severity: Severity) -> usize {
        self.lints.iter().filter(|l| l.severity == severity).count()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

impl fmt::Display for LintCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.subject)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One finding per line, then a summary line, for example
/// `policy sha256:…: 1 agreement, 1 rule; 0 errors, 1 warning`.
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for lint in &self.lints {
            writeln!(f, "{lint}")?;
        }
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        match &self.version {
            Some(version) => write!(f, "policy {version}: ")?,
            None => f.write_str("policy not compiled: ")?,
        }
        write!(
            f,
            "{}, {}; {}, {}",
            plural(self.agreements, "agreement", "agreements"),
            plural(self.rules, "rule", "rules"),
            plural(self.errors(), "error", "errors"),
            plural(self.warnings(), "warning", "warnings"),
        )
    }
}

/// Checks a policy file and the casbin model it will run under, as `liaison policy check` does.
///
/// The model is checked first and an unsafe one is refused outright: a model without an `eft`
/// column turns every deny rule into an allow, which no lint of the policy could make up for.
/// The policy is then read, linted against `known` as of `today`, and compiled (unless the model
/// or the file was refused). Every finding is reported, not only the first.
pub fn check(policy_toml: &str, model: &str, known: &KnownNames, today: time::Date) -> CheckReport {
    let mut report = CheckReport {
        lints: Vec::new(),
        version: None,
        agreements: 0,
        rules: 0,
    };
    let model_ok = match validate_model(model) {
        Ok(()) => true,
        Err(e) => {
            report.lints.push(error_lint(e));
            false
        }
    };
    let set = match PolicySet::from_toml(policy_toml) {
        Ok(set) => set,
        Err(e) => {
            report.lints.extend(error_lints(e));
            return report;
        }
    };
    report.agreements = set.agreements().len();
    report.rules = set.rules().len();
    report.lints.extend(lint_on(&set, known, today));
    if model_ok {
        match PolicyEngine::compile_with_model(&set, model) {
            Ok(engine) => report.version = Some(engine.version().to_owned()),
            Err(e) => report.lints.extend(error_lints(e)),
        }
    }
    report
}

/// Lints `set` against `known` as of today's date in UTC. See [`lint_on`].
///
/// UTC's date can be a day behind UK local time for an hour each summer night; a lint about a
/// date is advisory, so that is accepted here rather than reading the host's time zone.
pub fn lint(set: &PolicySet, known: &KnownNames) -> Vec<Lint> {
    lint_on(set, known, time::OffsetDateTime::now_utc().date())
}

/// Lints `set` against `known` as of `today`.
///
/// * Unknown names (errors): a provider, recipient, purpose, dataset, role or field path, or an
///   operator rule's agency, role, dataset or purpose, that `known` does not list.
/// * Rules (warnings): a deny rule that matches no share any agreement grants (dead); one that
///   another rule covers entirely (redundant); one that matches only shares under agreements
///   that have ended.
/// * Grants (warnings): a role whose grant under an agreement operator rules deny in every case.
/// * Dates (warnings): an agreement still marked active after `valid_until`; a review date that
///   has passed.
/// * Break-glass: its roles and fields are checked as names like any grant's (errors), and terms
///   that add no field to a role's normal set are reported (warning).
/// * Markers (warnings): a rule naming a marker that no mapping of its dataset produces, or, for
///   a rule on every dataset, no mapping of any known dataset.
pub fn lint_on(set: &PolicySet, known: &KnownNames, today: time::Date) -> Vec<Lint> {
    let mut lints = Vec::new();
    for agreement in set.agreements() {
        unknown_in_agreement(agreement, known, &mut lints);
        break_glass_terms(agreement, known, &mut lints);
    }
    for rule in set.rules() {
        unknown_in_rule(rule, known, &mut lints);
        unproduced_marker(rule, known, &mut lints);
    }
    for agreement in set.agreements() {
        dates(agreement, today, &mut lints);
        shadowed(agreement, set.rules(), &mut lints);
    }
    let denies: Vec<&OperatorRule> = set
        .rules()
        .iter()
        .filter(|r| r.effect == Effect::Deny)
        .collect();
    for (index, rule) in denies.iter().enumerate() {
        rule_reach(rule, set.agreements(), today, &mut lints);
        redundant(index, &denies, &mut lints);
    }
    lints
}

fn error_lint(e: PolicyError) -> Lint {
    let (code, subject, message) = match e {
        PolicyError::UnsafeModel { reason } => (LintCode::UnsafeModel, "casbin model", reason),
        PolicyError::Model { reason } => (LintCode::UnusableModel, "casbin model", reason),
        PolicyError::Casbin { message } => (LintCode::Compile, "policy", message),
        other => (LintCode::Invalid, "policy", other.to_string()),
    };
    Lint::new(Severity::Error, code, subject, message)
}

fn error_lints(e: PolicyError) -> Vec<Lint> {
    match e {
        PolicyError::Syntax {
            line,
            column,
            message,
        } => vec![Lint {
            line: Some(line),
            ..Lint::new(
                Severity::Error,
                LintCode::Syntax,
                "policy file",
                format!("column {column}: {message}"),
            )
        }],
        PolicyError::Invalid { problems } => problems
            .into_iter()
            .map(|p| Lint {
                line: p.line,
                ..Lint::new(Severity::Error, LintCode::Invalid, p.subject, p.message)
            })
            .collect(),
        other => vec![error_lint(other)],
    }
}

/// Reports `value` when `known` lists names of its kind and not this one.
fn unknown(
    lints: &mut Vec<Lint>,
    known: Option<&BTreeSet<String>>,
    code: LintCode,
    subject: &str,
    what: &str,
    value: &str,
) {
    if value != "*" && known.is_some_and(|names| !names.contains(value)) {
        lints.push(Lint::new(
            Severity::Error,
            code,
            subject,
            format!("{what} `{value}` is not one this deployment knows"),
        ));
    }
}

fn unknown_in_agreement(agreement: &Agreement, known: &KnownNames, lints: &mut Vec<Lint>) {
    let subject = agreement_subject(agreement);
    let agencies = known.agencies.as_ref();
    unknown(
        lints,
        agencies,
        LintCode::UnknownAgency,
        &subject,
        "provider",
        &agreement.provider,
    );
    for recipient in &agreement.recipients {
        unknown(
            lints,
            agencies,
            LintCode::UnknownAgency,
            &subject,
            "recipient",
            recipient,
        );
    }
    for purpose in &agreement.purposes {
        unknown(
            lints,
            known.purposes.as_ref(),
            LintCode::UnknownPurpose,
            &subject,
            "purpose",
            purpose,
        );
    }
    for terms in &agreement.datasets {
        unknown(
            lints,
            known.datasets.as_ref(),
            LintCode::UnknownDataset,
            &subject,
            "dataset",
            &terms.dataset,
        );
        for grant in &terms.roles {
            unknown(
                lints,
                known.roles.as_ref(),
                LintCode::UnknownRole,
                &subject,
                &format!("dataset `{}`: role", terms.dataset),
                &grant.role,
            );
            let Some(fields) = &known.fields else {
                continue;
            };
            for field in grant
                .fields
                .iter()
                .filter(|f| !KnownNames::knows_field(fields, f))
            {
                lints.push(Lint::new(
                    Severity::Error,
                    LintCode::UnknownField,
                    &subject,
                    format!(
                        "dataset `{}`: role `{}`: field `{field}` is not a field the gateway \
                         releases, so it grants nothing",
                        terms.dataset, grant.role
                    ),
                ));
            }
        }
    }
}

/// Break-glass terms name roles and fields like normal terms do, and are checked the same way;
/// they should also add something, or the emergency route only costs a DPO a review.
fn break_glass_terms(agreement: &Agreement, known: &KnownNames, lints: &mut Vec<Lint>) {
    let subject = agreement_subject(agreement);
    for terms in &agreement.datasets {
        for bg in &terms.break_glass {
            for role in &bg.roles {
                unknown(
                    lints,
                    known.roles.as_ref(),
                    LintCode::UnknownRole,
                    &subject,
                    &format!("dataset `{}`: break_glass role", terms.dataset),
                    role,
                );
            }
            if let Some(fields) = &known.fields {
                for field in bg
                    .fields
                    .iter()
                    .filter(|f| !KnownNames::knows_field(fields, f))
                {
                    lints.push(Lint::new(
                        Severity::Error,
                        LintCode::UnknownField,
                        &subject,
                        format!(
                            "dataset `{}`: break_glass field `{field}` is not a field the \
                             gateway releases, so it grants nothing",
                            terms.dataset
                        ),
                    ));
                }
            }
        }
        let mut invokers: Vec<&String> = terms
            .break_glass
            .iter()
            .flat_map(|bg| bg.roles.iter())
            .collect();
        invokers.sort();
        invokers.dedup();
        for role in invokers {
            let normal = FieldMask::new(terms.fields_for(role).unwrap_or_default());
            let extra = terms.break_glass_fields_for(role).unwrap_or_default();
            if extra.iter().all(|field| normal.allows(field)) {
                lints.push(Lint::new(
                    Severity::Warning,
                    LintCode::BreakGlassAddsNothing,
                    &subject,
                    format!(
                        "dataset `{}`: break-glass for role `{role}` releases nothing beyond its \
                         normal fields",
                        terms.dataset
                    ),
                ));
            }
        }
    }
}

/// A marker rule whose marker no record of its datasets can carry withholds nothing: usually a
/// misspelling, or a mapping that stopped producing the marker.
fn unproduced_marker(rule: &OperatorRule, known: &KnownNames, lints: &mut Vec<Lint>) {
    let (Some(marker), Some(markers)) = (&rule.marker, &known.markers) else {
        return;
    };
    let message = if rule.dataset == "*" {
        // Only when every dataset's markers are bounded can no dataset produce it.
        let Some(datasets) = &known.datasets else {
            return;
        };
        let unproduced = !datasets.is_empty()
            && datasets
                .iter()
                .all(|d| markers.get(d).is_some_and(|m| !m.contains(marker)));
        if !unproduced {
            return;
        }
        format!("names marker `{marker}`, which no mapping of any dataset produces")
    } else {
        match markers.get(&rule.dataset) {
            Some(produced) if !produced.contains(marker) => format!(
                "names marker `{marker}`, which no mapping of dataset `{}` produces",
                rule.dataset
            ),
            _ => return,
        }
    };
    lints.push(Lint::new(
        Severity::Warning,
        LintCode::UnproducedMarker,
        rule_subject(rule),
        format!("{message}, so it withholds nothing"),
    ));
}

fn unknown_in_rule(rule: &OperatorRule, known: &KnownNames, lints: &mut Vec<Lint>) {
    let subject = rule_subject(rule);
    unknown(
        lints,
        known.agencies.as_ref(),
        LintCode::UnknownAgency,
        &subject,
        "agency",
        &rule.agency,
    );
    unknown(
        lints,
        known.roles.as_ref(),
        LintCode::UnknownRole,
        &subject,
        "role",
        &rule.role,
    );
    unknown(
        lints,
        known.datasets.as_ref(),
        LintCode::UnknownDataset,
        &subject,
        "dataset",
        &rule.dataset,
    );
    unknown(
        lints,
        known.purposes.as_ref(),
        LintCode::UnknownPurpose,
        &subject,
        "purpose",
        &rule.purpose,
    );
}

fn dates(agreement: &Agreement, today: time::Date, lints: &mut Vec<Lint>) {
    let subject = agreement_subject(agreement);
    let ended = agreement.valid_until.filter(|until| *until < today);
    if let Some(until) = ended
        && agreement.status == AgreementStatus::Active
    {
        lints.push(Lint::new(
            Severity::Warning,
            LintCode::ActivePastEnd,
            &subject,
            format!(
                "is marked active but ended on {until}, so every share under it is refused; \
                 mark it expired, or record an extension as a new version"
            ),
        ));
    }
    if let Some(review) = agreement.review_date
        && review < today
        && ended.is_none()
        && agreement.status != AgreementStatus::Expired
    {
        lints.push(Lint::new(
            Severity::Warning,
            LintCode::ReviewOverdue,
            &subject,
            format!(
                "its review was due on {review}; the DPOs should review it and record a new version"
            ),
        ));
    }
}

fn matches(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value
}

fn matches_any<'v>(pattern: &str, mut values: impl Iterator<Item = &'v str>) -> bool {
    values.any(|v| matches(pattern, v))
}

fn matches_action(pattern: &str, action: Action) -> bool {
    pattern == "*" || Action::from_str(pattern).is_ok_and(|p| p == action)
}

/// Whether `rule` matches some share `agreement` grants from `terms`. A rule confined to
/// break-glass reaches only terms that let a matching role invoke it.
fn reaches(rule: &OperatorRule, agreement: &Agreement, terms: &DatasetTerms) -> bool {
    let glass = rule.break_glass != BreakGlassScope::Deny
        || terms
            .break_glass
            .iter()
            .flat_map(|bg| bg.roles.iter())
            .any(|role| matches(&rule.role, role));
    glass
        && matches(&rule.dataset, &terms.dataset)
        && matches_any(
            &rule.agency,
            agreement.recipients.iter().map(String::as_str),
        )
        && matches_any(&rule.purpose, agreement.purposes.iter().map(String::as_str))
        && terms
            .actions
            .iter()
            .any(|a| matches_action(&rule.action, *a))
        && matches_any(&rule.role, terms.roles.iter().map(|g| g.role.as_str()))
}

/// Dead rules, and rules that only reach agreements that have ended.
fn rule_reach(
    rule: &OperatorRule,
    agreements: &[Agreement],
    today: time::Date,
    lints: &mut Vec<Lint>,
) {
    let reached: Vec<&Agreement> = agreements
        .iter()
        .filter(|a| a.datasets.iter().any(|terms| reaches(rule, a, terms)))
        .collect();
    if reached.is_empty() {
        lints.push(Lint::new(
            Severity::Warning,
            LintCode::DeadRule,
            rule_subject(rule),
            format!(
                "matches no share any agreement grants, so it denies nothing: {}",
                why_dead(rule, agreements)
            ),
        ));
        return;
    }
    let ended = |a: &&Agreement| {
        a.status == AgreementStatus::Expired || a.valid_until.is_some_and(|until| until < today)
    };
    if reached.iter().all(ended) {
        let ids: Vec<String> = reached.iter().map(|a| format!("`{}`", a.id)).collect();
        lints.push(Lint::new(
            Severity::Warning,
            LintCode::RuleForEndedAgreements,
            rule_subject(rule),
            format!(
                "matches only shares under agreements that have ended ({}), which are refused \
                 anyway; it can be removed",
                ids.join(", ")
            ),
        ));
    }
}

/// The most specific reason a rule reaches nothing: an attribute no agreement offers at all,
/// else the combination.
fn why_dead(rule: &OperatorRule, agreements: &[Agreement]) -> String {
    let all_terms = || agreements.iter().flat_map(|a| &a.datasets);
    if rule.break_glass == BreakGlassScope::Deny
        && !all_terms().any(|t| {
            t.break_glass
                .iter()
                .flat_map(|bg| bg.roles.iter())
                .any(|role| matches(&rule.role, role))
        })
    {
        return format!(
            "it applies only to break-glass, and no agreement lets role `{}` invoke it",
            rule.role
        );
    }
    if !all_terms().any(|t| matches(&rule.dataset, &t.dataset)) {
        return format!("no agreement covers dataset `{}`", rule.dataset);
    }
    if !agreements
        .iter()
        .any(|a| matches_any(&rule.agency, a.recipients.iter().map(String::as_str)))
    {
        return format!("no agreement names agency `{}` as a recipient", rule.agency);
    }
    if !agreements
        .iter()
        .any(|a| matches_any(&rule.purpose, a.purposes.iter().map(String::as_str)))
    {
        return format!("no agreement permits purpose `{}`", rule.purpose);
    }
    if !all_terms().any(|t| t.actions.iter().any(|a| matches_action(&rule.action, *a))) {
        return format!("no agreement permits action `{}`", rule.action);
    }
    if !all_terms().any(|t| matches_any(&rule.role, t.roles.iter().map(|g| g.role.as_str()))) {
        return format!("no agreement releases fields to role `{}`", rule.role);
    }
    "no single agreement grants a share with all of its agency, role, dataset, purpose and \
     action"
        .to_owned()
}

/// A rule is redundant when an earlier rule matches at least everything it does, or a later
/// rule matches strictly more.
fn redundant(index: usize, rules: &[&OperatorRule], lints: &mut Vec<Lint>) {
    let Some(rule) = rules.get(index) else {
        return;
    };
    // A rule without a marker refuses whole shares, so it covers a marker rule's records too;
    // a rule for every share covers one confined to break-glass or exempt from it.
    let covers = |wide: &OperatorRule, narrow: &OperatorRule| {
        (wide.marker.is_none() || wide.marker == narrow.marker)
            && (wide.break_glass == BreakGlassScope::Applies
                || wide.break_glass == narrow.break_glass)
            && [
                (&wide.agency, &narrow.agency),
                (&wide.role, &narrow.role),
                (&wide.dataset, &narrow.dataset),
                (&wide.purpose, &narrow.purpose),
                (&wide.action, &narrow.action),
            ]
            .iter()
            .all(|(w, n)| w.as_str() == "*" || w == n)
    };
    let by = rules.iter().enumerate().find(|(other, wide)| {
        *other != index && covers(wide, rule) && (*other < index || !covers(rule, wide))
    });
    if let Some((_, wide)) = by {
        lints.push(Lint::new(
            Severity::Warning,
            LintCode::RedundantRule,
            rule_subject(rule),
            format!(
                "rule `{}` already denies every share this rule denies; keep one of them",
                wide.id
            ),
        ));
    }
}

/// Roles whose every grant under an agreement's terms some operator rule denies. Only rules
/// refusing normal shares outright count: a marker rule withholds some records, and a rule
/// confined to break-glass leaves the normal route open.
fn shadowed(agreement: &Agreement, rules: &[OperatorRule], lints: &mut Vec<Lint>) {
    let denies: Vec<&OperatorRule> = rules
        .iter()
        .filter(|r| {
            r.effect == Effect::Deny
                && r.marker.is_none()
                && r.break_glass == BreakGlassScope::Applies
        })
        .collect();
    if denies.is_empty() {
        return;
    }
    for terms in &agreement.datasets {
        for grant in &terms.roles {
            let mut by = BTreeSet::new();
            let mut every_line_denied = true;
            'lines: for recipient in &agreement.recipients {
                for purpose in &agreement.purposes {
                    for action in &terms.actions {
                        let denier = denies.iter().find(|r| {
                            matches(&r.agency, recipient)
                                && matches(&r.role, &grant.role)
                                && matches(&r.dataset, &terms.dataset)
                                && matches(&r.purpose, purpose)
                                && matches_action(&r.action, *action)
                        });
                        match denier {
                            Some(rule) => {
                                by.insert(format!("`{}`", rule.id));
                            }
                            None => {
                                every_line_denied = false;
                                break 'lines;
                            }
                        }
                    }
                }
            }
            if every_line_denied {
                lints.push(Lint::new(
                    Severity::Warning,
                    LintCode::ShadowedGrant,
                    agreement_subject(agreement),
                    format!(
                        "dataset `{}`: role `{}` is granted fields, but operator {} {} deny \
                         every share it could make under this agreement",
                        terms.dataset,
                        grant.role,
                        if by.len() == 1 { "rule" } else { "rules" },
                        by.into_iter().collect::<Vec<_>>().join(", "),
                    ),
                ));
            }
        }
    }
}

fn agreement_subject(agreement: &Agreement) -> String {
    format!("agreement `{}`", agreement.id)
}

fn rule_subject(rule: &OperatorRule) -> String {
    format!("rule `{}`", rule.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_known_by_whole_segment() {
        let fields: BTreeSet<String> = ["person.names.given_names", "incident.summary"]
            .map(str::to_owned)
            .into();
        for path in [
            "person",
            "person.*",
            "person.names",
            "person.names.given_names",
            "incident.summary",
        ] {
            assert!(KnownNames::knows_field(&fields, path), "{path}");
        }
        for path in [
            "pers",
            "person.name",
            "person.names.given_names.first",
            "incident.sum",
        ] {
            assert!(!KnownNames::knows_field(&fields, path), "{path}");
        }
    }

    #[test]
    fn codes_are_kebab_case() {
        assert_eq!(LintCode::UnknownDataset.as_str(), "unknown-dataset");
        assert_eq!(
            LintCode::RuleForEndedAgreements.to_string(),
            "rule-for-ended-agreements"
        );
    }
}
