//! The HTTP side: `/metrics` (Prometheus), `/` (the status page) and
//! `/status.json` (what the page reads), served by `axum` on a runtime of
//! one thread of its own. The run's supervising thread only swaps the last
//! status in (a lock and a pointer, once a second); a scrape encodes it on
//! the server's thread. The server stays up until the process exits, so
//! that the page keeps the final report and a last scrape sees the final
//! counters.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use clusterduck_engine::metrics::{Status, Watch};
use prometheus_client::registry::Registry;

use crate::page::PAGE;
use crate::prometheus::{registry, scrape, Board};

/// The content type of the OpenMetrics text `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    Bind {
        /// The address asked for.
        address: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Its thread or runtime could not be started.
    Start(std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind { address, source } => {
                write!(f, "cannot serve metrics on {address}: {source}")
            }
            Self::Start(e) => write!(f, "cannot start the metrics server: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } | Self::Start(source) => Some(source),
        }
    }
}

/// A running server; [`watch`](Self::watch) gives the run's side.
#[derive(Debug)]
pub struct MetricsServer {
    board: Board,
    address: SocketAddr,
}

#[derive(Clone)]
struct Shared {
    board: Board,
    registry: Arc<Registry>,
}

impl MetricsServer {
    /// Binds `address` (`host:port`; port 0 picks one) and serves from
    /// now on, on a thread of its own, until the process exits.
    pub fn start(address: &str) -> Result<Self, ServeError> {
        let bind = |source| ServeError::Bind {
            address: address.to_owned(),
            source,
        };
        let listener = std::net::TcpListener::bind(address).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let board = Board::default();
        let shared = Shared {
            board: board.clone(),
            registry: Arc::new(registry(board.clone())),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(ServeError::Start)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(bind)?
        };
        let app = Router::new()
            .route("/", get(page))
            .route("/status.json", get(status))
            .route("/metrics", get(metrics))
            .with_state(shared);
        std::thread::Builder::new()
            .name("clusterduck-http".into())
            .spawn(move || {
                if let Err(e) = runtime.block_on(async { axum::serve(listener, app).await }) {
                    tracing::warn!("the metrics server stopped: {e}");
                }
            })
            .map_err(ServeError::Start)?;
        Ok(Self {
            board,
            address: local,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the run shows it.
    pub fn watch(&self) -> Box<dyn Watch> {
        Box::new(BoardWatch(self.board.clone()))
    }
}

/// Puts each status on the board.
struct BoardWatch(Board);

impl Watch for BoardWatch {
    fn show(&mut self, status: &Status) {
        let status = Arc::new(status.clone());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn status(State(shared): State<Shared>) -> impl IntoResponse {
    let last = shared
        .board
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let json = match last {
        Some(status) => serde_json::to_string(&*status),
        None => serde_json::to_string(&Status::default()),
    };
    let json = json.unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    ([(CONTENT_TYPE, "application/json")], json)
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    ([(CONTENT_TYPE, OPENMETRICS)], scrape(&shared.registry))
}
