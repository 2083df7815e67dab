//! The rounds: each gateway configuration, then the echo server, started
//! fresh, measured and stopped, `--rounds` times.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use prost::Message;
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    Cli,
    echo::pb::{EchoRequest, echo_service_client::EchoServiceClient},
    fixture,
    issuer::Issuer,
    load::{self, H2load, Latency},
    process::{self, Server},
    report,
};

/// Where the gateway's audit ledger is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// A SQLite file (WAL, synchronous=FULL) in the run's directory.
    Sqlite,
    /// A scratch PostgreSQL database on the local server, made per run.
    Postgres,
}

/// Which connector serves the requests' dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// The CSV folder connector, its export held in memory: isolates the
    /// gateway.
    Memory,
    /// The SQL connector over a SQLite legacy database.
    Sql,
}

/// One gateway configuration.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The connector.
    pub source: SourceKind,
    /// People in the legacy source.
    pub people: usize,
    /// The ledger.
    pub ledger: LedgerKind,
}

impl Scenario {
    /// How the report names it.
    pub fn label(&self) -> String {
        let ledger = match self.ledger {
            LedgerKind::Sqlite => "SQLite ledger",
            LedgerKind::Postgres => "PostgreSQL ledger",
        };
        let source = match self.source {
            SourceKind::Memory => "in-memory connector",
            SourceKind::Sql => "SQL connector",
        };
        format!(
            "{source}, {} people, {ledger}",
            report::thousands(self.people as f64)
        )
    }
}

/// One closed-loop workload's figures.
#[derive(Debug, Clone, Default)]
pub struct Peak {
    /// What h2load reported.
    pub h2load: H2load,
    /// The server's CPU time (user + system) per succeeded request, in µs.
    pub cpu_us: f64,
}

/// One server process's figures in one round.
#[derive(Debug, Clone, Default)]
pub struct ServerRun {
    /// From spawn to serving, in ms.
    pub startup_ms: f64,
    /// Resident memory once serving, before any request, in KiB.
    pub idle_rss_kib: u64,
    /// Peak resident memory over the round, in KiB.
    pub peak_rss_kib: u64,
    /// `SearchPersons` (or echo) at peak.
    pub search: Peak,
    /// `GetRecords` (or echo) at peak.
    pub records: Peak,
    /// `GetRecords` (or echo) open loop, at each rate asked.
    pub open: Vec<Latency>,
    /// `GetRecords` (or echo) one at a time.
    pub serial_records: Latency,
    /// `SearchPersons` one at a time (gateway only).
    pub serial_search: Latency,
    /// Size of the `GetRecords` answer, protobuf bytes.
    pub records_bytes: usize,
    /// Size of the `GetRecords` request, protobuf bytes.
    pub request_bytes: usize,
}

/// How long each part of a round runs.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    /// Each h2load run, in s.
    pub h2load: u64,
    /// Each open-loop run.
    pub open: Duration,
    /// Each one-at-a-time run.
    pub serial: Duration,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Results {
    /// The configurations, in order.
    pub scenarios: Vec<Scenario>,
    /// `gateway[s][round]`.
    pub gateway: Vec<Vec<ServerRun>>,
    /// `echo[round]`; `open[s]` is at the rate of scenario `s` that round.
    pub echo: Vec<ServerRun>,
    /// The open-loop rate of scenario `s` in each round.
    pub rates: Vec<Vec<f64>>,
}

/// What every scenario runs with: the binaries, the data, the issuer and
/// a token from it.
pub(crate) struct Env {
    pub(crate) gateway_bin: PathBuf,
    pub(crate) self_bin: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) token: String,
    pub(crate) auth: MetadataValue<Ascii>,
    pub(crate) issuer_url: String,
    pub(crate) durations: Durations,
    /// Whether the throughput gateways seal their ledgers, as a deployed
    /// gateway does (a signing key, the default interval).
    pub(crate) seal: bool,
    /// Kept for the life of the run: it serves the gateways' JWKS.
    pub(crate) _issuer: Issuer,
}

/// Finds the binaries and the data folder, starts the issuer and mints the
/// recipient's token.
pub(crate) async fn env(cli: &Cli) -> Result<Env, String> {
    let self_bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin_dir = self_bin
        .parent()
        .ok_or("cannot find this binary's directory")?
        .to_path_buf();
    let gateway_bin = cli
        .gateway_bin
        .clone()
        .unwrap_or_else(|| bin_dir.join("liaison"));
    if !gateway_bin.exists() {
        return Err(format!(
            "`{}` not found: build it with `cargo build --release -p liaison-gateway -p liaison-bench`",
            gateway_bin.display()
        ));
    }
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| bin_dir.join("bench-data"));
    std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let durations = if cli.quick {
        Durations {
            h2load: cli.seconds.unwrap_or(1),
            open: Duration::from_secs(1),
            serial: Duration::from_millis(500),
        }
    } else {
        Durations {
            h2load: cli.seconds.unwrap_or(10),
            open: Duration::from_secs(cli.seconds.unwrap_or(10)),
            serial: Duration::from_secs(3),
        }
    };
    let issuer = Issuer::start().await?;
    let token = issuer.token(fixture::AUDIENCE, "hackney-mash-system", &["social-worker"])?;
    let auth: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token is not a header value")?;
    Ok(Env {
        gateway_bin,
        self_bin,
        repo,
        data_dir,
        token,
        auth,
        issuer_url: issuer.url.clone(),
        durations,
        seal: !cli.no_seal,
        _issuer: issuer,
    })
}

/// Runs the throughput benchmark and writes the report.
pub async fn bench(cli: &Cli) -> Result<(), String> {
    let started = Instant::now();
    let env = env(cli).await?;
    let mut scenarios = vec![Scenario {
        source: SourceKind::Memory,
        people: 1_000,
        ledger: LedgerKind::Sqlite,
    }];
    if !cli.no_postgres {
        scenarios.push(Scenario {
            source: SourceKind::Memory,
            people: 1_000,
            ledger: LedgerKind::Postgres,
        });
    }
    scenarios.push(Scenario {
        source: SourceKind::Sql,
        people: cli.people,
        ledger: LedgerKind::Sqlite,
    });
    for s in &scenarios {
        match s.source {
            SourceKind::Memory => legacy_export(&env, s.people)?,
            SourceKind::Sql => legacy_db(&env, s.people).await?,
        };
    }

    let load_before = load_average();
    let mut results = Results {
        scenarios: scenarios.clone(),
        gateway: vec![Vec::new(); scenarios.len()],
        rates: vec![Vec::new(); scenarios.len()],
        echo: Vec::new(),
    };
    for round in 0..cli.rounds.max(1) {
        let mut rates = Vec::new();
        let mut sizes = (0, 0);
        for (i, s) in scenarios.iter().enumerate() {
            eprintln!("round {}: gateway, {}", round + 1, s.label());
            let r = gateway_round(&env, s).await?;
            let rate = r.records.h2load.rps / 2.0;
            if i == 0 {
                sizes = (r.request_bytes, r.records_bytes);
            }
            rates.push(rate);
            if let Some(v) = results.rates.get_mut(i) {
                v.push(rate);
            }
            if let Some(v) = results.gateway.get_mut(i) {
                v.push(r);
            }
        }
        eprintln!("round {}: echo", round + 1);
        results.echo.push(echo_round(&env, &rates, sizes).await?);
    }
    let load_after = load_average();

    let block = report::render(
        &results,
        &report::RunInfo {
            quick: cli.quick,
            rounds: cli.rounds.max(1),
            durations: env.durations,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            load: (load_before, load_after),
            elapsed: started.elapsed(),
        },
    );
    report::publish(cli, report::SECTION, report::INTRO, &block)
}

/// The synthetic children's services export of `people`, written once and
/// kept, in a folder of its own for the CSV folder connector to watch.
pub(crate) fn legacy_export(env: &Env, people: usize) -> Result<PathBuf, String> {
    let dir = env.data_dir.join(format!("council-export-{people}"));
    if dir.exists() {
        return Ok(dir);
    }
    eprintln!("writing a legacy export of {people} people");
    let partial = env
        .data_dir
        .join(format!("council-export-{people}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| e.to_string())?;
    liaison_connectors::synthetic::council::write_council_export(&partial, people, 7, false)
        .map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The synthetic legacy database of `people`, generated once and kept.
pub(crate) async fn legacy_db(env: &Env, people: usize) -> Result<PathBuf, String> {
    let path = env.data_dir.join(format!("police-rms-{people}.db"));
    if path.exists() {
        return Ok(path);
    }
    eprintln!("generating a legacy database of {people} people");
    let partial = env.data_dir.join(format!("police-rms-{people}.db.partial"));
    let _ = std::fs::remove_file(&partial);
    liaison_connectors::synthetic::generate_police_rms(
        &format!("sqlite://{}?mode=rwc", partial.display()),
        people,
        7,
    )
    .await
    .map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &path).map_err(|e| e.to_string())?;
    Ok(path)
}

pub(crate) async fn channel(addr: SocketAddr) -> Result<Channel, String> {
    Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

pub(crate) async fn serving(addr: SocketAddr) -> bool {
    let Ok(ch) = channel(addr).await else {
        return false;
    };
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: "liaison.v1.SharingService".into(),
        })
        .await
        .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
}

pub(crate) async fn echo_answers(addr: SocketAddr) -> bool {
    let Ok(ch) = channel(addr).await else {
        return false;
    };
    EchoServiceClient::new(ch)
        .echo(EchoRequest::default())
        .await
        .is_ok()
}

pub(crate) fn authed<T>(auth: &MetadataValue<Ascii>, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert("authorization", auth.clone());
    req
}

/// Runs h2load and reads the server's CPU time around it.
async fn peak(
    server: &Server,
    path: &str,
    body: &Path,
    env: &Env,
    expect_bytes: usize,
) -> Result<Peak, String> {
    peak_at(server.addr, &[server], path, body, env, expect_bytes).await
}

/// Runs h2load against `target` and reads the CPU time of `servers`
/// (every process that serves it) around it.
pub(crate) async fn peak_at(
    target: SocketAddr,
    servers: &[&Server],
    path: &str,
    body: &Path,
    env: &Env,
    expect_bytes: usize,
) -> Result<Peak, String> {
    let before: Vec<Duration> = servers.iter().map(|s| s.cpu()).collect();
    let h = load::h2load(
        target,
        path,
        body,
        &[format!("authorization: Bearer {}", env.token)],
        env.durations.h2load,
    )
    .await?;
    let cpu: Duration = servers
        .iter()
        .zip(&before)
        .map(|(s, b)| s.cpu().saturating_sub(*b))
        .sum();
    // h2load counts HTTP 200s; a gRPC error is a 200 too, with a short body
    // and the status in trailers. An answer much smaller than the one
    // checked beforehand means the calls failed.
    if h.bytes_per_response < 0.9 * (expect_bytes + 5) as f64 {
        let logs: Vec<String> = servers.iter().map(|s| s.log_tail()).collect();
        return Err(format!(
            "{path}: {:.0} bytes per answer under h2load, expected {}: the calls are failing; the server's log ends:\n{}",
            h.bytes_per_response,
            expect_bytes + 5,
            logs.join("\n---\n")
        ));
    }
    Ok(Peak {
        cpu_us: cpu.as_secs_f64() * 1e6 / (h.succeeded.max(1) as f64),
        h2load: h,
    })
}

async fn gateway_round(env: &Env, scenario: &Scenario) -> Result<ServerRun, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let demo = std::fs::read_to_string(env.repo.join("deploy/demo/policy.toml"))
        .map_err(|e| format!("deploy/demo/policy.toml: {e}"))?;
    std::fs::write(dir.path().join("policy.toml"), fixture::policy(&demo))
        .map_err(|e| e.to_string())?;
    // `_pg` is kept until the gateway stops: dropping it drops the database.
    let (ledger, _pg) = match scenario.ledger {
        LedgerKind::Sqlite => (
            format!("sqlite://{}", dir.path().join("ledger.db").display()),
            None,
        ),
        LedgerKind::Postgres => {
            let (url, guard) = liaison_ledger::test_util::fresh_postgres_db().await;
            (url, Some(guard))
        }
    };
    let addr = process::free_addr()?;
    let config = dir.path().join("liaison.toml");
    let text = match scenario.source {
        SourceKind::Memory => fixture::config(
            &addr.to_string(),
            &ledger,
            &env.issuer_url,
            &fixture::Source::Memory {
                folder: &legacy_export(env, scenario.people)?,
                mapping: &env.repo.join("connectors/examples/council-csv.toml"),
            },
        ),
        SourceKind::Sql => fixture::config(
            &addr.to_string(),
            &ledger,
            &env.issuer_url,
            &fixture::Source::Sql {
                rms: &legacy_db(env, scenario.people).await?,
                mapping: &env.repo.join("connectors/examples/police-rms.toml"),
            },
        ),
    };
    let text = if env.seal {
        let key = liaison_ledger::SigningKey::generate()
            .and_then(|key| key.to_pkcs8_pem())
            .map_err(|e| format!("ledger signing key: {e}"))?;
        std::fs::write(dir.path().join("ledger-signing.pem"), key).map_err(|e| e.to_string())?;
        fixture::with_signing_key(&text, "ledger-signing.pem")
    } else {
        text
    };
    let server = serve_config(
        env,
        &config,
        &text,
        &[],
        addr,
        &dir.path().join("gateway.log"),
    )
    .await?;
    let idle_rss_kib = server.rss_kib();

    // One of each, checked, before any load: the person to read, and the
    // sizes the echo server will mirror.
    let client = SharingServiceClient::new(channel(addr).await?);
    let Checked {
        get,
        search_bytes,
        records_bytes,
    } = first_answers(addr, &env.auth).await?;
    let search_body = dir.path().join("search.bin");
    let records_body = dir.path().join("records.bin");
    std::fs::write(&search_body, fixture::grpc_frame(&fixture::search()))
        .map_err(|e| e.to_string())?;
    std::fs::write(&records_body, fixture::grpc_frame(&get)).map_err(|e| e.to_string())?;

    let search = peak(
        &server,
        "/liaison.v1.SharingService/SearchPersons",
        &search_body,
        env,
        search_bytes,
    )
    .await?;
    let records_peak = peak(
        &server,
        "/liaison.v1.SharingService/GetRecords",
        &records_body,
        env,
        records_bytes,
    )
    .await?;

    let clients: Arc<Vec<SharingServiceClient<Channel>>> = Arc::new(
        futures_channels(addr, 4)
            .await?
            .into_iter()
            .map(SharingServiceClient::new)
            .collect(),
    );
    let rate = records_peak.h2load.rps / 2.0;
    let call = {
        let clients = clients.clone();
        let auth = env.auth.clone();
        let get = get.clone();
        move |i: u64| {
            let client = clients.get(i as usize % clients.len().max(1)).cloned();
            let req = authed(&auth, get.clone());
            async move {
                match client {
                    Some(mut c) => c.get_records(req).await.is_ok(),
                    None => false,
                }
            }
        }
    };
    let open = load::open_loop(rate, env.durations.open, call).await;
    let serial_records = load::one_at_a_time(env.durations.serial, |_| {
        let mut c = client.clone();
        let req = authed(&env.auth, get.clone());
        async move { c.get_records(req).await.is_ok() }
    })
    .await;
    let serial_search = load::one_at_a_time(env.durations.serial, |_| {
        let mut c = client.clone();
        let req = authed(&env.auth, fixture::search());
        async move { c.search_persons(req).await.is_ok() }
    })
    .await;
    let peak_rss_kib = server.peak_rss_kib();
    let startup_ms = server.startup.as_secs_f64() * 1e3;
    server.stop().await;
    Ok(ServerRun {
        startup_ms,
        idle_rss_kib,
        peak_rss_kib,
        search,
        records: records_peak,
        open: vec![open],
        serial_records,
        serial_search,
        records_bytes,
        request_bytes: get.encoded_len(),
    })
}

/// Writes `text` as `config` and runs `liaison serve` on it, logging to
/// `log`, `envs` added to its environment, until gRPC health says it serves.
pub(crate) async fn serve_config(
    env: &Env,
    config: &Path,
    text: &str,
    envs: &[(&str, &str)],
    addr: SocketAddr,
    log: &Path,
) -> Result<Server, String> {
    std::fs::write(config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let config_arg = config.display().to_string();
    Server::spawn_with_env(
        &env.gateway_bin,
        &["serve", "--config", &config_arg],
        envs,
        addr,
        log,
        serving,
    )
    .await
}

/// A gateway's first answers, checked before any load.
pub(crate) struct Checked {
    /// The read of Leah Marsh's records that the load repeats.
    pub(crate) get: pb::GetRecordsRequest,
    /// Size of the `SearchPersons` answer, protobuf bytes.
    pub(crate) search_bytes: usize,
    /// Size of the `GetRecords` answer, protobuf bytes.
    pub(crate) records_bytes: usize,
}

/// Searches for the synthetic child until the connector has read its
/// export, then reads her records once, as the caller `auth` speaks for.
pub(crate) async fn first_answers(
    addr: SocketAddr,
    auth: &MetadataValue<Ascii>,
) -> Result<Checked, String> {
    let mut client = SharingServiceClient::new(channel(addr).await?);
    // A folder connector reads its export once serving; wait for it.
    let mut found = pb::SearchPersonsResponse::default();
    for _ in 0..100 {
        found = client
            .search_persons(authed(auth, fixture::search()))
            .await
            .map_err(|s| format!("SearchPersons failed: {s:?}"))?
            .into_inner();
        if !found.matches.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let person_id = found
        .matches
        .first()
        .and_then(|m| m.person.as_ref())
        .map(|p| p.person_id.clone())
        .ok_or("SearchPersons found nobody")?;
    let get = fixture::get_records(&person_id);
    let records = client
        .get_records(authed(auth, get.clone()))
        .await
        .map_err(|s| format!("GetRecords failed: {s:?}"))?
        .into_inner();
    Ok(Checked {
        get,
        search_bytes: found.encoded_len(),
        records_bytes: records.encoded_len(),
    })
}

pub(crate) async fn futures_channels(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(channel(addr).await?);
    }
    Ok(out)
}

/// The echo server, answering with `sizes.1` bytes to requests of
/// `sizes.0`, open loop at each of `rates`.
async fn echo_round(env: &Env, rates: &[f64], sizes: (usize, usize)) -> Result<ServerRun, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = process::free_addr()?;
    let listen = addr.to_string();
    let server = Server::spawn(
        &env.self_bin,
        &["--echo-server", &listen],
        addr,
        &dir.path().join("echo.log"),
        echo_answers,
    )
    .await?;
    let idle_rss_kib = server.rss_kib();
    let (request_bytes, response_bytes) = sizes;
    // The payload and its field header stand for the gateway's request.
    let message = EchoRequest {
        payload: vec![0x5a; request_bytes.saturating_sub(8)],
        response_bytes: u32::try_from(response_bytes).unwrap_or(u32::MAX),
    };
    let answer_bytes = crate::echo::pb::EchoResponse {
        payload: vec![0; response_bytes],
    }
    .encoded_len();
    let body = dir.path().join("echo.bin");
    std::fs::write(&body, fixture::grpc_frame(&message)).map_err(|e| e.to_string())?;
    let records = peak(
        &server,
        "/bench.v1.EchoService/Echo",
        &body,
        env,
        answer_bytes,
    )
    .await?;
    let clients: Arc<Vec<EchoServiceClient<Channel>>> = Arc::new(
        futures_channels(addr, 4)
            .await?
            .into_iter()
            .map(EchoServiceClient::new)
            .collect(),
    );
    let mut open = Vec::new();
    for &rate in rates {
        let clients = clients.clone();
        let auth = env.auth.clone();
        let message = message.clone();
        let call = move |i: u64| {
            let client = clients.get(i as usize % clients.len().max(1)).cloned();
            let req = authed(&auth, message.clone());
            async move {
                match client {
                    Some(mut c) => c.echo(req).await.is_ok(),
                    None => false,
                }
            }
        };
        open.push(load::open_loop(rate, env.durations.open, call).await);
    }
    let client = EchoServiceClient::new(channel(addr).await?);
    let serial_records = load::one_at_a_time(env.durations.serial, |_| {
        let mut c = client.clone();
        let req = authed(&env.auth, message.clone());
        async move { c.echo(req).await.is_ok() }
    })
    .await;
    let peak_rss_kib = server.peak_rss_kib();
    let startup_ms = server.startup.as_secs_f64() * 1e3;
    server.stop().await;
    Ok(ServerRun {
        startup_ms,
        idle_rss_kib,
        peak_rss_kib,
        search: records.clone(),
        records,
        open,
        serial_search: serial_records.clone(),
        serial_records,
        records_bytes: response_bytes,
        request_bytes,
    })
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
