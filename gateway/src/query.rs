//! `liaison query`: a command-line client of the published API. It gets a
//! token from the caller's identity provider (client credentials), calls
//! the gateway, and prints the minimised answer with its audit receipt, so
//! the whole life of a share can be seen from a terminal.

use std::{fmt::Write as _, path::PathBuf};

use clap::{Args, Subcommand};
use liaison_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient,
    oversight_service_client::OversightServiceClient, sharing_service_client::SharingServiceClient,
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};
use tonic_types::StatusExt;

use crate::demo;

/// Options for `liaison query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Use a profile of the running `liaison demo` (e.g.
    /// `hackney-social-worker`, `hackney-dpo`, `met-officer`).
    #[arg(long = "as", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// The demo's directory, for `--as`.
    #[arg(long, default_value = ".liaison/demo")]
    pub demo_dir: PathBuf,
    /// The gateway's address (default: the demo's).
    #[arg(long)]
    pub gateway: Option<String>,
    /// The identity provider's token endpoint (instead of `--as`).
    #[arg(long)]
    pub token_url: Option<String>,
    /// The OAuth client id (instead of `--as`).
    #[arg(long)]
    pub client_id: Option<String>,
    /// The OAuth client secret (instead of `--as`).
    #[arg(long, env = "LIAISON_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// What to ask.
    #[command(subcommand)]
    pub command: QueryCommand,
}

/// The share context flags every share needs.
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The purpose, e.g. `safeguarding-children`.
    #[arg(long, default_value = "")]
    pub purpose: String,
    /// Why this share is necessary and proportionate.
    #[arg(long, default_value = "")]
    pub justification: String,
    /// The Information Sharing Agreement relied on.
    #[arg(long, default_value = "")]
    pub isa: String,
    /// Your case or referral reference.
    #[arg(long, default_value = "")]
    pub case_reference: String,
    /// Invoke emergency access beyond your normal fields, for an immediate
    /// risk to life or of serious harm, giving REASON (at least 20
    /// characters). Honoured only where the agreement allows it for your
    /// role; the share is marked in the ledger and a DPO must review it.
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
}

/// `liaison query …` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// List the datasets you may query.
    Datasets,
    /// List the agreements.
    Agreements,
    /// Search for a person.
    Search {
        /// Family name.
        #[arg(long, default_value = "")]
        family_name: String,
        /// Given name (or its start).
        #[arg(long, default_value = "")]
        given_name: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long)]
        dob: Option<String>,
        /// Postcode.
        #[arg(long, default_value = "")]
        postcode: String,
        /// NHS number.
        #[arg(long)]
        nhs_number: Option<String>,
        /// The share context.
        #[command(flatten)]
        context: ContextArgs,
    },
    /// Read the records about a person found by a search.
    Records {
        /// The person reference from a search.
        person_id: String,
        /// The share context.
        #[command(flatten)]
        context: ContextArgs,
    },
    /// Show recent audit entries (needs the `dpo` or `auditor` role).
    Audit {
        /// How many.
        #[arg(long, default_value_t = 10)]
        limit: i32,
    },
    /// Show one audit entry and check its inclusion proof (needs the `dpo`
    /// or `auditor` role).
    Entry {
        /// The entry id from a receipt.
        entry_id: String,
    },
    /// Read an agreement's history, or change it (changes need the
    /// providing agency's `information-governance` role).
    Agreement {
        /// What to do.
        #[command(subcommand)]
        command: AgreementCommand,
    },
    /// Read an issuer's history in the trust registry, or change it
    /// (changes need the `identity-admin` role of the issuer's agency).
    Issuer {
        /// What to do.
        #[command(subcommand)]
        command: IssuerCommand,
    },
}

/// `liaison query issuer …` subcommands.
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Every version of an issuer's terms, who made it and why.
    History {
        /// The issuer URL, exactly as tokens carry it in `iss`.
        issuer_url: String,
    },
    /// Onboard an issuer, or replace its terms, from a file holding one
    /// `[[issuer]]` table as the configuration file writes it.
    Propose {
        /// The file.
        file: PathBuf,
        /// The version these terms replace (0 for a new issuer).
        #[arg(long)]
        base: u32,
        /// Why the change is made.
        #[arg(long)]
        justification: String,
    },
    /// Trust a suspended issuer again.
    Activate(IssuerStatusArgs),
    /// Refuse an issuer's tokens at once, keeping its terms.
    Suspend(IssuerStatusArgs),
    /// Stop trusting an issuer; only a new proposal brings it back.
    Remove(IssuerStatusArgs),
}

impl IssuerCommand {
    /// The status a status change asks for; `None` for other commands.
    fn requested_status(&self) -> Option<pb::IssuerStatus> {
        match self {
            Self::Activate(_) => Some(pb::IssuerStatus::Active),
            Self::Suspend(_) => Some(pb::IssuerStatus::Suspended),
            Self::Remove(_) => Some(pb::IssuerStatus::Removed),
            Self::History { .. } | Self::Propose { .. } => None,
        }
    }
}

/// Which issuer, at which version, and why.
#[derive(Debug, Args)]
pub struct IssuerStatusArgs {
    /// The issuer URL.
    pub issuer_url: String,
    /// The version the change applies to, as you last read it.
    #[arg(long)]
    pub base: u32,
    /// Why the change is made.
    #[arg(long)]
    pub justification: String,
}

/// `liaison query agreement …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgreementCommand {
    /// Every version of an agreement, who made it and why.
    History {
        /// The agreement's id.
        isa_id: String,
    },
    /// Propose new terms from a file holding one `[[agreement]]` table.
    Propose {
        /// The file.
        file: PathBuf,
        /// The version these terms replace (0 for a new agreement).
        #[arg(long)]
        base: u32,
        /// Why the change is made.
        #[arg(long)]
        justification: String,
    },
    /// Put an agreement (back) in force.
    Activate(StatusArgs),
    /// Stop all sharing under an agreement at once.
    Suspend(StatusArgs),
    /// End an agreement for good.
    End(StatusArgs),
}

/// Which agreement, at which version, and why.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agreement's id.
    pub isa_id: String,
    /// The version the change applies to, as you last read it.
    #[arg(long)]
    pub base: u32,
    /// Why the change is made.
    #[arg(long)]
    pub justification: String,
}

/// Runs a query; returns the exit code.
pub async fn run(args: QueryArgs) -> i32 {
    match run_inner(args).await {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

async fn run_inner(args: QueryArgs) -> Result<String, String> {
    let (gateway, token_url, client_id, secret) = match &args.profile {
        Some(name) => {
            let state = demo::load_state(&args.demo_dir)?;
            let p = state.clients.get(name).ok_or_else(|| {
                format!(
                    "no demo profile `{name}`; try one of: {}",
                    state.clients.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            (
                args.gateway.clone().unwrap_or(state.gateway),
                p.token_url.clone(),
                p.client_id.clone(),
                p.client_secret.clone(),
            )
        }
        None => (
            args.gateway
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:50051".into()),
            args.token_url
                .clone()
                .ok_or("give --as PROFILE or --token-url")?,
            args.client_id
                .clone()
                .ok_or("give --as PROFILE or --client-id")?,
            args.client_secret
                .clone()
                .ok_or("give --as PROFILE or --client-secret")?,
        ),
    };
    let token = fetch_token(&token_url, &client_id, &secret).await?;
    let channel = Channel::from_shared(gateway.clone())
        .map_err(|e| format!("bad gateway address `{gateway}`: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach the gateway at {gateway}: {e}"))?;
    let bearer: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| "token is not a valid header value".to_string())?;
    let authed = move |mut req: Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    };
    let mut out = String::new();
    match args.command {
        QueryCommand::Datasets => {
            let mut client = SharingServiceClient::with_interceptor(channel, authed);
            let r = client
                .list_datasets(pb::ListDatasetsRequest::default())
                .await
                .map_err(explain)?
                .into_inner();
            if r.grants.is_empty() {
                out.push_str("no datasets are available to you\n");
            }
            for g in r.grants {
                let _ = writeln!(
                    out,
                    "{} — {}\n  provided by {} under {} v{} for {}\n  actions: {}\n  fields: {}\n  legal basis: {}\n",
                    g.dataset_id,
                    g.title,
                    g.provider_agency_id,
                    g.isa_id,
                    g.isa_version,
                    g.purposes.join(", "),
                    g.actions.join(", "),
                    g.fields.join(", "),
                    g.legal_basis
                );
            }
        }
        QueryCommand::Agreements => {
            let mut client = AdminServiceClient::with_interceptor(channel, authed);
            let r = client
                .list_agreements(pb::ListAgreementsRequest::default())
                .await
                .map_err(explain)?
                .into_inner();
            for a in r.agreements {
                let _ = writeln!(
                    out,
                    "{} v{} — {}\n  {} → {}\n  purposes: {}\n  legal basis: {}\n",
                    a.isa_id,
                    a.version,
                    a.title,
                    a.provider_agency_id,
                    a.recipient_agency_ids.join(", "),
                    a.purposes.join(", "),
                    a.legal_basis
                );
            }
        }
        QueryCommand::Search {
            family_name,
            given_name,
            dob,
            postcode,
            nhs_number,
            context,
        } => {
            let date_of_birth = dob.as_deref().map(parse_date).transpose()?;
            let identifiers = nhs_number
                .map(|v| pb::Identifier {
                    scheme: pb::IdentifierScheme::NhsNumber as i32,
                    value: v,
                    system: String::new(),
                })
                .into_iter()
                .collect();
            let mut client = SharingServiceClient::with_interceptor(channel, authed);
            let r = client
                .search_persons(pb::SearchPersonsRequest {
                    context: Some(share_context(context)),
                    query: Some(pb::PersonQuery {
                        given_name,
                        family_name,
                        date_of_birth,
                        postcode,
                        identifiers,
                    }),
                    dataset_ids: Vec::new(),
                    page_size: 0,
                })
                .await
                .map_err(explain)?
                .into_inner();
            let _ = writeln!(out, "{} match(es)", r.matches.len());
            for m in &r.matches {
                if let Some(p) = &m.person {
                    let _ = writeln!(out, "\n{} (confidence {:.2})", p.person_id, m.confidence);
                    render_person(&mut out, p);
                }
            }
            render_gaps(&mut out, &r.gaps);
            render_receipt(&mut out, r.receipt.as_ref());
        }
        QueryCommand::Records { person_id, context } => {
            let mut client = SharingServiceClient::with_interceptor(channel, authed);
            let r = client
                .get_records(pb::GetRecordsRequest {
                    context: Some(share_context(context)),
                    person_id,
                    kinds: Vec::new(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(p) = &r.person {
                let _ = writeln!(out, "{}", p.person_id);
                render_person(&mut out, p);
            }
            let _ = writeln!(out, "\n{} record(s)", r.records.len());
            for rec in &r.records {
                render_record(&mut out, rec);
            }
            render_gaps(&mut out, &r.gaps);
            render_receipt(&mut out, r.receipt.as_ref());
        }
        QueryCommand::Audit { limit } => {
            let mut client = OversightServiceClient::with_interceptor(channel, authed);
            let r = client
                .list_audit_entries(pb::ListAuditEntriesRequest {
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(explain)?
                .into_inner();
            for le in r.entries {
                let e = le.entry.unwrap_or_default();
                let p = e.principal.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "#{:<5} {}  {:<14} {:<28} {:<24} isa={} outcome={}{}",
                    le.sequence,
                    e.recorded_at.map(fmt_ts).unwrap_or_default(),
                    p.agency_id,
                    if p.display_name.is_empty() {
                        p.subject
                    } else {
                        p.display_name
                    },
                    e.purpose,
                    e.isa_id,
                    pb::AuditOutcome::try_from(e.outcome)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("AUDIT_OUTCOME_"),
                    if e.error_reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", e.error_reason)
                    }
                );
            }
        }
        QueryCommand::Agreement { command } => {
            let mut client = AdminServiceClient::with_interceptor(channel, authed);
            agreement(&mut client, command, &mut out).await?;
        }
        QueryCommand::Issuer { command } => {
            let mut client = AdminServiceClient::with_interceptor(channel, authed);
            issuer(&mut client, command, &mut out).await?;
        }
        QueryCommand::Entry { entry_id } => {
            let mut client = OversightServiceClient::with_interceptor(channel, authed);
            let le = client
                .get_audit_entry(pb::GetAuditEntryRequest {
                    entry_id: entry_id.clone(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .entry
                .unwrap_or_default();
            let proof = client
                .get_inclusion_proof(pb::GetInclusionProofRequest {
                    entry_id,
                    tree_size: 0,
                })
                .await
                .map_err(explain)?
                .into_inner();
            let _ = writeln!(out, "{:#?}", le.entry.unwrap_or_default());
            let verified = verify_proof(&le.canonical, &proof);
            let _ = writeln!(
                out,
                "\nleaf {} of tree size {}: inclusion proof {}",
                proof.leaf_index,
                proof.tree_size,
                if verified {
                    "VERIFIED against the root"
                } else {
                    "DOES NOT VERIFY"
                }
            );
        }
    }
    Ok(out)
}

/// Recomputes the leaf hash from the canonical bytes and checks the audit
/// path leads to the root.
pub fn verify_proof(canonical: &[u8], proof: &pb::GetInclusionProofResponse) -> bool {
    let leaf = liaison_ledger::merkle::leaf_hash(canonical);
    if hex::encode(leaf) != proof.leaf_hash {
        return false;
    }
    let path: Option<Vec<[u8; 32]>> = proof
        .audit_path
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
        })
        .collect();
    let root = hex::decode(&proof.root_hash)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    match (path, root) {
        (Some(path), Some(root)) => liaison_ledger::merkle::verify_inclusion(
            &leaf,
            proof.leaf_index,
            proof.tree_size,
            &path,
            &root,
        )
        .is_ok(),
        _ => false,
    }
}

async fn fetch_token(url: &str, client_id: &str, secret: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        access_token: String,
    }
    let response = reqwest::Client::new()
        .post(url)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| format!("cannot reach the identity provider at {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "the identity provider refused a token: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ));
    }
    response
        .json::<TokenResponse>()
        .await
        .map(|t| t.access_token)
        .map_err(|e| format!("the identity provider's answer is not a token response: {e}"))
}

async fn agreement<S>(
    client: &mut AdminServiceClient<S>,
    command: AgreementCommand,
    out: &mut String,
) -> Result<(), String>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let status = |args: StatusArgs, status: pb::AgreementStatus| pb::SetAgreementStatusRequest {
        isa_id: args.isa_id,
        base_version: args.base,
        status: status as i32,
        justification: args.justification,
    };
    let changed = match command {
        AgreementCommand::History { isa_id } => {
            let r = client
                .list_agreement_versions(pb::ListAgreementVersionsRequest { isa_id })
                .await
                .map_err(explain)?
                .into_inner();
            for v in r.versions {
                let a = v.agreement.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "v{:<3} {}  {:<10} by {} ({}): {}\n      {}  audit entry {}",
                    a.version,
                    v.recorded_at.map(fmt_ts).unwrap_or_default(),
                    status_name(a.status),
                    v.changed_by,
                    v.changed_by_agency_id,
                    v.justification,
                    v.content_hash,
                    v.audit_entry_id
                );
            }
            return Ok(());
        }
        AgreementCommand::Propose {
            file,
            base,
            justification,
        } => {
            let agreement_toml = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            let r = client
                .propose_agreement(pb::ProposeAgreementRequest {
                    agreement_toml,
                    base_version: base,
                    justification,
                })
                .await
                .map_err(explain)?
                .into_inner();
            (r.agreement, r.receipt)
        }
        AgreementCommand::Activate(args) => {
            let r = client
                .set_agreement_status(status(args, pb::AgreementStatus::Active))
                .await
                .map_err(explain)?
                .into_inner();
            (r.agreement, r.receipt)
        }
        AgreementCommand::Suspend(args) => {
            let r = client
                .set_agreement_status(status(args, pb::AgreementStatus::Suspended))
                .await
                .map_err(explain)?
                .into_inner();
            (r.agreement, r.receipt)
        }
        AgreementCommand::End(args) => {
            let r = client
                .set_agreement_status(status(args, pb::AgreementStatus::Expired))
                .await
                .map_err(explain)?
                .into_inner();
            (r.agreement, r.receipt)
        }
    };
    let (agreement, receipt) = changed;
    let a = agreement.unwrap_or_default();
    let _ = writeln!(
        out,
        "{} is now version {} ({})",
        a.isa_id,
        a.version,
        status_name(a.status)
    );
    render_receipt(out, receipt.as_ref());
    Ok(())
}

async fn issuer<S>(
    client: &mut AdminServiceClient<S>,
    command: IssuerCommand,
    out: &mut String,
) -> Result<(), String>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let status = command.requested_status();
    let changed = match command {
        IssuerCommand::History { issuer_url } => {
            let r = client
                .list_issuer_versions(pb::ListIssuerVersionsRequest { issuer_url })
                .await
                .map_err(explain)?
                .into_inner();
            for v in r.versions {
                let i = v.issuer.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "v{:<3} {}  {:<9} for {} by {} ({}): {}\n      {}  audit entry {}",
                    i.version,
                    v.recorded_at.map(fmt_ts).unwrap_or_default(),
                    issuer_status_name(i.status),
                    i.agency_id,
                    v.changed_by,
                    v.changed_by_agency_id,
                    v.justification,
                    v.content_hash,
                    v.audit_entry_id
                );
            }
            return Ok(());
        }
        IssuerCommand::Propose {
            file,
            base,
            justification,
        } => {
            let issuer_toml = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            let r = client
                .propose_issuer(pb::ProposeIssuerRequest {
                    issuer_toml,
                    base_version: base,
                    justification,
                })
                .await
                .map_err(explain)?
                .into_inner();
            (r.issuer, r.receipt)
        }
        IssuerCommand::Activate(args)
        | IssuerCommand::Suspend(args)
        | IssuerCommand::Remove(args) => {
            let r = client
                .set_issuer_status(issuer_status(args, status.unwrap_or_default()))
                .await
                .map_err(explain)?
                .into_inner();
            (r.issuer, r.receipt)
        }
    };
    let (issuer, receipt) = changed;
    let i = issuer.unwrap_or_default();
    let _ = writeln!(
        out,
        "{} ({}) is now version {} ({})",
        i.issuer_url,
        i.agency_id,
        i.version,
        issuer_status_name(i.status)
    );
    render_receipt(out, receipt.as_ref());
    Ok(())
}

fn issuer_status(args: IssuerStatusArgs, status: pb::IssuerStatus) -> pb::SetIssuerStatusRequest {
    pb::SetIssuerStatusRequest {
        issuer_url: args.issuer_url,
        base_version: args.base,
        status: status as i32,
        justification: args.justification,
    }
}

/// An issuer's status as `liaison query` prints it (`active`, …).
fn issuer_status_name(status: i32) -> String {
    pb::IssuerStatus::try_from(status)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("ISSUER_STATUS_")
        .to_ascii_lowercase()
}

/// An agreement's status as its policy file spells it (`active`, …).
fn status_name(status: i32) -> String {
    pb::AgreementStatus::try_from(status)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("AGREEMENT_STATUS_")
        .to_ascii_lowercase()
}

fn share_context(c: ContextArgs) -> pb::ShareContext {
    pb::ShareContext {
        purpose: c.purpose,
        justification: c.justification,
        isa_id: c.isa,
        case_reference: c.case_reference,
        on_behalf_of: None,
        correlation_id: String::new(),
        break_glass: c.break_glass.map(|reason| pb::BreakGlass { reason }),
    }
}

fn parse_date(s: &str) -> Result<pb::Date, String> {
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("`{s}` is not a date like 2013-05-14"))?;
    Ok(pb::Date {
        year: d.year(),
        month: i32::from(u8::from(d.month())),
        day: i32::from(d.day()),
    })
}

/// A refusal in words: code, reason, field and the audit entry recording it.
fn explain(status: tonic::Status) -> String {
    let details = status.get_error_details();
    let mut out = format!("refused: {:?}: {}", status.code(), status.message());
    if let Some(info) = details.error_info() {
        let _ = write!(out, "\n  reason: {} ({})", info.reason, info.domain);
        if let Some(id) = info.metadata.get("audit_entry_id") {
            let _ = write!(out, "\n  recorded in the audit ledger as entry {id}");
        }
    }
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            let _ = write!(out, "\n  field `{}`: {}", v.field, v.description);
        }
    }
    out
}

fn fmt_date(d: &pb::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

fn fmt_ts(t: prost_types::Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.seconds)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn render_person(out: &mut String, p: &pb::Person) {
    for n in &p.names {
        let _ = writeln!(out, "  name: {} {}", n.given_names, n.family_name);
    }
    if let Some(d) = &p.date_of_birth {
        let _ = writeln!(out, "  date of birth: {}", fmt_date(d));
    }
    for a in &p.addresses {
        let _ = writeln!(
            out,
            "  address: {} {} {}",
            a.lines.join(", "),
            a.locality,
            a.postcode
        );
    }
    for i in &p.identifiers {
        let scheme = pb::IdentifierScheme::try_from(i.scheme)
            .unwrap_or_default()
            .as_str_name()
            .trim_start_matches("IDENTIFIER_SCHEME_");
        let _ = writeln!(out, "  identifier: {scheme} {}", i.value);
    }
    if !p.gender.is_empty() {
        let _ = writeln!(out, "  gender: {}", p.gender);
    }
}

fn render_record(out: &mut String, r: &pb::Record) {
    use pb::record::Body;
    let _ = write!(out, "\n  {} ", r.record_id);
    match &r.body {
        Some(Body::Incident(i)) => {
            let _ = writeln!(
                out,
                "incident {} {} {} {}\n    {}",
                i.reference,
                i.category,
                i.occurred_at.map(fmt_ts).unwrap_or_default(),
                i.person_role,
                i.summary
            );
        }
        Some(Body::WarningMarker(w)) => {
            let _ = writeln!(out, "warning marker {} {}", w.marker, w.description);
        }
        Some(Body::SafeguardingConcern(s)) => {
            let _ = writeln!(
                out,
                "safeguarding concern {} {} {}\n    {}",
                s.category,
                s.status,
                s.raised_at.map(fmt_ts).unwrap_or_default(),
                s.summary
            );
        }
        Some(Body::RiskAssessment(a)) => {
            let level = pb::RiskLevel::try_from(a.level)
                .unwrap_or_default()
                .as_str_name()
                .trim_start_matches("RISK_LEVEL_");
            let _ = writeln!(
                out,
                "risk assessment {} {} {}\n    {}",
                a.framework,
                level,
                a.assessed_at.map(fmt_ts).unwrap_or_default(),
                a.summary
            );
        }
        Some(Body::Relationship(rel)) => {
            let _ = writeln!(
                out,
                "relationship {} {} {}",
                rel.relationship, rel.related_name, rel.related_person_id
            );
        }
        None => {
            let _ = writeln!(out, "(no body)");
        }
    }
    for h in &r.handling_instructions {
        let _ = writeln!(out, "    handling: {h}");
    }
}

fn render_gaps(out: &mut String, gaps: &[pb::SourceGap]) {
    for g in gaps {
        let _ = writeln!(
            out,
            "\nPARTIAL: source {} missing ({}: {})",
            g.dataset_id, g.reason, g.message
        );
    }
}

fn render_receipt(out: &mut String, r: Option<&pb::Receipt>) {
    if let Some(r) = r {
        let _ = writeln!(
            out,
            "\naudit receipt: entry {} (#{} in the ledger, leaf hash {})",
            r.entry_id, r.sequence, r.leaf_hash
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn context_of(args: &[&str]) -> pb::ShareContext {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Query(query) = cli.command else {
            panic!("not a query: {args:?}");
        };
        match query.command {
            QueryCommand::Records { context, .. } => share_context(context),
            other => panic!("not a records query: {other:?}"),
        }
    }

    #[test]
    fn break_glass_sends_its_reason_and_is_absent_unless_given() {
        let base = [
            "liaison",
            "query",
            "--as",
            "hackney-team-manager",
            "records",
            "met-police.records:1",
            "--purpose",
            "safeguarding-children",
        ];
        assert_eq!(context_of(&base).break_glass, None);
        let mut invoked = base.to_vec();
        invoked.extend([
            "--break-glass",
            "Child missing overnight with a high-risk adult",
        ]);
        assert_eq!(
            context_of(&invoked).break_glass,
            Some(pb::BreakGlass {
                reason: "Child missing overnight with a high-risk adult".into()
            })
        );
    }

    #[test]
    fn issuer_status_commands_send_the_status_they_name() {
        for (verb, status) in [
            ("suspend", pb::IssuerStatus::Suspended),
            ("remove", pb::IssuerStatus::Removed),
            ("activate", pb::IssuerStatus::Active),
        ] {
            let cli = Cli::try_parse_from([
                "liaison",
                "query",
                "--as",
                "hackney-identity-admin",
                "issuer",
                verb,
                "https://sso.hackney.example/realms/schools",
                "--base",
                "3",
                "--justification",
                "Signing key reported compromised",
            ])
            .unwrap();
            let Command::Query(query) = cli.command else {
                panic!("not a query");
            };
            let QueryCommand::Issuer { command } = query.command else {
                panic!("not an issuer command");
            };
            assert_eq!(command.requested_status(), Some(status), "{verb}");
            let (IssuerCommand::Suspend(args)
            | IssuerCommand::Remove(args)
            | IssuerCommand::Activate(args)) = command
            else {
                panic!("not a status change");
            };
            let request = issuer_status(args, status);
            assert_eq!(request.base_version, 3);
            assert_eq!(
                request.issuer_url,
                "https://sso.hackney.example/realms/schools"
            );
        }
        let history = Cli::try_parse_from([
            "liaison",
            "query",
            "issuer",
            "history",
            "https://idp.example",
        ])
        .unwrap();
        let Command::Query(query) = history.command else {
            panic!("not a query");
        };
        let QueryCommand::Issuer { command } = query.command else {
            panic!("not an issuer command");
        };
        assert_eq!(command.requested_status(), None);
        assert_eq!(
            issuer_status_name(pb::IssuerStatus::Suspended as i32),
            "suspended"
        );
    }
}
