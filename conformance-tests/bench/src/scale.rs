//! Scale-out behind one port: 1, 2 and 3 `liaison serve` replicas sharing
//! one PostgreSQL ledger, behind the bench's TCP balancer, at peak with
//! h2load; echo direct and echo through the balancer in the same rounds,
//! so the balancer's own cost can be told apart; then one replica killed
//! (SIGKILL) halfway through a closed-loop run, with every acknowledged
//! share looked up in the ledger afterwards.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use liaison_ledger::test_util::{TestDatabase, fresh_postgres_db};
use liaison_proto::v1::sharing_service_client::SharingServiceClient;
use sqlx::{Connection as _, PgConnection};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tonic::transport::Channel;

use crate::{
    Cli,
    balancer::{self, Routed},
    echo::pb::{EchoRequest, EchoResponse},
    fixture,
    load::{self, Timeline},
    process::{self, Server},
    report,
    run::{self, Checked, Env, Peak},
};

const GET_RECORDS: &str = "/liaison.v1.SharingService/GetRecords";
/// Connections and calls in flight on each in the failover run: h2load's
/// shape.
const CONNECTIONS: usize = 16;
const STREAMS: usize = 16;

/// One configuration of replicas in one round.
#[derive(Debug, Clone, Default)]
pub struct Replicated {
    /// Replicas behind the balancer.
    pub replicas: usize,
    /// `GetRecords` at peak through the balancer; CPU is all replicas'.
    pub peak: Peak,
    /// The balancer's CPU time per request answered, in µs.
    pub balancer_cpu_us: f64,
    /// Each replica's peak resident memory (VmHWM), in KiB.
    pub peak_rss_kib: Vec<u64>,
    /// Where the balancer sent the connections.
    pub routed: Routed,
}

/// One round: echo direct, echo through the balancer, then each replica
/// count.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Echo at peak, h2load straight to it.
    pub echo: Peak,
    /// Echo at peak through the balancer; CPU is echo's own.
    pub echo_balanced: Peak,
    /// The balancer's CPU per request in front of echo, in µs.
    pub echo_balancer_cpu_us: f64,
    /// `gateways[n - 1]`: n replicas.
    pub gateways: Vec<Replicated>,
}

/// What the ledger holds after the failover run.
#[derive(Debug, Clone, Default)]
pub struct LedgerCheck {
    /// Entries before the load began (the replicas' first answers).
    pub before: i64,
    /// Entries afterwards.
    pub after: i64,
    /// Whether sequence numbers are dense (the largest is the count) and
    /// the head row agrees.
    pub dense: bool,
    /// Receipts the clients were given.
    pub receipts: usize,
    /// Of those, entries found by `entry_id`.
    pub found: i64,
    /// `liaison audit verify` exit code and its last line.
    pub verify: (i32, String),
}

/// A replica killed mid-load.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    /// Replicas at the start.
    pub replicas: usize,
    /// The run's length.
    pub run: Duration,
    /// When the replica was killed, from the start.
    pub killed_at: Duration,
    /// Answered `GetRecords` per second from 1 s in until the kill.
    pub before_rps: f64,
    /// The same in the second after the kill.
    pub dip_rps: f64,
    /// The same from 1 s after the kill to the end.
    pub after_rps: f64,
    /// Calls answered with a receipt.
    pub answered: u64,
    /// Failed calls by gRPC code (or `no receipt`).
    pub errors: BTreeMap<String, u64>,
    /// Failures before the kill.
    pub errors_before_kill: u64,
    /// The last failure, counted from the kill.
    pub last_error_after_kill: Option<Duration>,
    /// Each replica's peak RSS (the killed one's just before the kill).
    pub peak_rss_kib: Vec<u64>,
    /// Where the balancer sent connections, with the reconnections.
    pub routed: Routed,
    /// The ledger afterwards.
    pub ledger: LedgerCheck,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// The rounds.
    pub rounds: Vec<Round>,
    /// The kill run.
    pub failover: Failover,
    /// `GetRecords` request and answer sizes, which echo mirrors.
    pub sizes: (usize, usize),
}

/// Runs the scenario and writes its report.
pub async fn bench(cli: &Cli) -> Result<(), String> {
    let started = std::time::Instant::now();
    let env = run::env(cli).await?;
    let people = 1_000;
    run::legacy_export(&env, people)?;
    let max = cli.replicas.max(1);
    let load_before = run::load_average();
    let mut results = Results::default();
    for round in 0..cli.rounds.max(1) {
        let mut r = Round::default();
        for n in 1..=max {
            eprintln!("round {}: {n} replica(s) behind the balancer", round + 1);
            let (g, sizes) = replicated(&env, n, people).await?;
            if results.sizes == (0, 0) {
                results.sizes = sizes;
            }
            r.gateways.push(g);
        }
        eprintln!("round {}: echo, direct and through the balancer", round + 1);
        echo(&env, results.sizes, &mut r).await?;
        results.rounds.push(r);
    }
    let load_mid = run::load_average();
    eprintln!("failover: {max} replicas, one killed halfway");
    let run_for = if cli.quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(2 * env.durations.h2load.max(5))
    };
    results.failover = failover(&env, max, people, run_for).await?;
    let load_after = run::load_average();
    let block = report::scale::render(
        &results,
        &report::scale::RunInfo {
            quick: cli.quick,
            h2load_seconds: env.durations.h2load,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            load: [load_before, load_mid, load_after],
            elapsed: started.elapsed(),
        },
    );
    report::publish(cli, report::scale::SECTION, report::scale::INTRO, &block)
}

/// Replicas on one fresh PostgreSQL ledger, each checked, with the
/// balancer in front.
struct Deployment {
    replicas: Vec<Server>,
    balancer: Server,
    checked: Checked,
    ledger_url: String,
    // Dropped last: the directory holds the logs, the guard drops the
    // database.
    _dir: TempDir,
    _pg: TestDatabase,
}

impl Deployment {
    async fn start(env: &Env, n: usize, people: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let demo = std::fs::read_to_string(env.repo.join("deploy/demo/policy.toml"))
            .map_err(|e| format!("deploy/demo/policy.toml: {e}"))?;
        std::fs::write(dir.path().join("policy.toml"), fixture::policy(&demo))
            .map_err(|e| e.to_string())?;
        let (ledger_url, pg) = fresh_postgres_db().await;
        let folder = run::legacy_export(env, people)?;
        let mapping = env.repo.join("connectors/examples/council-csv.toml");
        let mut replicas = Vec::with_capacity(n);
        let mut checked = None;
        for i in 0..n {
            let addr = process::free_addr()?;
            let config = dir.path().join(format!("liaison-{i}.toml"));
            let text = fixture::config(
                &addr.to_string(),
                &ledger_url,
                &env.issuer_url,
                &fixture::Source::Memory {
                    folder: &folder,
                    mapping: &mapping,
                },
            );
            let server = run::serve_config(
                env,
                &config,
                &text,
                &[],
                addr,
                &dir.path().join(format!("gateway-{i}.log")),
            )
            .await?;
            // Each replica straight, not through the balancer, so each has
            // read its export before any load.
            checked = Some(run::first_answers(addr, &env.auth).await?);
            replicas.push(server);
        }
        let checked = checked.ok_or("no replicas")?;
        let backends: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        let balancer = spawn_balancer(env, &backends, dir.path()).await?;
        Ok(Self {
            replicas,
            balancer,
            checked,
            ledger_url,
            _dir: dir,
            _pg: pg,
        })
    }

    async fn stop(self) {
        self.balancer.stop().await;
        for r in self.replicas {
            r.stop().await;
        }
    }
}

async fn spawn_balancer(env: &Env, backends: &[SocketAddr], dir: &Path) -> Result<Server, String> {
    let addr = process::free_addr()?;
    let mut args = vec!["--balance".to_string(), addr.to_string()];
    for b in backends {
        args.push("--backend".into());
        args.push(b.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::spawn(
        &env.self_bin,
        &args,
        addr,
        &dir.join("balancer.log"),
        |a| async move { TcpStream::connect(a).await.is_ok() },
    )
    .await
}

/// `n` replicas at peak through the balancer.
async fn replicated(
    env: &Env,
    n: usize,
    people: usize,
) -> Result<(Replicated, (usize, usize)), String> {
    let d = Deployment::start(env, n, people).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let body = dir.path().join("records.bin");
    std::fs::write(&body, fixture::grpc_frame(&d.checked.get)).map_err(|e| e.to_string())?;
    let servers: Vec<&Server> = d.replicas.iter().collect();
    let balancer_before = d.balancer.cpu();
    let peak = run::peak_at(
        d.balancer.addr,
        &servers,
        GET_RECORDS,
        &body,
        env,
        d.checked.records_bytes,
    )
    .await?;
    let balancer_cpu = d.balancer.cpu().saturating_sub(balancer_before);
    let g = Replicated {
        replicas: n,
        balancer_cpu_us: per_request(balancer_cpu, peak.h2load.succeeded),
        peak_rss_kib: d.replicas.iter().map(Server::peak_rss_kib).collect(),
        routed: balancer::read_log(&d.balancer.log_text(), n),
        peak,
    };
    let sizes = (
        prost::Message::encoded_len(&d.checked.get),
        d.checked.records_bytes,
    );
    d.stop().await;
    Ok((g, sizes))
}

fn per_request(cpu: Duration, requests: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / (requests.max(1) as f64)
}

/// Echo at peak straight and through the balancer, with `GetRecords`'
/// sizes.
async fn echo(env: &Env, sizes: (usize, usize), round: &mut Round) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = process::free_addr()?;
    let listen = addr.to_string();
    let server = Server::spawn(
        &env.self_bin,
        &["--echo-server", &listen],
        addr,
        &dir.path().join("echo.log"),
        run::echo_answers,
    )
    .await?;
    let (request_bytes, response_bytes) = sizes;
    let message = EchoRequest {
        payload: vec![0x5a; request_bytes.saturating_sub(8)],
        response_bytes: u32::try_from(response_bytes).unwrap_or(u32::MAX),
    };
    let answer_bytes = prost::Message::encoded_len(&EchoResponse {
        payload: vec![0; response_bytes],
    });
    let body = dir.path().join("echo.bin");
    std::fs::write(&body, fixture::grpc_frame(&message)).map_err(|e| e.to_string())?;
    let path = "/bench.v1.EchoService/Echo";
    round.echo = run::peak_at(addr, &[&server], path, &body, env, answer_bytes).await?;
    let balancer = spawn_balancer(env, &[addr], dir.path()).await?;
    let before = balancer.cpu();
    round.echo_balanced =
        run::peak_at(balancer.addr, &[&server], path, &body, env, answer_bytes).await?;
    round.echo_balancer_cpu_us = per_request(
        balancer.cpu().saturating_sub(before),
        round.echo_balanced.h2load.succeeded,
    );
    balancer.stop().await;
    server.stop().await;
    Ok(())
}

/// `n` replicas under a closed loop of 16 connections × 16 calls through
/// the balancer for `run_for`; replica 1 (the second) is killed halfway.
async fn failover(
    env: &Env,
    n: usize,
    people: usize,
    run_for: Duration,
) -> Result<Failover, String> {
    let d = Deployment::start(env, n, people).await?;
    let mut db = PgConnection::connect(&d.ledger_url)
        .await
        .map_err(|e| format!("ledger database: {e}"))?;
    let before = entries(&mut db).await?.0;

    let mut channels = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        channels.push(run::channel(d.balancer.addr).await?);
    }
    let channels: Arc<Vec<Channel>> = Arc::new(channels);
    let auth = env.auth.clone();
    let get = d.checked.get.clone();
    let call = move |worker: usize| {
        let channel = channels.get(worker % CONNECTIONS).cloned();
        let req = run::authed(&auth, get.clone());
        async move {
            let channel = channel.ok_or_else(|| "no channel".to_string())?;
            let answer = SharingServiceClient::new(channel)
                .get_records(req)
                .await
                .map_err(|s| format!("{:?}", s.code()))?
                .into_inner();
            answer
                .receipt
                .map(|r| r.entry_id)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| "no receipt".to_string())
        }
    };

    let Deployment {
        mut replicas,
        balancer,
        ledger_url,
        _dir,
        _pg,
        ..
    } = d;
    let victim_index = 1.min(replicas.len() - 1);
    let victim = replicas.remove(victim_index);
    let killed_at = run_for / 2;
    let started = std::time::Instant::now();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(killed_at).await;
        let rss = victim.peak_rss_kib();
        let at = started.elapsed();
        victim.stop().await;
        (at, rss)
    });
    let timeline: Timeline<String, String> = load::closed_loop(
        CONNECTIONS * STREAMS,
        run_for,
        Duration::from_millis(250),
        call,
    )
    .await;
    let (killed_at, victim_rss) = killer.await.map_err(|e| e.to_string())?;

    let mut peak_rss_kib: Vec<u64> = replicas.iter().map(Server::peak_rss_kib).collect();
    peak_rss_kib.insert(victim_index, victim_rss);
    let routed = balancer::read_log(&balancer.log_text(), n);
    balancer.stop().await;
    for r in replicas {
        r.stop().await;
    }

    let mut errors = BTreeMap::new();
    for (_, e) in &timeline.errors {
        *errors.entry(e.clone()).or_insert(0) += 1;
    }
    let ledger = check_ledger(env, &mut db, &ledger_url, before, &timeline.answers).await?;
    let _ = db.close().await;
    Ok(Failover {
        replicas: n,
        run: run_for,
        killed_at,
        before_rps: timeline.rate(Duration::from_secs(1), killed_at),
        dip_rps: timeline.rate(killed_at, killed_at + Duration::from_secs(1)),
        after_rps: timeline.rate(killed_at + Duration::from_secs(1), run_for),
        answered: timeline.answers.len() as u64,
        errors_before_kill: timeline
            .errors
            .iter()
            .filter(|(at, _)| *at < killed_at)
            .count() as u64,
        last_error_after_kill: timeline
            .errors
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at >= killed_at)
            .max()
            .map(|at| at - killed_at),
        errors,
        peak_rss_kib,
        routed,
        ledger,
    })
}

/// The number of entries, the largest sequence number, and the head row's
/// size.
async fn entries(db: &mut PgConnection) -> Result<(i64, i64, i64), String> {
    let (count, max): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), max(seq) FROM audit_entries")
            .fetch_one(&mut *db)
            .await
            .map_err(|e| format!("counting ledger entries: {e}"))?;
    let head: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *db)
        .await
        .map_err(|e| format!("reading the ledger head: {e}"))?;
    Ok((count, max.unwrap_or(0), head))
}

/// Looks every receipt up by entry id, checks the sequence is dense, and
/// runs `liaison audit verify` over the whole chain the replicas wrote.
async fn check_ledger(
    env: &Env,
    db: &mut PgConnection,
    url: &str,
    before: i64,
    receipts: &[String],
) -> Result<LedgerCheck, String> {
    let (after, max_seq, head) = entries(db).await?;
    let found: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_entries WHERE entry_id = ANY($1)")
            .bind(receipts)
            .fetch_one(&mut *db)
            .await
            .map_err(|e| format!("looking receipts up: {e}"))?;
    let out = tokio::process::Command::new(&env.gateway_bin)
        .args(["audit", "verify", "--ledger", url])
        .output()
        .await
        .map_err(|e| format!("liaison audit verify: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The chain head and Merkle root that follow are of no use in a report.
    let last = text.lines().last().unwrap_or_default();
    let last = last
        .split(", chain head")
        .next()
        .unwrap_or(last)
        .to_string();
    Ok(LedgerCheck {
        before,
        after,
        dense: max_seq == after && head == after,
        receipts: receipts.len(),
        found,
        verify: (out.status.code().unwrap_or(-1), last),
    })
}
