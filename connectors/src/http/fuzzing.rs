//! The one door the fuzz targets in `fuzz/` use into the mapping engine,
//! compiled only with the `fuzzing` feature.
//!
//! The engine is private to the crate, and reaching it through a real
//! connector needs a server, a folder or a database per input. These
//! functions read a hostile object or row through exactly the plan a
//! connector compiled, so what the fuzzer finds is what an answering API or
//! a legacy table could trigger.

use liaison_proto::v1::{Person, Record};
use serde_json::Value;

use super::JsonHttpConnector;
use crate::RowProblem;
use crate::map::row::{Cell, JsonRow, ResultSet, Row};

/// What one object or row read as.
#[derive(Debug, Default)]
pub struct FuzzRead {
    /// The person and their source id, if the row named one.
    pub person: Option<(String, Person)>,
    /// One record per mapped kind that the row could be read as.
    pub records: Vec<Record>,
    /// Everything the reading reported instead of failing.
    pub problems: Vec<RowProblem>,
}

impl JsonHttpConnector {
    /// Reads `object` as a person (with its `each` lists) and as a record of
    /// every mapped kind, as an API answer would be read.
    pub fn read_for_fuzzing(&self, object: &Value) -> FuzzRead {
        let person = self.person(object);
        let mut out = FuzzRead {
            problems: person.problems,
            person: person.value,
            records: Vec::new(),
        };
        read_records(self, &JsonRow(object), &mut out);
        out
    }

    /// Reads one row of typed cells, as a SQL result or a CSV record arrives:
    /// `columns[i]` names `cells[i]`, names may repeat or be missing, and a
    /// cell may hold any type whatever its column was declared as.
    pub fn read_row_for_fuzzing(&self, columns: &[String], cells: Vec<Cell>) -> FuzzRead {
        let set = ResultSet::new(columns, vec![cells]);
        let mut out = FuzzRead::default();
        for row in set.iter() {
            let person = self.plan.read_person(&row);
            out.problems.extend(person.problems);
            out.person = person.value;
            read_records(self, &row, &mut out);
        }
        out
    }
}

fn read_records(connector: &JsonHttpConnector, row: &dyn Row, out: &mut FuzzRead) {
    let owner = out
        .person
        .as_ref()
        .map_or_else(|| "fuzz".to_owned(), |(id, _)| id.clone());
    for plan in &connector.plan.records {
        let read = connector.plan.read_record(plan, &owner, row);
        out.records.extend(read.value);
        out.problems.extend(read.problems);
    }
}
