//! `proto-doc`: writes `docs/api-reference.md` from the compiled `liaison.v1`
//! descriptors (`proto-doc [PATH]`), or with `--check` exits non-zero when
//! the file is stale.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut check = false;
    let mut path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/api-reference.md"
    ));
    for arg in std::env::args().skip(1) {
        if arg == "--check" {
            check = true;
        } else {
            path = PathBuf::from(arg);
        }
    }
    let text = match liaison_conformance::protodoc::render(liaison_proto::FILE_DESCRIPTOR_SET) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("proto-doc: cannot read the descriptors: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "proto-doc: `{}` is stale; run `cargo run -p liaison-conformance --bin proto-doc`",
            path.display()
        );
        return ExitCode::from(1);
    }
    match std::fs::write(&path, text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proto-doc: cannot write `{}`: {e}", path.display());
            ExitCode::from(2)
        }
    }
}
