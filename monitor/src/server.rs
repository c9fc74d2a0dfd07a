//! The HTTP side: `/metrics` (Prometheus), `/` (the status page) and
//! `/status.json` (what the page reads), served by `axum` on a runtime of
//! one thread of its own. The run's supervising thread only swaps the last
//! status in (a lock and a pointer, once a second); a scrape encodes it on
//! the server's thread. Once its run ended, the server stays up until the
//! process exits, so that the page keeps the final report and a last
//! scrape sees the final counters (the report's); a server whose run never
//! started (the launch failed) stops and frees its address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use clusterduck_engine::metrics::{Status, Watch};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

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
    /// Stops the server when dropped, unless the run ended.
    stop: Option<oneshot::Sender<()>>,
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
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("clusterduck-http".into())
            .spawn(move || {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                    // A dropped sender (the run ended) keeps it serving.
                    if stopped.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                });
                if let Err(e) = runtime.block_on(async { serve.await }) {
                    tracing::warn!("the metrics server stopped: {e}");
                }
            })
            .map_err(ServeError::Start)?;
        Ok(Self {
            board,
            address: local,
            stop: Some(stop),
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the run shows it: the server serves as long as the run goes,
    /// and, once the run ended, until the process exits; dropped before
    /// its run ended (a launch that failed), it stops.
    pub fn watch(self) -> Box<dyn Watch> {
        Box::new(BoardWatch(self))
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Puts each status on the board.
struct BoardWatch(MetricsServer);

impl BoardWatch {
    fn put(&self, status: &Status) {
        let status = Arc::new(status.clone());
        *self.0.board.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
}

impl Watch for BoardWatch {
    fn show(&mut self, status: &Status) {
        self.put(status);
    }

    fn end(&mut self, status: &Status) {
        self.put(status);
        // Serve on, with the final report: dropping the sender unsent.
        drop(self.0.stop.take());
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
    let json = json.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
    ([(CONTENT_TYPE, "application/json")], json)
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    ([(CONTENT_TYPE, OPENMETRICS)], scrape(&shared.registry))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use clusterduck_engine::metrics::RunState;

    use super::*;

    /// The body of `GET path`, or `None` if the server does not answer.
    fn get(address: SocketAddr, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response.split_once("\r\n\r\n")?.1.to_owned())
    }

    fn until(what: &str, mut fact: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fact() {
            assert!(Instant::now() < deadline, "waited 10 s for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_server_whose_run_never_started_stops_and_one_whose_run_ended_serves_on() {
        let unstarted = MetricsServer::start("127.0.0.1:0").unwrap();
        let address = unstarted.address();
        let body = get(address, "/status.json").expect("it serves");
        assert!(body.contains("\"run\":\"starting\""), "{body}");
        drop(unstarted.watch());
        until("the server to stop", || {
            get(address, "/status.json").is_none()
        });

        let ended = MetricsServer::start("127.0.0.1:0").unwrap();
        let address = ended.address();
        let mut watch = ended.watch();
        let status = Status {
            run: RunState::Finished,
            ..Status::default()
        };
        watch.end(&status);
        drop(watch);
        std::thread::sleep(Duration::from_millis(50));
        let body = get(address, "/status.json").expect("it serves on");
        assert!(body.contains("\"run\":\"finished\""), "{body}");
        let page = get(address, "/").unwrap();
        assert!(page.contains("<svg id=\"graph\""), "{page}");
    }

    #[test]
    fn an_address_in_use_is_an_error_naming_it() {
        let first = MetricsServer::start("127.0.0.1:0").unwrap();
        let taken = first.address().to_string();
        let err = MetricsServer::start(&taken).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot serve metrics on {taken}: ")),
            "{err}"
        );
    }
}
