//! casbin's answers for one enforcer, asked once per class of request at compile time.
//!
//! casbin-rs runs its matcher as a script once per policy line, a few microseconds each, so an
//! enforcer of ten lines costs tens of microseconds a call. The shipped matcher only ever asks
//! whether a request attribute equals a line's constant or the line says `*`. Within one
//! enforcer, then, what casbin answers depends only on *which* of the enforcer's constants each
//! attribute equals, or that it equals none of them: every value outside a column's constants
//! (including a literal `*` from a caller, which the model matches only to wildcard lines)
//! meets each line exactly as any other such value does. So each column's values fall into
//! classes (one per distinct constant, one for "none of them"), and the classes of all columns
//! are finitely many combinations.
//!
//! [`DecisionTable::build`] puts one request per combination to casbin itself, a representative
//! value standing for each class, and keeps which lines casbin reported as matched. A decision
//! then maps each attribute to its class (a binary search among a handful of constants) and reads
//! the answer: no script, no allocation. casbin remains the only evaluator of the matcher; the
//! table is a memo of its answers over an exact partition. An enforcer whose combinations exceed
//! the bound keeps no table and is asked live, as is every enforcer under a model whose matcher is
//! not the shipped one (the partition is exact only for equality-or-`*`).

use std::collections::HashMap;

use casbin::{CoreApi, Enforcer};

use crate::error::PolicyError;

// Column positions in a compiled line; they follow `model::POLICY`.
const ISA: usize = 2;
const AGENCY: usize = 3;
const ROLE: usize = 4;
const DATASET: usize = 5;
const PURPOSE: usize = 6;
const ACTION: usize = 7;
const MARKER: usize = 8;
const BREAK_GLASS: usize = 9;
const ANY: &str = "*";

/// The line columns that vary within one enforcer, in the order a [`Query`] lists them. The
/// others (agreement, agency, dataset) are fixed by the key the enforcer is found under: every
/// line there either names the key's value or `*`, which [`DecisionTable::build`] checks.
const VARYING: [usize; 5] = [ROLE, PURPOSE, ACTION, MARKER, BREAK_GLASS];

/// A request's values for the varying columns: role, purpose, action, marker, break-glass.
pub(crate) type Query<'q> = [&'q str; 5];

/// Which lines casbin reports as matched, for every combination of classes.
pub(crate) struct DecisionTable {
    columns: [Column; 5],
    /// For each combination, its position in `answers`; the last column varies fastest.
    cells: Box<[u32]>,
    /// The distinct answers: positions of the matched lines in the enforcer, in casbin's order.
    answers: Box<[Box<[u32]>]>,
}

/// One column's constants, sorted; class 0 is "none of them", class `i + 1` is `constants[i]`.
struct Column {
    constants: Box<[Box<str>]>,
    /// Stands for class 0 when casbin is asked: equal to no constant.
    outsider: String,
}

/// Why an enforcer keeps no table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoTable {
    /// More combinations than the bound allows.
    TooLarge,
    /// Some line's agreement, agency or dataset is neither the key's nor `*`.
    NotKeyed,
}

impl DecisionTable {
    /// Asks `enforcer`, which holds `lines`, about one representative request per combination
    /// of classes, for requests under agreement `isa` from `agency` for `dataset`.
    ///
    /// `position` names the enforcer position of a line casbin reports; `max_cells` bounds the
    /// combinations.
    pub(crate) fn build(
        enforcer: &Enforcer,
        lines: &[Vec<String>],
        (isa, agency, dataset): (&str, &str, &str),
        position: impl Fn(&[String]) -> Option<u32>,
        max_cells: usize,
    ) -> Result<Result<Self, NoTable>, PolicyError> {
        let keyed = |column: usize, key: &str| {
            lines
                .iter()
                .all(|line| line.get(column).is_some_and(|v| v == ANY || v == key))
        };
        if !(keyed(ISA, isa) && keyed(AGENCY, agency) && keyed(DATASET, dataset)) {
            return Ok(Err(NoTable::NotKeyed));
        }
        let columns = VARYING.map(|column| Column::of(lines, column));
        let Some(size) = columns
            .iter()
            .try_fold(1usize, |size, column| size.checked_mul(column.classes()))
            .filter(|size| *size <= max_cells)
        else {
            return Ok(Err(NoTable::TooLarge));
        };

        let mut cells = Vec::with_capacity(size);
        let mut answers: Vec<Box<[u32]>> = Vec::new();
        let mut seen: HashMap<Box<[u32]>, u32> = HashMap::new();
        for cell in 0..size {
            let query = representative(&columns, cell);
            let [role, purpose, action, marker, glass] = query;
            let request = (isa, agency, role, dataset, purpose, action, marker, glass);
            let (_, matched) = enforcer
                .enforce_ex(request)
                .map_err(|e| PolicyError::Casbin {
                    message: format!("enforcing while building a decision table: {e}"),
                })?;
            let matched = matched
                .iter()
                .map(|line| position(line))
                .collect::<Option<Box<[u32]>>>()
                .ok_or_else(|| PolicyError::Casbin {
                    message: "casbin reported a line the enforcer was not given".into(),
                })?;
            let answer = match seen.get(&matched) {
                Some(answer) => *answer,
                None => {
                    let answer = u32::try_from(answers.len()).map_err(|_| too_many())?;
                    seen.insert(matched.clone(), answer);
                    answers.push(matched);
                    answer
                }
            };
            cells.push(answer);
        }
        Ok(Ok(Self {
            columns,
            cells: cells.into(),
            answers: answers.into(),
        }))
    }

    /// The positions of the lines casbin matches for `query`, in the order it reports them;
    /// `None` only if the table is inconsistent with itself, which building rules out.
    pub(crate) fn matched(&self, query: Query<'_>) -> Option<&[u32]> {
        let mut cell = 0usize;
        for (column, value) in self.columns.iter().zip(query) {
            cell = cell * column.classes() + column.class(value);
        }
        let answer = usize::try_from(*self.cells.get(cell)?).ok()?;
        self.answers.get(answer).map(|a| &a[..])
    }

    /// How many combinations the table holds.
    pub(crate) fn cells(&self) -> usize {
        self.cells.len()
    }
}

impl Column {
    fn of(lines: &[Vec<String>], column: usize) -> Self {
        let mut constants: Vec<Box<str>> = lines
            .iter()
            .filter_map(|line| line.get(column))
            .filter(|value| *value != ANY)
            .map(|value| value.as_str().into())
            .collect();
        constants.sort_unstable();
        constants.dedup();
        let mut outsider = String::from("~");
        while constants.iter().any(|c| **c == *outsider) {
            outsider.push('~');
        }
        Self {
            constants: constants.into(),
            outsider,
        }
    }

    fn classes(&self) -> usize {
        self.constants.len() + 1
    }

    fn class(&self, value: &str) -> usize {
        match self.constants.binary_search_by(|c| (**c).cmp(value)) {
            Ok(i) => i + 1,
            Err(_) => 0,
        }
    }

    fn value(&self, class: usize) -> &str {
        match class.checked_sub(1).and_then(|i| self.constants.get(i)) {
            Some(constant) => constant,
            None => &self.outsider,
        }
    }
}

/// One value per column standing for the combination of classes numbered `cell`.
fn representative(columns: &[Column; 5], cell: usize) -> Query<'_> {
    let mut query = [""; 5];
    let mut rest = cell;
    for (slot, column) in query.iter_mut().zip(columns).rev() {
        *slot = column.value(rest % column.classes());
        rest /= column.classes();
    }
    query
}

fn too_many() -> PolicyError {
    PolicyError::Casbin {
        message: "a decision table has more distinct answers than it can number".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MODEL, build_enforcer, parse_model};

    fn line(values: [&str; 10]) -> Vec<String> {
        values.map(str::to_owned).to_vec()
    }

    fn lines() -> Vec<Vec<String>> {
        vec![
            line(["allow", "a1", "i", "g", "r1", "d", "p1", "read", "*", "*"]),
            line(["allow", "a2", "i", "g", "r2", "d", "p1", "read", "*", "*"]),
            line(["deny", "rule:x", "*", "*", "r2", "*", "*", "*", "*", "yes"]),
            line(["deny", "rule:m", "*", "g", "*", "d", "*", "*", "mk", "*"]),
        ]
    }

    fn table(lines: &[Vec<String>], max_cells: usize) -> Result<DecisionTable, NoTable> {
        let model = parse_model(MODEL).unwrap();
        let enforcer = build_enforcer(&model, lines.to_vec()).unwrap();
        let position = |l: &[String]| {
            lines
                .iter()
                .position(|x| x == l)
                .and_then(|p| u32::try_from(p).ok())
        };
        DecisionTable::build(&enforcer, lines, ("i", "g", "d"), position, max_cells).unwrap()
    }

    #[test]
    fn it_answers_as_casbin_does_for_constants_and_outsiders() {
        let lines = lines();
        let table = table(&lines, 4_096).unwrap();
        // role: r1, r2, other; purpose: p1, other; action: read, other; marker: mk, other;
        // break-glass: yes, other.
        assert_eq!(table.cells(), 3 * 2 * 2 * 2 * 2);
        assert_eq!(
            table.matched(["r1", "p1", "read", "", "no"]),
            Some(&[0][..])
        );
        assert_eq!(
            table.matched(["r2", "p1", "read", "", "no"]),
            Some(&[1][..])
        );
        // casbin stops at the first deny it meets.
        assert_eq!(
            table.matched(["r2", "p1", "read", "", "yes"]),
            Some(&[1, 2][..])
        );
        assert_eq!(
            table.matched(["r1", "p1", "read", "mk", "no"]),
            Some(&[0, 3][..])
        );
        // A literal `*` is no wildcard in a request: it matches only the wildcard lines.
        assert_eq!(table.matched(["*", "p1", "read", "", "no"]), Some(&[][..]));
        assert_eq!(table.matched(["*", "*", "*", "mk", "*"]), Some(&[3][..]));
        assert_eq!(table.matched(["r1", "p2", "read", "", "no"]), Some(&[][..]));
        assert_eq!(table.matched(["~", "p1", "read", "", "no"]), Some(&[][..]));
    }

    #[test]
    fn an_outsider_never_equals_a_constant() {
        let mut lines = lines();
        lines.push(line([
            "deny", "rule:t", "*", "*", "~", "*", "*", "*", "*", "*",
        ]));
        let table = table(&lines, 4_096).unwrap();
        assert_eq!(table.matched(["~", "p1", "read", "", "no"]), Some(&[4][..]));
        assert_eq!(table.matched(["~~", "p1", "read", "", "no"]), Some(&[][..]));
    }

    #[test]
    fn it_is_bounded_and_needs_lines_keyed_as_the_enforcer_is() {
        let lines = lines();
        assert_eq!(table(&lines, 47).err(), Some(NoTable::TooLarge));
        assert!(table(&lines, 48).is_ok());
        let mut other = lines;
        other.push(line([
            "deny", "rule:o", "*", "h", "*", "*", "*", "*", "*", "*",
        ]));
        assert_eq!(table(&other, 4_096).err(), Some(NoTable::NotKeyed));
    }
}
