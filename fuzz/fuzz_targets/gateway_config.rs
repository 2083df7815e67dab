//! Gateway configuration from TOML text: every input is either a `Config`
//! or a list of problems, never a panic.
#![no_main]

use std::path::Path;

use liaison_gateway::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("fuzz.toml"), Path::new("/nonexistent")) {
        Ok(config) => {
            let _ = config.ledger_url();
            let _ = config.policy_path();
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error with no problem in it");
            let _ = e.to_string();
        }
    }
});
