//! `liaison audit verify`: recompute the ledger and name the first entry
//! that does not verify.

use liaison_ledger::{Ledger, LedgerError};

use crate::{cli::LedgerArgs, config::Config};

/// Opens the ledger named by `args`.
pub async fn open(args: &LedgerArgs) -> Result<Ledger, String> {
    let url = match (&args.config, &args.ledger) {
        (_, Some(url)) => url.clone(),
        (Some(path), None) => Config::load(path).map_err(|e| e.to_string())?.ledger_url(),
        (None, None) => return Err("give --config FILE or --ledger URL".into()),
    };
    Ledger::connect(&url)
        .await
        .map_err(|e| format!("cannot open the ledger: {e}"))
}

/// Verifies the ledger; exit code 0 when it verifies, 2 when it is broken,
/// 1 when it cannot be read.
pub async fn verify(args: LedgerArgs) -> i32 {
    let ledger = match open(&args).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match ledger.verify().await {
        Ok(report) => {
            println!(
                "ledger verifies: {} entries, chain head {}, Merkle root {}",
                report.entries,
                hex::encode(report.head),
                hex::encode(report.root)
            );
            0
        }
        Err(e @ LedgerError::Broken { .. }) => {
            eprintln!("LEDGER BROKEN: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: cannot verify the ledger: {e}");
            1
        }
    }
}
