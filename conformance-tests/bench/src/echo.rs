//! The ceiling: a bare tonic server answering a unary call with a message the
//! size of a `GetRecords` answer, on the same tonic, the same plaintext
//! HTTP/2 and the same server settings as the gateway's listener, and no
//! other work.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::{StreamExt, wrappers::TcpListenerStream};
use tonic::{Request, Response, Status};

/// `bench.v1`: the echo service.
pub mod pb {
    #![allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        missing_debug_implementations
    )]
    tonic::include_proto!("bench.v1");
}

use pb::{
    EchoRequest, EchoResponse,
    echo_service_server::{EchoService, EchoServiceServer},
};

/// The largest answer the echo server will make, as the gateway's default
/// `max_message_bytes`.
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let n = usize::try_from(request.get_ref().response_bytes)
            .unwrap_or(MAX_RESPONSE)
            .min(MAX_RESPONSE);
        Ok(Response::new(EchoResponse {
            payload: vec![0x5a; n],
        }))
    }
}

/// Serves the echo service on `listen` until the process is killed; prints
/// `listening <addr>` on standard output once bound.
pub async fn serve(listen: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on `{listen}`: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {addr}");
    // The gateway's transport settings (`gateway/src/server.rs`), so the
    // difference measured is the gateway's own work; but with TCP_NODELAY,
    // which the gateway's accepted sockets lack (`serve_with_incoming` on a
    // plain listener does not set it), so a small trailers frame does not
    // wait ~40 ms for the client's delayed ACK: this is the ceiling.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    });
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(15))
        .max_concurrent_streams(Some(256))
        .http2_max_header_list_size(Some(16 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(EchoServiceServer::new(Echo))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| e.to_string())
}
