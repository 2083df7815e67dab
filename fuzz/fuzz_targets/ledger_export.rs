//! Ledger exports and witness files, as the offline verifier reads them
//! from whoever handed them over: any bytes are either verified or refused
//! with the line at fault, never a panic, and an export only verifies if
//! the fixture key signed its heads.
#![no_main]

use std::sync::LazyLock;

use liaison_ledger::{SigningKey, VerifyingKey, read_witness, verify_export_with_witness};
use libfuzzer_sys::fuzz_target;

/// The fixture key the seed exports are signed with (`fuzz/seed`); never
/// used anywhere else.
static KEY: LazyLock<VerifyingKey> = LazyLock::new(|| {
    SigningKey::from_seed(&[7; 32])
        .expect("fixture seed")
        .verifying_key()
});

fuzz_target!(|data: &[u8]| {
    let key = &*KEY;
    // The first line that reads as a witness file is used as one, so
    // witness checks run against the rest.
    let (witness, export) = match data.iter().position(|&b| b == 0) {
        Some(at) => (
            data.get(..at).unwrap_or_default(),
            data.get(at + 1..).unwrap_or_default(),
        ),
        None => (&[][..], data),
    };
    let heads = read_witness(witness, key).unwrap_or_default();
    if let Ok(report) = verify_export_with_witness(export, key, &heads) {
        assert!(report.witnessed <= heads.len() as u64);
    }
});
