//! The HTTP server: routes, startup, and graceful shutdown (on SIGTERM or Ctrl-C stop
//! accepting, let in-flight requests finish for a grace period, then abort what is left).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::openai::{self, AppState};

/// The router for `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/tokenize", post(openai::tokenize))
        .route("/detokenize", post(openai::detokenize))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            openai::ApiError::not_found("no such route; see /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, /metrics")
        })
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.engine.metrics.render(),
    )
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves `state` on `listener` until `stop` resolves; then refuses new requests, waits up to
/// `grace` for in-flight ones, aborts the rest and returns once every connection is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let on_stop = async move {
        stop.await;
        tracing::info!("shutting down: refusing new requests, {grace:?} for in-flight ones");
        state.shutting_down.store(true, Ordering::SeqCst);
        let engine = state.engine.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::warn!("grace period over: aborting the requests still running");
            engine.abort_all();
        });
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(on_stop)
        .await
}
