//! `ledger-load`: appends to a ledger as fast as it can from N concurrent tasks and prints the id
//! of every acknowledged entry to stdout, one per line, flushed as soon as the append returns.
//! A crash harness kills it with SIGKILL and checks that every printed id is in the ledger, that
//! nothing else is (beyond the one append each task had in flight), and that the ledger verifies
//! (see `tests/crash.rs`). Test-only: built with the `test-util` feature.
//!
//! ```text
//! ledger-load URL [--tasks N] [--prefix P] [--body-bytes B] [--seal-ms MS]
//! ```
//!
//! Entry ids are `{P}t{task}-{n}` with `n` counting from 0 in each task; the body is
//! [`body_for`] of the id, so a harness can check bodies without being told them. A failed
//! append is retried with the same id until it is acknowledged (retries are idempotent), so a
//! task never has more than one unacknowledged id. `--seal-ms` also runs a sealer with test key 1.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use liaison_ledger::test_util::{body_for, load_entry, test_signing_key};
use liaison_ledger::{Ledger, LedgerError, LedgerOptions, Sealer};

#[derive(Debug)]
struct Args {
    url: String,
    tasks: u64,
    prefix: String,
    body_bytes: usize,
    seal_ms: Option<u64>,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("ledger-load: {message}");
            eprintln!(
                "usage: ledger-load URL [--tasks N] [--prefix P] [--body-bytes B] [--seal-ms MS]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ledger-load: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ledger-load: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), LedgerError> {
    let mut options = LedgerOptions::default();
    options.queue_capacity = 4096;
    let ledger = Ledger::connect_with(&args.url, options).await?;
    let _sealer = args.seal_ms.map(|ms| {
        Sealer::spawn(
            ledger.clone(),
            test_signing_key(1),
            Duration::from_millis(ms),
        )
    });
    let prefix = Arc::new(args.prefix);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..args.tasks {
        let ledger = ledger.clone();
        let prefix = Arc::clone(&prefix);
        let body_bytes = args.body_bytes;
        tasks.spawn(async move {
            for n in 0u64.. {
                let entry_id = format!("{prefix}t{task}-{n}");
                let entry = load_entry(&entry_id, body_for(&entry_id, body_bytes));
                loop {
                    match ledger.append(entry.clone()).await {
                        Ok(_) => break,
                        Err(err) => {
                            eprintln!("{entry_id}: {err}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // Printed only once durable; flushed so a kill right after loses nothing printed.
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{entry_id}")
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let url = args.next().ok_or("missing URL")?;
    let mut parsed = Args {
        url,
        tasks: 16,
        prefix: String::new(),
        body_bytes: 512,
        seal_ms: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} `{value}` is not a number"))
        };
        match flag.as_str() {
            "--tasks" => parsed.tasks = number()?,
            "--prefix" => parsed.prefix = value.clone(),
            "--body-bytes" => {
                parsed.body_bytes = usize::try_from(number()?).map_err(|e| e.to_string())?;
            }
            "--seal-ms" => parsed.seal_ms = Some(number()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}
