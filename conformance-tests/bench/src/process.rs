//! Servers under test as child processes, so their CPU time and memory are
//! theirs alone: CPU from `/proc/<pid>/stat` (utime + stime), resident
//! memory from `/proc/<pid>/status` (VmRSS now, VmHWM at its peak).

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

/// A server process under test.
#[derive(Debug)]
pub struct Server {
    /// Where it serves gRPC.
    pub addr: SocketAddr,
    /// From spawning the process to its first answer (echo) or `SERVING`
    /// from gRPC health (gateway).
    pub startup: Duration,
    child: Child,
    pid: u32,
    log: std::path::PathBuf,
}

impl Server {
    /// Spawns `program args…` with its output in `log`, and waits until
    /// `ready(addr)` says it serves, for at most 60 s.
    pub async fn spawn<F, Fut>(
        program: &Path,
        args: &[&str],
        addr: SocketAddr,
        log: &Path,
        ready: F,
    ) -> Result<Self, String>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        Self::spawn_with_env(program, args, &[], addr, log, ready).await
    }

    /// [`Server::spawn`] with `env` added to the process's environment.
    pub async fn spawn_with_env<F, Fut>(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        addr: SocketAddr,
        log: &Path,
        ready: F,
    ) -> Result<Self, String>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            // As the shipped deployments run the gateway (docs/operations.md,
            // "Memory"); the echo server uses the system allocator and ignores them.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        loop {
            if ready(addr).await {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "`{}` exited with {status} before serving; see {}",
                    program.display(),
                    log.display()
                ));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "`{}` did not serve within 60 s; see {}",
                    program.display(),
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self {
            addr,
            startup: started.elapsed(),
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    /// CPU time used so far, user and system.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid).unwrap_or_default()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS:").unwrap_or_default()
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM:").unwrap_or_default()
    }

    /// Everything the process wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines the process wrote, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(8)..)
            .unwrap_or_default()
            .join("\n")
    }

    /// Kills the process (SIGKILL: no graceful shutdown, as a crash or an
    /// OOM kill) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A free loopback port, for a server configured by file.
pub fn free_addr() -> Result<SocketAddr, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map_err(|e| e.to_string())
}

/// The kernel's clock ticks per second, in which `/proc/<pid>/stat` counts.
fn ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields count
    // from the last `)`: state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    let hz = ticks_per_second().max(1);
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
