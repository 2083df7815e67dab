//! The results of a run, as a table for people and JUnit XML for CI.

use std::{fmt::Write as _, time::Duration};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Check, CheckResult, Verdict};

/// One check's result.
#[derive(Debug)]
pub struct Outcome {
    /// The check.
    pub check: Check,
    /// What happened.
    pub result: CheckResult,
    /// How long it took.
    pub elapsed: Duration,
    /// Why the deployment is known not to pass this check, if it is.
    pub gap: Option<String>,
}

impl Outcome {
    /// `PASS`, `FAIL`, `SKIP`; for a listed gap, `XFAIL` when it still
    /// fails and `XPASS` when it passes.
    pub fn label(&self) -> &'static str {
        match (&self.result, self.gap.is_some()) {
            (Ok(()), false) => "PASS",
            (Ok(()), true) => "XPASS",
            (Err(Verdict::Fail(_)), false) => "FAIL",
            (Err(Verdict::Fail(_)), true) => "XFAIL",
            (Err(Verdict::Skip(_)), _) => "SKIP",
        }
    }

    /// Whether the run should fail for this check: an unlisted failure, or
    /// a listed gap that now passes (so the list cannot go stale).
    pub fn failed(&self) -> bool {
        matches!(self.label(), "FAIL" | "XPASS")
    }
}

/// A table: one line per check, the reason under each failure or skip, then
/// the totals.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes.iter().map(|o| o.check.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for o in outcomes {
        let _ = writeln!(
            out,
            "{:<5}  {:width$}  {:>6} ms  {}",
            o.label(),
            o.check.id,
            o.elapsed.as_millis(),
            o.check.description,
        );
        if let Err(v) = &o.result {
            let _ = writeln!(out, "       └─ {v}");
        }
        if let Some(gap) = &o.gap {
            let _ = writeln!(out, "       └─ known gap: {gap}");
        }
    }
    let count = |l: &str| outcomes.iter().filter(|o| o.label() == l).count();
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} skipped, {} known gaps, {} known gaps now passing",
        count("PASS"),
        count("FAIL"),
        count("SKIP"),
        count("XFAIL"),
        count("XPASS")
    );
    out
}

/// JUnit XML: one suite per group, one case per check; a failure's message
/// is the check's description and its text says why.
pub fn junit(target: &str, outcomes: &[Outcome]) -> Result<String, String> {
    let mut report = Report::new("liaison-conformance");
    let mut groups: Vec<&str> = outcomes.iter().map(|o| o.check.group()).collect();
    groups.dedup();
    for group in groups {
        let mut suite = TestSuite::new(group);
        suite.add_property(("target", target));
        for o in outcomes.iter().filter(|o| o.check.group() == group) {
            let status = match (&o.result, &o.gap) {
                (Err(Verdict::Fail(why)), Some(gap)) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("known gap: {gap}"))
                        .set_description(why.as_str());
                    s
                }
                (Ok(()), Some(gap)) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(
                        "listed as a known gap but passes: remove it from the expectations",
                    )
                    .set_description(gap.as_str());
                    s
                }
                (Ok(()), None) => TestCaseStatus::success(),
                (Err(Verdict::Fail(why)), None) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(o.check.description)
                        .set_description(why.as_str());
                    s
                }
                (Err(Verdict::Skip(why)), _) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(why.as_str());
                    s
                }
            };
            let mut case = TestCase::new(o.check.id, status);
            case.set_classname(group).set_time(o.elapsed);
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| e.to_string())
}
