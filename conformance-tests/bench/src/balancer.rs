//! A small TCP balancer standing for the load balancer in front of several
//! gateway replicas: each accepted connection goes to the next backend in
//! turn and its bytes are copied both ways untouched (HTTP/2 is not parsed,
//! so one connection's streams all reach one replica, as behind an L4
//! balancer). A backend that refuses the connection is skipped for the next
//! one, so once a replica dies new connections reach the others.
//!
//! It runs as a child process of the bench (`--balance`), so its CPU time is
//! its own and can be told apart from the replicas' and the load
//! generator's. It prints one line per connection, which the bench reads
//! back to show where connections went.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
};

/// Where the connections of one run went, read back from the balancer's
/// log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routed {
    /// Connections handed to each backend, in the order given.
    pub per_backend: Vec<u64>,
    /// Connection attempts a backend refused (the connection then went to
    /// the next backend).
    pub skipped: u64,
    /// Client connections dropped because no backend accepted.
    pub unrouted: u64,
}

/// Serves on `listen` until the process is killed, spreading connections
/// over `backends`; prints `listening <addr>` once bound.
pub async fn serve(listen: SocketAddr, backends: Vec<SocketAddr>) -> Result<(), String> {
    if backends.is_empty() {
        return Err("the balancer needs at least one --backend".into());
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on `{listen}`: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {addr}");
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: keep serving.
                eprintln!("accept: {e}");
                continue;
            }
        };
        let backends = backends.clone();
        let first = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Some((index, upstream)) = connect(&backends, first).await else {
                println!("unrouted");
                return;
            };
            println!("routed {index}");
            relay(client, upstream).await;
        });
    }
}

/// The first backend, from `first` round the ring, that accepts a
/// connection; each refusal is printed.
async fn connect(backends: &[SocketAddr], first: usize) -> Option<(usize, TcpStream)> {
    for k in 0..backends.len() {
        let index = (first + k) % backends.len();
        let addr = backends.get(index)?;
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // Without it a small trailers frame may wait for the delayed
                // ACK, which would be the balancer's cost, not the replica's.
                let _ = s.set_nodelay(true);
                return Some((index, s));
            }
            Err(e) => println!("skipped {index}: {e}"),
        }
    }
    None
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    let _ = client.shutdown().await;
    let _ = upstream.shutdown().await;
}

/// Counts the lines [`serve`] printed for `backends` backends.
pub fn read_log(text: &str, backends: usize) -> Routed {
    let mut r = Routed {
        per_backend: vec![0; backends],
        ..Routed::default()
    };
    for line in text.lines() {
        if let Some(index) = line.strip_prefix("routed ") {
            if let Some(n) = index
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| r.per_backend.get_mut(i))
            {
                *n += 1;
            }
        } else if line.starts_with("skipped ") {
            r.skipped += 1;
        } else if line == "unrouted" {
            r.unrouted += 1;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[test]
    fn the_log_counts_connections_per_backend() {
        let text = "listening 127.0.0.1:1\nrouted 0\nrouted 1\nskipped 2: refused\nrouted 0\nunrouted\nrouted 7\n";
        assert_eq!(
            read_log(text, 3),
            Routed {
                per_backend: vec![2, 1, 0],
                skipped: 1,
                unrouted: 1,
            }
        );
    }

    /// A backend that answers each connection with its own tag byte.
    async fn tagged(tag: u8) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(&[tag]).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn connections_go_round_the_backends_and_skip_a_dead_one() {
        let a = tagged(b'a').await;
        let b = tagged(b'b').await;
        // A port nothing listens on any more.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let listen = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        tokio::spawn(serve(listen, vec![a, dead, b]));
        let mut seen = Vec::new();
        for _ in 0..6 {
            let mut s = loop {
                if let Ok(s) = TcpStream::connect(listen).await {
                    break s;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            };
            let mut tag = [0u8; 1];
            s.read_exact(&mut tag).await.unwrap();
            seen.push(tag[0]);
        }
        // a, (dead → b), b, a, (dead → b), b
        assert_eq!(seen, b"abbabb");
    }
}
