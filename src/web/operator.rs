//! The operator's listener (`[metrics] listen`, meant for the operator's network only):
//! `GET /metrics` (Prometheus text exposition of what [`crate::metrics`] recorded, plus the
//! spool gauges read at scrape time), `/healthz` (the process answers) and `/readyz` (the store
//! answers too).

use crate::app::App;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::TcpListener;

struct MetricsState {
    handle: PrometheusHandle,
    shared: Arc<App>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until shutdown.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, shared: Arc<App>) {
    let shutdown = shared.shutdown.clone();
    let state = Arc::new(MetricsState { handle, shared });
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    super::serve_app(listener, app, shutdown, "metrics_listener").await;
}

async fn render(State(state): State<Arc<MetricsState>>) -> String {
    let (spool, holding) = (state.shared.spool.clone(), state.shared.quarantine.holding().clone());
    let gauges = tokio::task::spawn_blocking(move || (spool_gauges(&spool), spool_gauges(&holding))).await.ok();
    if let Some((delivery, held)) = gauges {
        if let Some((messages, oldest)) = delivery {
            metrics::gauge!("moat_spool_messages").set(messages as f64);
            metrics::gauge!("moat_spool_oldest_age_seconds").set(oldest as f64);
        }
        if let Some((messages, oldest)) = held {
            metrics::gauge!("moat_holding_messages").set(messages as f64);
            metrics::gauge!("moat_holding_oldest_age_seconds").set(oldest as f64);
        }
    }
    state.handle.render()
}

/// Messages in a spool and the age of the oldest, in seconds.
fn spool_gauges(spool: &crate::spool::Spool) -> Option<(usize, i64)> {
    let ids = spool.list().ok()?;
    let oldest = ids
        .first()
        .and_then(|id| spool.load_envelope(id).ok())
        .map_or(0, |(envelope, _, _)| (crate::store::unix_now() - envelope.received_at).max(0));
    Some((ids.len(), oldest))
}

async fn ready(State(state): State<Arc<MetricsState>>) -> (StatusCode, &'static str) {
    match state.shared.quarantine.store().schema_version().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n"),
    }
}
