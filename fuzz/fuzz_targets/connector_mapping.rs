//! Hostile answers and legacy rows read through a fixed, real mapping
//! (`connectors/examples/health-api.toml`): whatever an agency's system
//! holds, reading it yields people, records and problems, never a panic,
//! and nothing longer than the mapping allows.
#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use liaison_connectors::Cell;
use liaison_connectors::http::{FuzzRead, JsonHttpConfig, JsonHttpConnector};
use liaison_connectors::mapping::Mapping;
use libfuzzer_sys::fuzz_target;

static CONNECTOR: LazyLock<JsonHttpConnector> = LazyLock::new(|| {
    let mapping: Mapping =
        toml::from_str(include_str!("../../connectors/examples/health-api.toml"))
            .expect("the example mapping parses");
    let config: JsonHttpConfig = toml::from_str(
        r#"
        id = "health-api"
        agency = "eastborough-health"
        title = "Eastborough Health patient administration"
        system = "Synthetic PAS"
        base_url = "https://pas.health.invalid/fhir"
        "#,
    )
    .expect("the fixture connector configuration parses");
    JsonHttpConnector::with_mapping(&config, &mapping).expect("the example mapping compiles")
});

/// Columns the example mapping reads, so rows hit real fields.
const COLUMNS: &[&str] = &[
    "/id",
    "/birthDate",
    "/gender",
    "/meta/lastUpdated",
    "/nhsNo",
    "/family",
    "/given",
    "/use",
    "/code",
    "/text",
    "/period/start",
    "/period/end",
    "/alertId",
    "/ref",
    "/category",
    "/summary",
    "/raisedAt",
    "/status",
    "/lead",
    "/line/0",
    "/city",
    "/postalCode",
];

#[derive(Debug, Arbitrary)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Unsupported(String),
    Undecodable(String),
}

#[derive(Debug, Arbitrary)]
struct Column {
    known: u8,
    own: Option<String>,
    value: Value,
}

fn check(read: &FuzzRead) {
    if let Some((id, person)) = &read.person {
        assert!(id.len() <= 256, "source id longer than allowed");
        for name in &person.names {
            assert!(
                name.family_name.len() <= 200,
                "family name longer than its `max_bytes`"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let connector = &*CONNECTOR;
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 0 {
            if let Ok(object) = serde_json::from_slice::<serde_json::Value>(rest) {
                check(&connector.read_for_fuzzing(&object));
            }
            return;
        }
        let mut u = Unstructured::new(rest);
        let Ok(row) = Vec::<Column>::arbitrary(&mut u) else {
            return;
        };
        let mut columns = Vec::with_capacity(row.len());
        let mut cells = Vec::with_capacity(row.len());
        for column in row {
            columns.push(
                column.own.unwrap_or_else(|| {
                    COLUMNS[usize::from(column.known) % COLUMNS.len()].to_owned()
                }),
            );
            cells.push(match column.value {
                Value::Null => Cell::Null,
                Value::Int(i) => Cell::Int(i),
                Value::Float(f) => Cell::Float(f),
                Value::Bool(b) => Cell::Bool(b),
                Value::Text(s) => Cell::Text(s),
                Value::Bytes(b) => Cell::Bytes(b),
                Value::Unsupported(s) => Cell::Unsupported(s),
                Value::Undecodable(s) => Cell::Undecodable(s),
            });
        }
        check(&connector.read_row_for_fuzzing(&columns, cells));
    }
});
