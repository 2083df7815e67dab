//! `liaison audit …`: keys, verification, export and retention of the
//! audit ledger, and the DPO's review queue.
//!
//! Exit codes are the same for every command: 0 done (or the ledger
//! verifies), 2 the ledger or export is broken (tampering or damage, named),
//! 1 anything else (unreadable files, no database).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use liaison_ledger::{KeyRing, Ledger, LedgerError, SigningKey, VerifyingKey, read_witness_file};
use time::OffsetDateTime;

use crate::{cli::LedgerArgs, config::Config};

/// `liaison audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The live ledger to verify (unless `--export` is given).
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Verify this export file instead of a database: needs nothing but
    /// the file and the public key.
    #[arg(long, conflicts_with_all = ["config", "ledger"])]
    pub export: Option<PathBuf>,
    /// A public key (PEM) trusted to sign tree heads; repeat it for keys
    /// that were rotated out. With `--config`, the configured keys are
    /// used when none is given.
    #[arg(long = "public-key")]
    pub public_keys: Vec<PathBuf>,
    /// A witness file of signed heads published outside the database; a
    /// ledger rewritten or restored from an older backup disagrees with it.
    #[arg(long)]
    pub witness: Option<PathBuf>,
}

/// `liaison audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The ledger to export.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The export file (JSON lines). An existing export of this ledger is
    /// continued from its last complete entry, so a repeated or interrupted
    /// export loses nothing and rewrites nothing.
    #[arg(long)]
    pub out: PathBuf,
}

/// `liaison audit keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, readable by its owner
    /// only); the public key goes beside it with `.pub` appended.
    #[arg(long)]
    pub out: PathBuf,
}

/// `liaison audit public-key`.
#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// A private key file.
    #[arg(long, conflicts_with = "config")]
    pub key: Option<PathBuf>,
    /// A gateway configuration naming the signing key.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `liaison audit prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The ledger to prune.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Keep entries signed within this many days; remove older ones, up to
    /// the last signed head before the cut-off.
    #[arg(long)]
    pub keep_days: u32,
    /// The archive to bring up to date before anything is removed (an
    /// export, verifiable offline). Required: nothing is removed unarchived.
    #[arg(long)]
    pub archive: PathBuf,
}

/// `liaison audit review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The ledger to record the review in.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The audit entry reviewed: a break-glass share, or the entry a flag
    /// names (`liaison audit queue` lists them).
    pub entry_id: String,
    /// What was checked and concluded; at least 10 characters. It is kept
    /// in the ledger for good.
    #[arg(long)]
    pub note: String,
    /// The reviewing DPO's subject id at their agency's identity provider.
    #[arg(long)]
    pub reviewer: String,
    /// The reviewer's name as it should appear beside the review.
    #[arg(long)]
    pub name: Option<String>,
    /// The reviewer's agency; needed unless the configuration names exactly
    /// one agency. Only that agency's entries can be reviewed.
    #[arg(long)]
    pub agency: Option<String>,
}

/// `liaison audit queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The ledger to read.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Whose queue: the agency whose users' entries are listed; needed
    /// unless the configuration names exactly one agency.
    #[arg(long)]
    pub agency: Option<String>,
    /// List reviewed items too, after the unreviewed ones.
    #[arg(long)]
    pub all: bool,
}

/// `liaison audit restrict`.
#[derive(Debug, Args)]
pub struct RestrictArgs {
    /// The ledger holding the share.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The share's position in the ledger (its sequence number).
    pub sequence: u64,
    /// The first day the share is reported again, `YYYY-MM-DD` (UTC).
    #[arg(long)]
    pub until: String,
    /// The investigation the restriction protects; at least 10
    /// characters, kept in the ledger for good.
    #[arg(long)]
    pub reason: String,
    /// The restricting DPO's subject id at their agency's identity
    /// provider.
    #[arg(long)]
    pub dpo: String,
    /// The DPO's agency, which must be party to the share; needed unless
    /// the configuration names exactly one agency.
    #[arg(long)]
    pub agency: Option<String>,
}

/// `liaison audit lift`.
#[derive(Debug, Args)]
pub struct LiftArgs {
    /// The ledger holding the share.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The share's position in the ledger.
    pub sequence: u64,
    /// Why the restriction ends now; at least 10 characters.
    #[arg(long)]
    pub reason: String,
    /// The DPO's subject id.
    #[arg(long)]
    pub dpo: String,
    /// The DPO's agency; needed unless the configuration names exactly one.
    #[arg(long)]
    pub agency: Option<String>,
}

/// Opens the ledger named by `args`, with its search columns complete
/// (see [`crate::agreements::backfill_index`]).
pub async fn open(args: &LedgerArgs) -> Result<Ledger, String> {
    let url = match (&args.config, &args.ledger) {
        (_, Some(url)) => url.clone(),
        (Some(path), None) => load_config(path)?.ledger_url(),
        (None, None) => return Err("give --config FILE or --ledger URL".into()),
    };
    let ledger = Ledger::connect(&url)
        .await
        .map_err(|e| format!("cannot open the ledger: {e}"))?;
    crate::agreements::backfill_index(&ledger, &url)
        .await
        .map_err(|e| format!("cannot index the ledger: {e}"))?;
    Ok(ledger)
}

fn load_config(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

/// The keys to check signatures with: those given, else the configured
/// ones.
fn key_ring(args: &VerifyArgs) -> Result<KeyRing, String> {
    if !args.public_keys.is_empty() {
        let mut ring = KeyRing::default();
        for path in &args.public_keys {
            ring.add(read_public_key(path)?);
        }
        return Ok(ring);
    }
    match &args.ledger.config {
        Some(path) => Ok(load_config(path)?.ledger_keys()?.ring),
        None => Ok(KeyRing::default()),
    }
}

/// A public key file, or the public half of a private key file.
fn read_public_key(path: &Path) -> Result<VerifyingKey, String> {
    VerifyingKey::from_file(path)
        .or_else(|public_err| {
            SigningKey::from_file(path)
                .map(|key| key.verifying_key())
                .map_err(|_| public_err)
        })
        .map_err(|e| format!("public key `{}`: {e}", path.display()))
}

fn witness_path(args: &VerifyArgs) -> Result<Option<PathBuf>, String> {
    if args.witness.is_some() {
        return Ok(args.witness.clone());
    }
    match &args.ledger.config {
        Some(path) => Ok(load_config(path)?.witness_path()),
        None => Ok(None),
    }
}

/// The latest signed head, as the verify reports name it.
fn describe_head(head: Option<&liaison_ledger::SignedTreeHead>) -> String {
    head.map_or_else(
        || "no signed head".to_owned(),
        |h| format!("latest signed head at {} by key {}", h.size, h.key_id),
    )
}

/// Reports a verification error with the exit code it deserves.
fn broken_or_failed(e: &LedgerError, what: &str) -> i32 {
    match e {
        LedgerError::Broken { .. } | LedgerError::InvalidWitness { .. } => {
            eprintln!("{} BROKEN: {e}", what.to_uppercase());
            2
        }
        _ => {
            eprintln!("error: cannot verify the {what}: {e}");
            1
        }
    }
}

/// Verifies a live ledger or an export.
pub async fn verify(args: VerifyArgs) -> i32 {
    let ring = match key_ring(&args) {
        Ok(ring) => ring,
        Err(e) => return fail(&e),
    };
    let witness = match witness_path(&args) {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    if let Some(export) = &args.export {
        if ring.keys().is_empty() {
            return fail("verifying an export needs --public-key");
        }
        return match liaison_ledger::verify_export_file(export, &ring, witness.as_deref()) {
            Ok(report) => {
                let signed = describe_head(report.latest_head.as_ref());
                println!(
                    "export verifies: entries {}..={} ({} checked), {} signed heads ({signed}), {} witnessed heads matched, Merkle root {}",
                    report.first_seq,
                    report.size,
                    report.entries,
                    report.heads,
                    report.witnessed,
                    hex::encode(report.root)
                );
                0
            }
            Err(e) => broken_or_failed(&e, "export"),
        };
    }
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let result = if ring.keys().is_empty() {
        eprintln!("note: no public key given; signatures on tree heads are not checked");
        ledger.verify().await
    } else {
        let heads = match &witness {
            // The sealer creates the witness with the first signed head.
            Some(path) if !path.exists() => {
                eprintln!(
                    "note: witness file `{}` does not exist yet; nothing to compare against",
                    path.display()
                );
                Vec::new()
            }
            Some(path) => match read_witness_file(path, &ring) {
                Ok(heads) => heads,
                Err(e) => return broken_or_failed(&e, "witness"),
            },
            None => Vec::new(),
        };
        ledger.verify_signed(&ring, &heads).await
    };
    match result {
        Ok(report) => {
            let signed = describe_head(report.latest_head.as_ref());
            println!(
                "ledger verifies: {} entries, {signed}, chain head {}, Merkle root {}",
                report.entries,
                hex::encode(report.head),
                hex::encode(report.root)
            );
            0
        }
        Err(e) => broken_or_failed(&e, "ledger"),
    }
}

/// Exports the ledger to a file, continuing an earlier export.
pub async fn export(args: ExportArgs) -> i32 {
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match ledger.export_file(&args.out).await {
        Ok(summary) => {
            println!(
                "{} `{}`: entries {}..={} ({} written), {} signed heads",
                if summary.resumed {
                    "continued"
                } else {
                    "wrote"
                },
                args.out.display(),
                summary.first_seq,
                summary.size,
                summary.entries,
                summary.heads
            );
            0
        }
        Err(e) => fail(&format!("cannot export the ledger: {e}")),
    }
}

/// Writes a new signing key and its public key.
pub fn keygen(args: &KeygenArgs) -> i32 {
    let public_path = public_path(&args.out);
    for path in [&args.out, &public_path] {
        if path.exists() {
            return fail(&format!(
                "`{}` exists; a signing key is never overwritten",
                path.display()
            ));
        }
    }
    let key = match SigningKey::generate() {
        Ok(k) => k,
        Err(e) => return fail(&e.to_string()),
    };
    let pem = match key.to_pkcs8_pem() {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    if let Err(e) = write_private(&args.out, pem.as_bytes()) {
        return fail(&format!("cannot write `{}`: {e}", args.out.display()));
    }
    let public = key.verifying_key().to_pem();
    if let Err(e) = std::fs::write(&public_path, &public) {
        return fail(&format!("cannot write `{}`: {e}", public_path.display()));
    }
    println!(
        "signing key {} written to `{}`; publish `{}`",
        key.key_id(),
        args.out.display(),
        public_path.display()
    );
    0
}

/// `FILE.pub` beside `FILE`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates `path` readable by its owner only, refusing to replace a file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Prints the public key of a signing key.
pub fn public_key(args: &PublicKeyArgs) -> i32 {
    let key = match (&args.key, &args.config) {
        (Some(path), _) => SigningKey::from_file(path).map_err(|e| e.to_string()),
        (None, Some(config)) => load_config(config)
            .and_then(|c| c.ledger_keys())
            .and_then(|k| {
                k.signing
                    .ok_or_else(|| "the configuration names no signing key".to_owned())
            }),
        (None, None) => Err("give --key FILE or --config FILE".to_owned()),
    };
    match key {
        Ok(key) => {
            print!("{}", key.verifying_key().to_pem());
            eprintln!("key id {}", key.key_id());
            0
        }
        Err(e) => fail(&e),
    }
}

/// Archives, then removes entries older than the retention period.
pub async fn prune(args: PruneArgs) -> i32 {
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let cut_off = OffsetDateTime::now_utc() - time::Duration::days(i64::from(args.keep_days));
    let checkpoint = match ledger.retention_checkpoint(cut_off).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("nothing to prune: no signed head before {cut_off}");
            return 0;
        }
        Err(e) => return fail(&format!("cannot choose a checkpoint: {e}")),
    };
    if let Err(e) = ledger.export_file(&args.archive).await {
        return fail(&format!("cannot archive before pruning: {e}"));
    }
    match ledger.prune_before(checkpoint.size + 1, &checkpoint).await {
        Ok(report) => {
            println!(
                "pruned {} entries; entries up to {} are now only in `{}`, under signed head {} by key {}",
                report.removed,
                report.pruned_through,
                args.archive.display(),
                checkpoint.size,
                checkpoint.key_id
            );
            0
        }
        Err(e) => fail(&format!("cannot prune: {e}")),
    }
}

/// The agency a review or queue is for: the flag's, else the configured
/// one when the configuration names exactly one.
fn agency_of(ledger: &LedgerArgs, flag: Option<&String>) -> Result<String, String> {
    if let Some(a) = flag {
        return Ok(a.clone());
    }
    let agencies = match &ledger.config {
        Some(path) => load_config(path)?
            .agencies
            .iter()
            .map(|a| a.id.get_ref().clone())
            .collect::<Vec<_>>(),
        None => Vec::new(),
    };
    match agencies.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("give --agency: whose DPO is this?".into()),
        _ => Err(format!(
            "the configuration names {} agencies; give --agency",
            agencies.len()
        )),
    }
}

/// Records a DPO's review of one entry, as the console's "Mark reviewed"
/// does; exit 0 once it is durable.
pub async fn review(args: ReviewArgs) -> i32 {
    use crate::console::review::{check_note, review_entry};
    let agency = match agency_of(&args.ledger, args.agency.as_ref()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let note = match check_note(&args.note) {
        Ok(n) => n,
        Err(e) => return fail(&e.to_string()),
    };
    if args.reviewer.trim().is_empty() {
        return fail("give --reviewer: the reviewing DPO's subject id");
    }
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match ledger.get(&args.entry_id).await {
        Ok(Some(e)) if e.index.agency == agency || e.index.provider == agency => {}
        Ok(_) => {
            return fail(&format!(
                "audit entry `{}` was not found among agency `{agency}`'s entries",
                args.entry_id
            ));
        }
        Err(e) => return fail(&format!("cannot read the ledger: {e}")),
    }
    let reviewer = liaison_proto::v1::AuditPrincipal {
        agency_id: agency,
        subject: args.reviewer.trim().to_owned(),
        display_name: args.name.unwrap_or_default(),
        roles: vec![crate::console::review::REVIEWER_ROLE.to_owned()],
        client_id: "liaison-cli".into(),
        ..Default::default()
    };
    let entry = review_entry(reviewer, "liaison audit review", &args.entry_id, note);
    match crate::share::audit::append(&ledger, &entry).await {
        Ok(receipt) => {
            println!(
                "review of {} recorded as entry {} (sequence {})",
                args.entry_id, receipt.entry_id, receipt.sequence
            );
            0
        }
        Err(e) => fail(&format!("the review was not recorded: {e}")),
    }
}

/// Prints the review queue: unreviewed break-glass shares and flags, one
/// per line, tab-separated (status, kind, entry id, time, user or person,
/// what was seen).
pub async fn queue(args: QueueArgs) -> i32 {
    let agency = match agency_of(&args.ledger, args.agency.as_ref()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let visible = liaison_ledger::EntryFilter {
        party: Some(agency),
        ..Default::default()
    };
    let queue =
        match crate::console::review::queue(&ledger, visible, OffsetDateTime::now_utc()).await {
            Ok(q) => q,
            Err(e) => return fail(&format!("cannot read the ledger: {e}")),
        };
    let mut out = std::io::stdout().lock();
    for item in queue.items.iter().filter(|i| args.all || !i.reviewed()) {
        let status = if item.reviewed() {
            "reviewed"
        } else {
            "unreviewed"
        };
        let line = [
            status,
            item.kind,
            &item.entry_id,
            &item.at,
            &item.subject,
            &item.detail,
        ]
        .map(|f| f.replace(['\t', '\n'], " "))
        .join("\t");
        if writeln!(out, "{line}").is_err() {
            return 1;
        }
    }
    let unreviewed = queue.items.iter().filter(|i| !i.reviewed()).count();
    eprintln!(
        "{unreviewed} unreviewed of {} items over the last {} days{}",
        queue.items.len(),
        crate::console::review::QUEUE_DAYS,
        if queue.partial {
            " (only the most recent entries were read)"
        } else {
            ""
        }
    );
    0
}

/// The DPO a restriction command acts as: a `dpo` of `agency`, vouched for
/// by whoever may run the command against the ledger's database.
fn cli_dpo(agency: String, subject: &str) -> Result<crate::identity::Principal, String> {
    if subject.trim().is_empty() {
        return Err("give --dpo: the DPO's subject id".into());
    }
    Ok(crate::identity::Principal {
        agency,
        subject: subject.trim().to_owned(),
        display_name: None,
        roles: vec![crate::restriction::RESTRICTER_ROLE.to_owned()],
        team: None,
        vetting: None,
        client_id: Some("liaison-cli".into()),
        issuer: String::new(),
        is_system: false,
    })
}

/// Restricts one share until a date and prints the restriction.
pub async fn restrict(args: RestrictArgs) -> i32 {
    let dpo = match agency_of(&args.ledger, args.agency.as_ref())
        .and_then(|agency| cli_dpo(agency, &args.dpo))
    {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let until = match time::Date::parse(
        args.until.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    ) {
        Ok(d) => d.with_time(time::Time::MIDNIGHT).assume_utc(),
        Err(_) => return fail(&format!("`{}` is not a date like 2027-03-31", args.until)),
    };
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match crate::restriction::restrict(
        &ledger,
        &dpo,
        "liaison audit restrict",
        args.sequence,
        until,
        &args.reason,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Ok(done) => {
            println!(
                "entry {} ({}) withheld from subject access reports until {}; recorded as entry {}",
                args.sequence,
                done.entry_id,
                args.until.trim(),
                done.restriction.id
            );
            0
        }
        Err(e) => fail(&format!("not restricted: {e}")),
    }
}

/// Lifts every restriction of one share.
pub async fn lift(args: LiftArgs) -> i32 {
    let dpo = match agency_of(&args.ledger, args.agency.as_ref())
        .and_then(|agency| cli_dpo(agency, &args.dpo))
    {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let ledger = match open(&args.ledger).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match crate::restriction::lift(
        &ledger,
        &dpo,
        "liaison audit lift",
        args.sequence,
        &args.reason,
    )
    .await
    {
        Ok((id, lifted)) => {
            println!(
                "{lifted} restriction(s) of entry {} lifted; recorded as entry {id}",
                args.sequence
            );
            0
        }
        Err(e) => fail(&format!("not lifted: {e}")),
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("error: {message}");
    1
}
