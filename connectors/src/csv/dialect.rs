//! What the CSV folder connector compiles for itself: the files it reads and
//! the columns it needs from each.

use crate::map::compile::{Compiler, Dialect, ListKeys, RecordSource, Template};
use crate::mapping::PersonMapping;

/// The CSV dialect of the mapping.
#[derive(Debug)]
pub(crate) struct Csv;

/// One file and the columns the mapping reads from it.
#[derive(Debug, Clone)]
pub(crate) struct CsvFile {
    /// The file's name in the folder.
    pub(crate) name: String,
    /// Every column the mapping reads, each of which the header must name.
    pub(crate) columns: Vec<String>,
}

/// A file of records and how its rows name their person.
#[derive(Debug, Clone)]
pub(crate) struct CsvRecords {
    pub(crate) file: CsvFile,
    pub(crate) person_source_id: Template,
}

impl Dialect for Csv {
    const KIND: &'static str = "csv-folder";
    type Person = CsvFile;
    // Flat files have one row per person: every list entry is read from
    // that row, so no entry has a source of its own.
    type List = ();
    type Records = CsvRecords;

    fn list_source(_entry: ListKeys<'_>) -> Option<(&'static str, &str)> {
        None
    }

    fn person(c: &mut Compiler<'_>, p: &PersonMapping, columns: Vec<String>) -> CsvFile {
        file(c, "person.file", p.file.as_deref(), columns)
    }

    fn list(_c: &mut Compiler<'_>, _key: &str, _source: &str, _columns: Vec<String>) {}

    fn records(
        c: &mut Compiler<'_>,
        key: &str,
        source: RecordSource<'_>,
        mut columns: Vec<String>,
    ) -> CsvRecords {
        let person_source_id = match source.person_source_id {
            Some(text) => c.template(&format!("{key}.person_source_id"), text, &mut columns),
            None => {
                c.problem(
                    &format!("{key}.person_source_id"),
                    "is required by `csv-folder` connectors",
                );
                Template { parts: Vec::new() }
            }
        };
        CsvRecords {
            file: file(c, &format!("{key}.file"), source.file, columns),
            person_source_id,
        }
    }
}

fn file(c: &mut Compiler<'_>, key: &str, name: Option<&str>, mut columns: Vec<String>) -> CsvFile {
    let name = match name {
        None => {
            c.problem(key, "is required by `csv-folder` connectors");
            String::new()
        }
        Some(name) => {
            // A name, not a path: the connector reads only its own folder.
            let plain = !name.is_empty()
                && !name.contains(['/', '\\'])
                && !matches!(name, "." | "..")
                && !name.ends_with(".done");
            if !plain {
                c.problem(
                    key,
                    format!("`{name}` is not a plain file name in the folder"),
                );
            }
            name.to_owned()
        }
    };
    columns.sort();
    columns.dedup();
    CsvFile { name, columns }
}
