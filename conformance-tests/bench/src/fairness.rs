//! Per-agency fairness: one agency flooding the gateway far beyond its
//! `[server.limits]` rate must be refused `RESOURCE_EXHAUSTED` while another
//! agency's latency holds. One gateway, two recipient agencies each with
//! its own identity provider; the measured agency sends `GetRecords` open
//! loop well under its quota, alone and then beside the flood, in
//! interleaved rounds.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tokio::sync::Mutex;
use tonic::{
    Code,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::{
    Cli, fixture,
    issuer::Issuer,
    load::{self, Latency},
    process::{self, Server},
    report,
    run::{self, Env},
};

/// The agency that floods: a second borough's children's services, added
/// to the demo agreement on the same terms as the first.
pub const FLOODER: &str = "camden-childrens";

/// What was asked of the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// `agency_requests_per_second`, the same for every agency.
    pub quota: u32,
    /// `agency_burst`.
    pub burst: u32,
    /// The measured agency's rate.
    pub rate: f64,
    /// The flooding agency's rate.
    pub flood_rate: f64,
    /// Each run's length.
    pub run: Duration,
}

/// The flooding agency's calls in one run.
#[derive(Debug, Clone, Default)]
pub struct Flood {
    /// Calls sent.
    pub sent: u64,
    /// Calls answered with records.
    pub admitted: u64,
    /// Calls refused `RESOURCE_EXHAUSTED`.
    pub exhausted: u64,
    /// Any other failure, by gRPC code.
    pub other: BTreeMap<String, u64>,
}

/// One round: the measured agency alone, and beside the flood.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Alone.
    pub alone: Latency,
    /// During the flood.
    pub during: Latency,
    /// The flood.
    pub flood: Flood,
    /// Whether the flood ran first this round.
    pub flood_first: bool,
    /// The gateway's CPU use, in cores, alone and during the flood.
    pub cores: (f64, f64),
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// What was asked.
    pub settings: Settings,
    /// The rounds.
    pub rounds: Vec<Round>,
}

/// Runs the scenario and writes its report.
pub async fn bench(cli: &Cli) -> Result<(), String> {
    let started = std::time::Instant::now();
    let env = run::env(cli).await?;
    let quota = cli.agency_rate.max(4);
    let settings = Settings {
        quota,
        burst: (quota / 10).max(1),
        rate: f64::from(quota) / 4.0,
        flood_rate: f64::from(quota) * cli.flood_factor.max(1.0),
        run: if cli.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(cli.seconds.unwrap_or(10))
        },
    };
    let flooder = Issuer::start().await?;
    let flood_token = flooder.token(fixture::AUDIENCE, "camden-case-system", &["social-worker"])?;
    let flood_auth: MetadataValue<Ascii> = format!("Bearer {flood_token}")
        .parse()
        .map_err(|_| "the token is not a header value")?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = start_gateway(&env, &flooder, settings, dir.path()).await?;
    let checked = run::first_answers(server.addr, &env.auth).await?;
    // The flooder may read the same person: the agreement names it too.
    run::first_answers(server.addr, &flood_auth).await?;
    let measured = clients(server.addr).await?;
    let flooding = clients(server.addr).await?;

    let load_before = run::load_average();
    let mut results = Results {
        settings,
        rounds: Vec::new(),
    };
    for round in 0..cli.rounds.max(3) {
        // ABBA: the flood goes first every other round, so a drift in the
        // machine's load does not always favour one side.
        let flood_first = round % 2 == 1;
        let mut r = Round {
            flood_first,
            ..Round::default()
        };
        for flood in [flood_first, !flood_first] {
            eprintln!(
                "round {}: {}",
                round + 1,
                if flood { "during the flood" } else { "alone" }
            );
            let cpu = server.cpu();
            if flood {
                let (during, f) = tokio::join!(
                    steady(&measured, &env.auth, &checked.get, settings),
                    flood_run(&flooding, &flood_auth, &checked.get, settings),
                );
                r.during = during;
                r.flood = f;
            } else {
                r.alone = steady(&measured, &env.auth, &checked.get, settings).await;
            }
            let cores = server.cpu().saturating_sub(cpu).as_secs_f64() / settings.run.as_secs_f64();
            if flood {
                r.cores.1 = cores;
            } else {
                r.cores.0 = cores;
            }
            // Let the flooder's bucket and the gateway's queues settle.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        results.rounds.push(r);
    }
    let load_after = run::load_average();
    server.stop().await;

    let block = report::fairness::render(
        &results,
        &report::fairness::RunInfo {
            quick: cli.quick,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            load: (load_before, load_after),
            elapsed: started.elapsed(),
        },
    );
    println!("{block}");
    if !cli.no_write {
        report::append_to(
            &cli.output,
            report::fairness::SECTION,
            report::fairness::INTRO,
            &block,
        )?;
        eprintln!("appended to {}", cli.output.display());
    }
    Ok(())
}

/// The gateway with both recipients, the limits, the in-memory connector
/// and a SQLite ledger in `dir`.
async fn start_gateway(
    env: &Env,
    flooder: &Issuer,
    settings: Settings,
    dir: &std::path::Path,
) -> Result<Server, String> {
    let demo = std::fs::read_to_string(env.repo.join("deploy/demo/policy.toml"))
        .map_err(|e| format!("deploy/demo/policy.toml: {e}"))?;
    let policy = fixture::policy_with_recipient(&fixture::policy(&demo), FLOODER)
        .ok_or("the demo agreement's recipients are not where the bench expects them")?;
    std::fs::write(dir.join("policy.toml"), policy).map_err(|e| e.to_string())?;
    let people = 1_000;
    let folder = run::legacy_export(env, people)?;
    let mapping = env.repo.join("connectors/examples/council-csv.toml");
    let addr = process::free_addr()?;
    let text = fixture::config_with(
        &addr.to_string(),
        &format!("sqlite://{}", dir.join("ledger.db").display()),
        &[
            fixture::Recipient {
                agency: fixture::RECIPIENT,
                name: "Hackney Children and Families Service",
                issuer: &env.issuer_url,
            },
            fixture::Recipient {
                agency: FLOODER,
                name: "Camden Children's Services",
                issuer: &flooder.url,
            },
        ],
        fixture::Limits {
            rate: settings.quota,
            burst: settings.burst,
            concurrent: 256,
            in_flight: 1024,
        },
        &fixture::Source::Memory {
            folder: &folder,
            mapping: &mapping,
        },
    );
    let config = dir.join("liaison.toml");
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let config_arg = config.display().to_string();
    Server::spawn(
        &env.gateway_bin,
        &["serve", "--config", &config_arg],
        addr,
        &dir.join("gateway.log"),
        run::serving,
    )
    .await
}

/// Four connections of one agency's system.
async fn clients(addr: std::net::SocketAddr) -> Result<Arc<Vec<Channel>>, String> {
    let mut out = Vec::with_capacity(4);
    for _ in 0..4 {
        out.push(run::channel(addr).await?);
    }
    Ok(Arc::new(out))
}

/// The measured agency, open loop at its steady rate.
async fn steady(
    channels: &Arc<Vec<Channel>>,
    auth: &MetadataValue<Ascii>,
    get: &pb::GetRecordsRequest,
    settings: Settings,
) -> Latency {
    let channels = channels.clone();
    let auth = auth.clone();
    let get = get.clone();
    load::open_loop(settings.rate, settings.run, move |i| {
        let channel = channels.get(i as usize % channels.len().max(1)).cloned();
        let req = run::authed(&auth, get.clone());
        async move {
            match channel {
                Some(c) => SharingServiceClient::new(c).get_records(req).await.is_ok(),
                None => false,
            }
        }
    })
    .await
}

/// The flooding agency, open loop at its flood rate, every answer's code
/// counted.
async fn flood_run(
    channels: &Arc<Vec<Channel>>,
    auth: &MetadataValue<Ascii>,
    get: &pb::GetRecordsRequest,
    settings: Settings,
) -> Flood {
    let exhausted = Arc::new(AtomicU64::new(0));
    let other: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let channels = channels.clone();
    let auth = auth.clone();
    let get = get.clone();
    let latency = {
        let exhausted = exhausted.clone();
        let other = other.clone();
        load::open_loop(settings.flood_rate, settings.run, move |i| {
            let channel = channels.get(i as usize % channels.len().max(1)).cloned();
            let req = run::authed(&auth, get.clone());
            let exhausted = exhausted.clone();
            let other = other.clone();
            async move {
                let Some(c) = channel else { return false };
                match SharingServiceClient::new(c).get_records(req).await {
                    Ok(_) => true,
                    Err(s) if s.code() == Code::ResourceExhausted => {
                        exhausted.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    Err(s) => {
                        // The message names the cause of a transport
                        // failure, which the code alone (`Unknown`) does not.
                        let message: String = s
                            .message()
                            .chars()
                            .take(80)
                            .collect::<String>()
                            .replace('|', "/");
                        *other
                            .lock()
                            .await
                            .entry(format!("{:?} `{message}`", s.code()))
                            .or_insert(0) += 1;
                        false
                    }
                }
            }
        })
        .await
    };
    let exhausted = exhausted.load(Ordering::Relaxed);
    let mut other = other.lock().await.clone();
    // Calls the generator gave up waiting for count as failures too.
    let unanswered = latency
        .errors
        .saturating_sub(exhausted + other.values().sum::<u64>());
    if unanswered > 0 {
        other.insert("unanswered".into(), unanswered);
    }
    Flood {
        sent: latency.done + latency.errors,
        admitted: latency.done,
        exhausted,
        other,
    }
}
