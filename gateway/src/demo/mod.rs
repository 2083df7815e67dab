//! `liaison demo`: the whole system on one machine in one process — two
//! demo identity providers (a police force and a council's children's
//! services), a synthetic legacy police records system, an agreement
//! between them, a SQLite ledger and the gateway — so a newcomer sees a
//! minimised, audited share within a minute. Nothing here holds real
//! personal data; every secret is generated at start-up.

pub mod idp;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use tokio::net::TcpListener;

use crate::{audit_cli, config::Config, server};

/// The agreement the demo shares under.
pub const DEMO_ISA: &str = "met-hackney-children";
/// The dataset the demo police force provides.
pub const DEMO_DATASET: &str = "met-police.records";
/// The audience tokens are issued for.
pub const AUDIENCE: &str = "liaison";
/// The demo ledger's signing key, in the demo directory; its public key is
/// beside it with `.pub` appended.
pub const SIGNING_KEY_FILE: &str = "ledger-signing.pem";

const POLICY: &str = include_str!("../../../deploy/demo/policy.toml");
const MAPPING: &str = include_str!("../../../connectors/examples/police-rms.toml");

/// What `liaison query --as NAME` needs to know about a running demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoState {
    /// The gateway's gRPC address, as a URL.
    pub gateway: String,
    /// Demo client profiles by name.
    pub clients: BTreeMap<String, DemoProfile>,
}

/// One demo client: where to get a token and with which credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoProfile {
    /// What the profile stands for.
    pub description: String,
    /// The provider's token endpoint.
    pub token_url: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret (random per run, development only).
    pub client_secret: String,
}

/// Options for `liaison demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the demo keeps its ledger, data and generated config.
    pub dir: PathBuf,
    /// The gateway's port.
    pub gateway_port: u16,
    /// The first demo provider's port; the second uses the next one.
    pub idp_port: u16,
    /// Number of synthetic people.
    pub people: usize,
}

struct AgencyDef {
    id: &'static str,
    name: &'static str,
    kind: &'static str,
    clients: &'static [(
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static str,
    )],
}

/// Profile name, client id, display name, roles, description.
const AGENCIES: &[AgencyDef] = &[
    AgencyDef {
        id: "met-police",
        name: "Metropolitan Police Service",
        kind: "police",
        clients: &[
            (
                "met-officer",
                "met-mash-system",
                "PC Jordan Reid (Met MASH)",
                &["officer"],
                "a police officer in the Met's MASH",
            ),
            (
                "met-dpo",
                "met-dpo-console",
                "Alex Morgan (Met DPO)",
                &["dpo"],
                "the Met's Data Protection Officer",
            ),
            (
                "met-governance",
                "met-ig-console",
                "Dana Lee (Met Information Governance)",
                &["information-governance"],
                "the Met's information-governance officer, who may suspend its agreements",
            ),
        ],
    },
    AgencyDef {
        id: "hackney-childrens",
        name: "Hackney Children and Families Service",
        kind: "local-authority",
        clients: &[
            (
                "hackney-social-worker",
                "hackney-mash-system",
                "Sam Okoro (Social Worker, Hackney MASH)",
                &["social-worker"],
                "a council social worker in the Hackney MASH",
            ),
            (
                "hackney-team-manager",
                "hackney-tm-system",
                "Ruth Adeyemi (Team Manager, Hackney)",
                &["social-worker", "team-manager"],
                "a council team manager",
            ),
            (
                "hackney-dpo",
                "hackney-dpo-console",
                "Priya Shah (Hackney DPO)",
                &["dpo"],
                "the council's Data Protection Officer",
            ),
        ],
    },
];

/// Runs the demo until Ctrl-C.
pub async fn run(opts: DemoOptions) -> Result<(), String> {
    tokio::fs::create_dir_all(&opts.dir)
        .await
        .map_err(|e| format!("cannot create `{}`: {e}", opts.dir.display()))?;
    let dir = opts
        .dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve `{}`: {e}", opts.dir.display()))?;

    let rms = dir.join("police-rms.db");
    if !rms.exists() {
        let url = format!("sqlite://{}?mode=rwc", rms.display());
        liaison_connectors::synthetic::generate_police_rms(&url, opts.people, 2026)
            .await
            .map_err(|e| format!("cannot generate the synthetic police system: {e}"))?;
    }

    // The ledger's signing key: made once, kept with the demo's ledger so
    // its signed heads keep verifying across runs.
    let key_path = dir.join(SIGNING_KEY_FILE);
    if !key_path.exists() {
        let key = liaison_ledger::SigningKey::generate().map_err(|e| e.to_string())?;
        let pem = key.to_pkcs8_pem().map_err(|e| e.to_string())?;
        audit_cli::write_private(&key_path, pem.as_bytes())
            .map_err(|e| format!("cannot write `{}`: {e}", key_path.display()))?;
        tokio::fs::write(
            audit_cli::public_path(&key_path),
            key.verifying_key().to_pem(),
        )
        .await
        .map_err(|e| e.to_string())?;
    }

    let mut idps = Vec::new();
    let mut profiles = BTreeMap::new();
    for (i, agency) in AGENCIES.iter().enumerate() {
        let port = opts.idp_port.saturating_add(u16::try_from(i).unwrap_or(0));
        let listener = bind(port).await?;
        let clients: Vec<idp::DemoClient> = agency
            .clients
            .iter()
            .map(|(_, id, name, roles, _)| {
                let mut claims = Map::new();
                claims.insert("name".into(), json!(name));
                claims.insert("roles".into(), json!(roles));
                claims.insert("agency".into(), json!(agency.id));
                idp::DemoClient {
                    client_id: (*id).to_owned(),
                    secret: random_secret(),
                    claims,
                }
            })
            .collect();
        let running = idp::start(listener, agency.id, AUDIENCE, clients).await?;
        for ((profile, _, _, _, description), client) in agency.clients.iter().zip(&running.clients)
        {
            profiles.insert(
                (*profile).to_owned(),
                DemoProfile {
                    description: (*description).to_owned(),
                    token_url: format!("{}/token", running.issuer),
                    client_id: client.client_id.clone(),
                    client_secret: client.secret.clone(),
                },
            );
        }
        idps.push(running);
    }

    tokio::fs::write(dir.join("policy.toml"), POLICY)
        .await
        .map_err(|e| e.to_string())?;
    tokio::fs::write(dir.join("police-rms.toml"), MAPPING)
        .await
        .map_err(|e| e.to_string())?;
    let config_path = dir.join("liaison.toml");
    let config_text = config_text(&idps, opts.gateway_port, &rms);
    tokio::fs::write(&config_path, &config_text)
        .await
        .map_err(|e| e.to_string())?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;

    let listener = bind(opts.gateway_port).await?;
    let running = server::start(config, Some(listener), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())?;
    let state = DemoState {
        gateway: format!("http://{}", running.addr),
        clients: profiles,
    };
    let state_json = serde_json::to_string_pretty(&state).map_err(|e| e.to_string())?;
    tokio::fs::write(dir.join("demo.json"), state_json)
        .await
        .map_err(|e| e.to_string())?;
    print_banner(&state, &idps, &dir);
    running.wait().await.map_err(|e| e.to_string())?;
    println!("demo stopped; its ledger stays in {}", dir.display());
    Ok(())
}

async fn bind(port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (is another demo running? choose other ports with --gateway-port / --idp-port)")
    })
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system RNG failing is not survivable for a secret; fall back
        // to a fresh UUID's randomness rather than a constant.
        return uuid::Uuid::new_v4().simple().to_string();
    }
    hex::encode(bytes)
}

/// The demo's configuration file, written out so a newcomer can read a
/// complete, working example next to the running system.
fn config_text(idps: &[idp::DemoIdp], gateway_port: u16, rms: &Path) -> String {
    let mut out = format!(
        "# Generated by `liaison demo`: a complete single-node configuration.\n\
         version = 1\n\n[server]\nlisten = \"127.0.0.1:{gateway_port}\"\n\n\
         [ledger]\nurl = \"sqlite://ledger.db\"\nsigning_key_file = \"{SIGNING_KEY_FILE}\"\n\
         seal_interval_ms = 1000\nwitness_file = \"ledger-witness.jsonl\"\n\n[policy]\nfile = \"policy.toml\"\n"
    );
    for a in AGENCIES {
        out.push_str(&format!(
            "\n[[agency]]\nid = \"{}\"\ndisplay_name = \"{}\"\nkind = \"{}\"\n",
            a.id, a.name, a.kind
        ));
    }
    for idp in idps {
        out.push_str(&format!(
            "\n[[issuer]]\nurl = \"{}\"\nagency = \"{}\"\naudiences = [\"{AUDIENCE}\"]\n\
             algorithms = [\"ES256\"]\nallow_insecure_http = true\n",
            idp.issuer, idp.agency
        ));
    }
    out.push_str(&format!(
        "\n[[connector]]\nkind = \"sql\"\nid = \"{DEMO_DATASET}\"\nagency = \"met-police\"\n\
         title = \"Met Police records (synthetic)\"\nsystem = \"Synthetic RMS\"\n\
         url = \"sqlite://{}?mode=ro\"\nmapping_file = \"police-rms.toml\"\n",
        rms.display()
    ));
    out
}

fn print_banner(state: &DemoState, idps: &[idp::DemoIdp], dir: &Path) {
    let exe = "cargo run -q --bin liaison --";
    println!();
    println!(
        "Liaison demo is running (development only: demo identity providers, synthetic data)."
    );
    println!();
    println!("  gateway (gRPC)   {}", state.gateway);
    for idp in idps {
        println!("  identity provider {:<18} {}", idp.agency, idp.issuer);
    }
    println!("  ledger           {}", dir.join("ledger.db").display());
    println!(
        "  ledger key       {} (public key for verifiers)",
        audit_cli::public_path(&dir.join(SIGNING_KEY_FILE)).display()
    );
    println!("  config           {}", dir.join("liaison.toml").display());
    println!();
    println!(
        "Demo clients (secrets are random for this run and saved in {}):",
        dir.join("demo.json").display()
    );
    for (name, p) in &state.clients {
        println!(
            "  {name:<22} client_id={:<22} secret={}  ({})",
            p.client_id, p.client_secret, p.description
        );
    }
    println!();
    println!("Try, in another terminal:");
    println!("  {exe} query --as hackney-social-worker datasets");
    println!(
        "  {exe} query --as hackney-social-worker search --family-name Marsh --dob 2013-05-14 \\\n      --purpose safeguarding-children --isa {DEMO_ISA} \\\n      --justification \"Section 47 enquiry following a school referral\""
    );
    println!(
        "  {exe} query --as hackney-social-worker records {DEMO_DATASET}:<id from the search> \\\n      --purpose safeguarding-children --isa {DEMO_ISA} \\\n      --justification \"Section 47 enquiry following a school referral\""
    );
    println!(
        "  {exe} query --as hackney-team-manager records {DEMO_DATASET}:<id from the search> \\\n      --purpose safeguarding-children --isa {DEMO_ISA} \\\n      --justification \"Child missing overnight, strategy discussion\" \\\n      --break-glass \"Child missing overnight with a high-risk adult, police cannot wait\""
    );
    println!("  {exe} query --as hackney-dpo audit --limit 5");
    println!(
        "  {exe} query --as met-governance agreement suspend {DEMO_ISA} --base 1 \\\n      --justification \"Paused while a data breach is investigated\""
    );
    println!(
        "  {exe} audit verify --config {}",
        dir.join("liaison.toml").display()
    );
    println!(
        "  {exe} audit export --config {0} --out ledger-export.jsonl\n  {exe} audit verify --export ledger-export.jsonl --public-key {1}",
        dir.join("liaison.toml").display(),
        audit_cli::public_path(&dir.join(SIGNING_KEY_FILE)).display()
    );
    println!();
    println!("Press Ctrl-C to stop.");
}

/// Reads the state of a running demo.
pub fn load_state(dir: &Path) -> Result<DemoState, String> {
    let path = dir.join("demo.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read `{}` ({e}); is `liaison demo` running?",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not a demo state file: {e}", path.display()))
}
