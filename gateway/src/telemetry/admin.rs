//! The admin listener: `GET /metrics` (Prometheus text), `/healthz`
//! (the process answers) and `/readyz` (the audit ledger answers, so shares
//! can be recorded). Plain HTTP on its own address, for the scraper and the
//! orchestrator, never the gRPC port.

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use liaison_ledger::Ledger;

use super::Telemetry;

#[derive(Debug, Clone)]
struct Admin {
    telemetry: Telemetry,
    ledger: Arc<Ledger>,
}

/// The admin routes.
pub fn router(telemetry: Telemetry, ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Admin { telemetry, ledger })
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    match admin.telemetry.prometheus_text().await {
        Some(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    match admin.ledger.size().await {
        Ok(_) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the audit ledger does not answer: {e}\n"),
        ),
    }
}
