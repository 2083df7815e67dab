use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{PolicyError, Problem};
use crate::isa::{Action, Agreement, BreakGlassScope, Effect, OperatorRule};
use crate::mask::is_valid_path;

/// The agreements and operator rules a gateway enforces, as read from a policy file and checked
/// for mistakes, but not yet compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    agreements: Vec<Agreement>,
    rules: Vec<OperatorRule>,
}

/// The top level of a policy file. Entries stay raw tables here so that one malformed entry is
/// reported beside the problems in every other entry instead of hiding them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    agreement: Vec<toml::Spanned<toml::Table>>,
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Table>>,
}

/// Collects problems about one subject.
struct Checker<'a> {
    subject: String,
    line: Option<usize>,
    problems: &'a mut Vec<Problem>,
}

impl PolicySet {
    /// Checks agreements and rules built in code, as [`PolicySet::from_toml`] does for a file.
    pub fn new(agreements: Vec<Agreement>, rules: Vec<OperatorRule>) -> Result<Self, PolicyError> {
        let agreements: Vec<_> = agreements.into_iter().map(|a| (a, None)).collect();
        let rules: Vec<_> = rules.into_iter().map(|r| (r, None)).collect();
        let mut problems = Vec::new();
        check(&agreements, &rules, &mut problems);
        finish(agreements, rules, problems)
    }

    /// Reads a policy file: `[[agreement]]` and `[[rule]]` tables.
    ///
    /// Every problem is reported, each with the entry's id and line; a file that is not TOML at
    /// all is reported with the line and column where reading stopped.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let document: Document = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut problems = Vec::new();

        let agreements = entries(text, document.agreement, "agreement", &mut problems);
        let rules = entries(text, document.rule, "rule", &mut problems);
        check(&agreements, &rules, &mut problems);
        finish(agreements, rules, problems)
    }

    /// Reads a document holding exactly one `[[agreement]]` table and no rules: what an
    /// information-governance officer proposes through the admin API, checked as a policy file
    /// is (every problem, with its line) before it can be stored as a new version.
    pub fn one_agreement(text: &str) -> Result<Agreement, PolicyError> {
        let set = Self::from_toml(text)?;
        let only = |message: String| PolicyError::Invalid {
            problems: vec![Problem {
                subject: "proposal".into(),
                line: None,
                message,
            }],
        };
        if !set.rules.is_empty() {
            return Err(only(
                "holds `[[rule]]` tables; operator rules live in the policy file".into(),
            ));
        }
        let mut agreements = set.agreements.into_iter();
        match (agreements.next(), agreements.next()) {
            (Some(agreement), None) => Ok(agreement),
            (None, _) => Err(only("holds no `[[agreement]]` table".into())),
            (Some(_), Some(_)) => Err(only(
                "holds more than one `[[agreement]]` table; propose one at a time".into(),
            )),
        }
    }

    pub fn agreements(&self) -> &[Agreement] {
        &self.agreements
    }

    pub fn rules(&self) -> &[OperatorRule] {
        &self.rules
    }
}

impl Checker<'_> {
    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            subject: self.subject.clone(),
            line: self.line,
            message: message.into(),
        });
    }

    /// An agreement's own identifiers: no wildcards, since an agreement must name what it grants.
    fn name(&mut self, what: &str, value: &str) {
        if value == "*" {
            self.problem(format!(
                "{what} may not be `*`; an agreement names each {what} it covers"
            ));
        } else {
            self.identifier(what, value);
        }
    }

    /// An operator rule's attributes, where `*` means any.
    fn pattern(&mut self, what: &str, value: &str) {
        if value != "*" {
            self.identifier(what, value);
        }
    }

    fn identifier(&mut self, what: &str, value: &str) {
        if value.is_empty() {
            self.problem(format!("{what} is empty"));
        } else if !is_identifier(value) {
            self.problem(format!(
                "{what} `{value}` may hold only letters, digits, `-`, `_` and `.`"
            ));
        }
    }

    fn not_blank(&mut self, what: &str, value: &str) {
        if value.trim().is_empty() {
            self.problem(format!("{what} is empty"));
        }
    }

    /// A list that must name at least one distinct value.
    fn names<'v>(
        &mut self,
        what: &str,
        plural: &str,
        values: impl IntoIterator<Item = &'v String>,
    ) {
        let mut seen = BTreeSet::new();
        for value in values {
            self.name(what, value);
            if !seen.insert(value.as_str()) {
                self.problem(format!("{what} `{value}` is listed more than once"));
            }
        }
        if seen.is_empty() {
            self.problem(format!("{plural} is empty"));
        }
    }
}

fn entries<T: for<'de> Deserialize<'de>>(
    text: &str,
    raw: Vec<toml::Spanned<toml::Table>>,
    kind: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(T, Option<usize>)> {
    let mut parsed = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let line = line_column(text, entry.span().start).0;
        let table = entry.into_inner();
        let subject = match table.get("id").and_then(toml::Value::as_str) {
            Some(id) => format!("{kind} `{id}`"),
            None => format!("{kind} #{}", index + 1),
        };
        match toml::Value::Table(table).try_into::<T>() {
            Ok(value) => parsed.push((value, Some(line))),
            Err(e) => problems.push(Problem {
                subject,
                line: Some(line),
                message: one_line(e.message()),
            }),
        }
    }
    parsed
}

fn check(
    agreements: &[(Agreement, Option<usize>)],
    rules: &[(OperatorRule, Option<usize>)],
    problems: &mut Vec<Problem>,
) {
    let mut versions: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (agreement, line) in agreements {
        check_agreement(agreement, *line, problems);
        versions
            .entry(agreement.id.as_str())
            .or_default()
            .push(agreement.version);
    }
    for (id, versions) in versions.into_iter().filter(|(_, v)| v.len() > 1) {
        let versions: Vec<String> = versions.iter().map(u32::to_string).collect();
        problems.push(Problem::new(
            format!("agreement `{id}`"),
            format!(
                "is defined {} times (versions {}); a policy holds one version of each agreement",
                versions.len(),
                versions.join(", ")
            ),
        ));
    }

    let mut ids = BTreeMap::<&str, usize>::new();
    for (rule, line) in rules {
        check_rule(rule, *line, problems);
        *ids.entry(rule.id.as_str()).or_default() += 1;
    }
    for (id, count) in ids.into_iter().filter(|(_, n)| *n > 1) {
        problems.push(Problem::new(
            format!("rule `{id}`"),
            format!("is defined {count} times; rule ids must be unique"),
        ));
    }
}

fn check_agreement(agreement: &Agreement, line: Option<usize>, problems: &mut Vec<Problem>) {
    let mut c = Checker {
        subject: format!("agreement `{}`", agreement.id),
        line,
        problems,
    };
    c.name("id", &agreement.id);
    if agreement.version == 0 {
        c.problem("version must be 1 or more");
    }
    c.not_blank("title", &agreement.title);
    c.name("provider", &agreement.provider);
    c.names("recipient", "recipients", &agreement.recipients);
    c.names("purpose", "purposes", &agreement.purposes);
    c.not_blank("legal_basis", &agreement.legal_basis);

    if let Some(until) = agreement.valid_until
        && until < agreement.valid_from
    {
        c.problem(format!(
            "valid_until {until} is before valid_from {}",
            agreement.valid_from
        ));
    }
    if let Some(review) = agreement.review_date
        && review < agreement.valid_from
    {
        c.problem(format!(
            "review_date {review} is before valid_from {}",
            agreement.valid_from
        ));
    }
    for contact in &agreement.dpo_contacts {
        c.not_blank("dpo contact", contact);
    }

    if agreement.datasets.is_empty() {
        c.problem("datasets is empty");
    }
    let mut datasets = BTreeSet::new();
    for terms in &agreement.datasets {
        c.name("dataset", &terms.dataset);
        if !datasets.insert(terms.dataset.as_str()) {
            c.problem(format!(
                "dataset `{}` is listed more than once",
                terms.dataset
            ));
        }
        let mut actions = BTreeSet::new();
        for action in &terms.actions {
            if !actions.insert(action) {
                c.problem(format!(
                    "dataset `{}`: action `{action}` is listed more than once",
                    terms.dataset
                ));
            }
        }
        if actions.is_empty() {
            c.problem(format!("dataset `{}`: actions is empty", terms.dataset));
        }
        if terms.roles.is_empty() {
            c.problem(format!(
                "dataset `{}`: roles is empty, so no one could see it",
                terms.dataset
            ));
        }
        let mut roles = BTreeSet::new();
        for grant in &terms.roles {
            c.name("role", &grant.role);
            if !roles.insert(grant.role.as_str()) {
                c.problem(format!(
                    "dataset `{}`: role `{}` is listed more than once",
                    terms.dataset, grant.role
                ));
            }
            if grant.fields.is_empty() {
                c.problem(format!(
                    "dataset `{}`: role `{}` has no fields; remove the role to release nothing",
                    terms.dataset, grant.role
                ));
            }
            for field in grant.fields.iter().filter(|f| !is_valid_path(f)) {
                c.problem(format!(
                    "dataset `{}`: role `{}`: field `{field}` is not a path such as \
                     `person.names` or `incident.*`",
                    terms.dataset, grant.role
                ));
            }
        }
        for bg in &terms.break_glass {
            if bg.roles.is_empty() {
                c.problem(format!(
                    "dataset `{}`: break_glass has no roles, so no one could invoke it",
                    terms.dataset
                ));
            }
            if bg.fields.is_empty() {
                c.problem(format!(
                    "dataset `{}`: break_glass has no fields; remove it to add nothing",
                    terms.dataset
                ));
            }
            for role in &bg.roles {
                c.name("break_glass role", role);
                if !roles.contains(role.as_str()) {
                    c.problem(format!(
                        "dataset `{}`: break_glass role `{role}` has no normal terms here; \
                         break-glass only widens a role's own field set",
                        terms.dataset
                    ));
                }
            }
            for field in bg.fields.iter().filter(|f| !is_valid_path(f)) {
                c.problem(format!(
                    "dataset `{}`: break_glass field `{field}` is not a path such as \
                     `person.names` or `incident.*`",
                    terms.dataset
                ));
            }
        }
        if let Some(caveat) = &terms.handling_caveat {
            c.not_blank(
                &format!("dataset `{}`: handling_caveat", terms.dataset),
                caveat,
            );
        }
    }
}

fn check_rule(rule: &OperatorRule, line: Option<usize>, problems: &mut Vec<Problem>) {
    let mut c = Checker {
        subject: format!("rule `{}`", rule.id),
        line,
        problems,
    };
    c.identifier("id", &rule.id);
    if rule.effect == Effect::Allow {
        c.problem(
            "effect `allow` is not supported; sharing is granted only by agreements, so operator \
             rules may only deny",
        );
    }
    c.pattern("agency", &rule.agency);
    c.pattern("role", &rule.role);
    c.pattern("dataset", &rule.dataset);
    c.pattern("purpose", &rule.purpose);
    if rule.action != "*"
        && let Err(e) = Action::from_str(&rule.action)
    {
        c.problem(e.to_string());
    }
    c.not_blank("description", &rule.description);
    match &rule.marker {
        Some(marker) if marker == "*" => c.problem(
            "marker may not be `*`; a marker rule names the marker whose records it withholds, \
             and a rule without a marker already applies to every record",
        ),
        Some(marker) => c.identifier("marker", marker),
        None if rule.break_glass == BreakGlassScope::Exempt => c.problem(
            "break_glass `exempt` needs a marker: on a rule that refuses whole shares it would let \
             break-glass lift a denial",
        ),
        None => {}
    }
}

fn finish(
    agreements: Vec<(Agreement, Option<usize>)>,
    rules: Vec<(OperatorRule, Option<usize>)>,
    mut problems: Vec<Problem>,
) -> Result<PolicySet, PolicyError> {
    if !problems.is_empty() {
        // File order, so an operator can work down the file; problems about the policy as a
        // whole (no line) last.
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        return Err(PolicyError::Invalid { problems });
    }
    Ok(PolicySet {
        agreements: agreements.into_iter().map(|(a, _)| a).collect(),
        rules: rules.into_iter().map(|(r, _)| r).collect(),
    })
}

/// Ids of agencies, datasets, roles and purposes: they appear in casbin lines and in the ids
/// explain prints, so they are kept to characters that cannot be mistaken for separators.
fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn syntax_error(text: &str, e: &toml::de::Error) -> PolicyError {
    let (line, column) = e
        .span()
        .map_or((1, 1), |span| line_column(text, span.start));
    PolicyError::Syntax {
        line,
        column,
        message: one_line(e.message()),
    }
}

/// One-based line and column (in characters) of byte `offset`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte `é`.
        assert_eq!(line_column(text, 9), (2, 3));
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("police.records"));
        assert!(is_identifier("met-police"));
        assert!(is_identifier("team_manager"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("*"));
        assert!(!is_identifier("a:b"));
        assert!(!is_identifier("a b"));
    }
}

#[cfg(test)]
mod one_agreement_tests {
    use super::*;

    const DEMO: &str = include_str!("../../deploy/demo/policy.toml");

    #[test]
    fn an_agreement_survives_its_canonical_form_and_hashes_stably() {
        let set = PolicySet::from_toml(DEMO).unwrap();
        for agreement in set.agreements() {
            let text = agreement.to_toml().unwrap();
            let again = PolicySet::one_agreement(&text).unwrap();
            assert_eq!(&again, agreement, "{text}");
            assert_eq!(
                again.content_hash().unwrap(),
                agreement.content_hash().unwrap()
            );
        }
        let mut changed = set.agreements()[0].clone();
        changed.purposes.push("another-purpose".into());
        assert_ne!(
            changed.content_hash().unwrap(),
            set.agreements()[0].content_hash().unwrap()
        );
    }

    #[test]
    fn a_proposal_is_exactly_one_agreement() {
        let set = PolicySet::from_toml(DEMO).unwrap();
        let mut other = set.agreements()[0].clone();
        other.id = "another-agreement".into();
        let two = format!(
            "{}\n{}",
            set.agreements()[0].to_toml().unwrap(),
            other.to_toml().unwrap()
        );
        let err = PolicySet::one_agreement(&two).unwrap_err().to_string();
        assert!(err.contains("more than one"), "{err}");
        let err = PolicySet::one_agreement("").unwrap_err().to_string();
        assert!(err.contains("no `[[agreement]]`"), "{err}");
    }
}
