//! Information Sharing Agreements from TOML text, parsed and compiled into
//! a policy set: errors with lines, never a panic.
#![no_main]

use liaison_policy::PolicySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PolicySet::from_toml(text) {
        Ok(set) => {
            let _ = (set.agreements().len(), set.rules().len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
