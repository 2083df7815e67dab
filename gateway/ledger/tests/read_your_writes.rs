//! A receipt's entry is visible to every read that starts after the append returned: the
//! size, the entry, and a proof at the current size.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "integration tests fail by panicking"
)]

mod common;

use liaison_ledger::Ledger;
use liaison_ledger::test_util::sample_entry;

on_both_backends!(reads_after_an_append_see_it);

async fn reads_after_an_append_see_it(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    for n in 1..=300u64 {
        let receipt = ledger.append(sample_entry(n)).await.unwrap();
        assert_eq!(
            ledger.size().await.unwrap(),
            receipt.seq,
            "size after append {n}"
        );
        assert!(ledger.get(&receipt.entry_id).await.unwrap().is_some());
        if n % 7 == 0 {
            let size = ledger.size().await.unwrap();
            ledger.inclusion_proof(receipt.seq, size).await.unwrap();
            ledger.list(&Default::default(), 10, None).await.unwrap();
        }
    }
}
