//! Per-agency fairness: one agency flooding the gateway far beyond its
//! `[server.limits]` rate must be refused `RESOURCE_EXHAUSTED` while another
//! agency's latency holds. One gateway, two recipient agencies each with
//! its own identity provider; the measured agency sends `GetRecords` open
//! loop well under its quota, alone and then beside the flood, in
//! interleaved rounds. The flood comes from h2load (`--rps`), an external
//! process whose own CPU is a small share of the two cores; what became of
//! its calls is read from the gateway's `liaison_admission_refusals_total`
//! on its admin listener.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tonic::{
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

/// How the other agency loads the gateway while the measured one runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beside {
    /// Not at all.
    Alone,
    /// At exactly its quota: all admitted, nothing refused.
    AtQuota,
    /// At the flood rate.
    Flood,
}

/// One round: the measured agency alone, beside the other agency at its
/// quota, and beside its flood.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Alone.
    pub alone: Latency,
    /// Beside the other agency at its quota.
    pub at_quota: Latency,
    /// During the flood.
    pub during: Latency,
    /// The other agency's calls at its quota.
    pub quota_load: Flood,
    /// The flood.
    pub flood: Flood,
    /// The order the three ran in.
    pub order: Vec<Beside>,
    /// The gateway's CPU use, in cores: alone, beside the quota, during the
    /// flood.
    pub cores: (f64, f64, f64),
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
    let admin = process::free_addr()?;
    let server = start_gateway(&env, &flooder, settings, admin, dir.path()).await?;
    let checked = run::first_answers(server.addr, &env.auth).await?;
    // The flooder may read the same person: the agreement names it too.
    run::first_answers(server.addr, &flood_auth).await?;
    let measured = clients(server.addr).await?;
    let flood_body = dir.path().join("flood.bin");
    std::fs::write(&flood_body, fixture::grpc_frame(&checked.get)).map_err(|e| e.to_string())?;
    let target = FloodTarget {
        addr: server.addr,
        admin,
        body: flood_body,
        header: format!("authorization: Bearer {flood_token}"),
    };

    let load_before = run::load_average();
    let mut results = Results {
        settings,
        rounds: Vec::new(),
    };
    for round in 0..cli.rounds.max(3) {
        // The order rotates each round, so a drift in the machine's load
        // does not always favour one condition.
        let mut order = vec![Beside::Alone, Beside::AtQuota, Beside::Flood];
        order.rotate_left(round % 3);
        let mut r = Round {
            order: order.clone(),
            ..Round::default()
        };
        for beside in order {
            eprintln!("round {}: {beside:?}", round + 1);
            let cpu = server.cpu();
            let other_rate = match beside {
                Beside::Alone => None,
                Beside::AtQuota => Some(f64::from(settings.quota)),
                Beside::Flood => Some(settings.flood_rate),
            };
            let (latency, other) = match other_rate {
                None => (
                    steady(&measured, &env.auth, &checked.get, settings).await,
                    None,
                ),
                Some(rate) => {
                    let (latency, other) = tokio::join!(
                        steady(&measured, &env.auth, &checked.get, settings),
                        flood_run(&target, rate, settings.run),
                    );
                    (latency, Some(other?))
                }
            };
            let cores = server.cpu().saturating_sub(cpu).as_secs_f64() / settings.run.as_secs_f64();
            match beside {
                Beside::Alone => {
                    r.alone = latency;
                    r.cores.0 = cores;
                }
                Beside::AtQuota => {
                    r.at_quota = latency;
                    r.quota_load = other.unwrap_or_default();
                    r.cores.1 = cores;
                }
                Beside::Flood => {
                    r.during = latency;
                    r.flood = other.unwrap_or_default();
                    r.cores.2 = cores;
                }
            }
            // Let the other agency's bucket and the gateway's queues settle.
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
    report::publish(
        cli,
        report::fairness::SECTION,
        report::fairness::INTRO,
        &block,
    )
}

/// The gateway with both recipients, the limits, the in-memory connector
/// and a SQLite ledger in `dir`.
async fn start_gateway(
    env: &Env,
    flooder: &Issuer,
    settings: Settings,
    admin: std::net::SocketAddr,
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
    let text = format!("{text}\n[telemetry]\nadmin_listen = \"{admin}\"\n");
    run::serve_config(
        env,
        &dir.join("liaison.toml"),
        &text,
        &[],
        addr,
        &dir.join("gateway.log"),
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

/// Where the flood goes and how it is told apart.
struct FloodTarget {
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    body: std::path::PathBuf,
    header: String,
}

/// The other agency: h2load at `rate` on four connections. Its
/// refusals are the change in the gateway's count of them for the agency;
/// the rest of what h2load saw answered were admitted.
async fn flood_run(target: &FloodTarget, rate: f64, run: Duration) -> Result<Flood, String> {
    const CONNECTIONS: u32 = 4;
    let before = refusals(target.admin, FLOODER).await?;
    let per_connection = (rate / f64::from(CONNECTIONS)).round() as u32;
    let h = load::h2load_paced(
        target.addr,
        "/liaison.v1.SharingService/GetRecords",
        &target.body,
        std::slice::from_ref(&target.header),
        run.as_secs().max(1),
        CONNECTIONS,
        per_connection.max(1),
    )
    .await?;
    let exhausted = refusals(target.admin, FLOODER).await? - before;
    let mut other = BTreeMap::new();
    if h.failed > 0 {
        other.insert("h2load failed, errored or timed out".to_owned(), h.failed);
    }
    Ok(Flood {
        sent: h.done,
        admitted: h.done.saturating_sub(exhausted + h.failed),
        exhausted,
        other,
    })
}

/// `liaison_admission_refusals_total` for `agency`, summed over limits,
/// from the admin listener's Prometheus text.
async fn refusals(admin: std::net::SocketAddr, agency: &str) -> Result<u64, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("admin listener: {e}"))?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    let label = format!("agency=\"{agency}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("liaison_admission_refusals_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}
