//! The server: binds listeners, admits connections within limits, runs sessions, reloads on
//! SIGHUP and drains on SIGTERM.
//!
//! Guarantees:
//! - connections beyond `max_connections` or `max_connections_per_ip` get `421 4.7.0` and a close;
//! - a PROXY protocol listener drops connections without a valid header (read under a deadline);
//! - SIGHUP loads the configuration, certificate and filters (rule files) anew, and re-reads
//!   the users' lists from the store (also read every 15 s); if any fails,
//!   every error is logged and the running set stays in force (never half-applied);
//! - SIGTERM stops accepting, lets sessions finish within `shutdown_grace`, then returns; the
//!   spool keeps every message that was acknowledged.

use crate::admission::{Bounds, Limiter};
use crate::app::{self, App};
use crate::config::{Config, Listener};
use crate::quarantine::Quarantine;
use crate::relay::Queue;
use crate::relay::RecipientVerifier;
use crate::scoring;
use crate::session::{Conn, ListenerInfo, Session};
use crate::smtp::proxy;
use crate::smtp::reply::replies;
use crate::spool::Spool;
use crate::tls;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create state directory {path}: {source}")]
    StateDir { path: String, source: std::io::Error },
    #[error("spool: {0}")]
    Spool(String),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("delivery queue: {0}")]
    Queue(String),
    #[error("filters:\n{0}")]
    Filters(scoring::BuildErrors),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("quarantine: {0}")]
    Quarantine(#[from] crate::quarantine::QuarantineError),
}

/// How long a PROXY protocol header may take to arrive.
const PROXY_HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// Runs until SIGTERM/SIGINT. `path` is re-read on SIGHUP.
pub async fn serve(path: PathBuf, config: Config) -> Result<(), ServeError> {
    tls::install_crypto_provider();
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|source| ServeError::StateDir { path: config.state_dir.display().to_string(), source })?;
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let spool = Arc::new(Spool::open(&config.spool_dir()).map_err(|e| ServeError::Spool(e.to_string()))?);
    let metrics = match &config.metrics {
        Some(m) => Some(TcpListener::bind(m.listen).await.map_err(|source| ServeError::Bind { address: m.listen, source })?),
        None => None,
    };
    // Recording starts before the rules are logged in force, so their hash is on /metrics.
    let metrics_handle = metrics.as_ref().and_then(|_| crate::metrics::install());
    let listeners = bind_all(&config.listen).await?;
    let web = match &config.web {
        Some(web) => Some(TcpListener::bind(web.listen).await.map_err(|source| ServeError::Bind { address: web.listen, source })?),
        None => None,
    };
    let admin = match &config.admin {
        Some(admin) => {
            let token = crate::web::admin::AdminToken::open(&config.admin_token_file())
                .map_err(|e| ServeError::StateDir { path: config.admin_token_file().display().to_string(), source: e })?;
            Some((TcpListener::bind(admin.listen).await.map_err(|source| ServeError::Bind { address: admin.listen, source })?, token))
        }
        None => None,
    };
    let config = Arc::new(ArcSwap::from_pointee(config));
    let quarantine = Arc::new(Quarantine::open(config.clone(), spool.clone()).await?);
    if let Err(error) = quarantine.learner().refresh().await {
        tracing::warn!(event = "classifier_sync", error = %error, note = "no model in force until the store answers");
    }
    let scorer = scoring::build(config.load_full(), quarantine.learner().in_force()).map_err(ServeError::Filters)?;
    scorer.log_rules_in_force();
    quarantine.set_reasons(scorer.reasons());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let queue = Queue::start(config.clone(), spool.clone(), shutdown_rx.clone()).await.map_err(|e| ServeError::Queue(e.to_string()))?;
    tokio::spawn({
        let (config, queue, quarantine, shutdown) = (config.clone(), queue.clone(), quarantine.clone(), shutdown_rx.clone());
        async move {
            if let Err(error) = crate::control::serve(config, queue, quarantine, shutdown).await {
                tracing::error!(event = "control_socket", error = %error);
            }
        }
    });
    let shared = Arc::new(App {
        config: config.clone(),
        config_path: path.clone(),
        tls: Arc::new(ArcSwap::from_pointee(acceptor)),
        spool,
        quarantine,
        queue,
        scorer: Arc::new(ArcSwap::from_pointee(scorer)),
        user_policies: ArcSwap::from_pointee(Vec::new()),
        verifier: RecipientVerifier::default(),
        connections: Arc::new(Limiter::default()),
        shutdown: shutdown_rx.clone(),
    });
    let quarantine_task = tokio::spawn({
        let (queue, shutdown) = (shared.queue.clone(), shutdown_rx.clone());
        shared.quarantine.clone().run(move |id| queue.submit(id), shutdown)
    });
    let scheduler_task = tokio::spawn({
        let (queue, shutdown) = (shared.queue.clone(), shutdown_rx.clone());
        crate::scheduler::run(shared.quarantine.clone(), move |id| queue.submit(id), shutdown)
    });
    let limiter = shared.connections.clone();
    metrics::gauge!("moat_stress").set(0.0);
    for (listener, settings) in listeners {
        tracing::info!(event = "listening", address = %settings.address, starttls = settings.starttls, proxy_protocol = settings.proxy_protocol);
        tokio::spawn(accept_loop(listener, settings, shared.clone()));
    }
    if let (Some(listener), Some(handle)) = (metrics, metrics_handle) {
        tracing::info!(event = "listening", address = %listener.local_addr().map_or_else(|_| String::new(), |a| a.to_string()), metrics = true);
        tokio::spawn(crate::web::operator::serve(listener, handle, shared.clone()));
    }
    if let Some(web) = web {
        tracing::info!(event = "listening", address = %shared.config.load().web.as_ref().map_or_else(String::new, |w| w.listen.to_string()), web = true);
        tokio::spawn(crate::web::serve(web, shared.clone()));
    }
    if let Some((listener, token)) = admin {
        tracing::info!(event = "listening", address = %listener.local_addr().map_or_else(|_| String::new(), |a| a.to_string()), admin = true);
        tokio::spawn(crate::web::admin::serve(listener, token, shared.clone()));
    }
    tokio::spawn(app::watch_rules(shared.clone()));
    tokio::spawn(app::refresh_user_lists(shared.clone()));
    tokio::spawn({
        let config = shared.config.clone();
        crate::learning::run(shared.quarantine.learner().clone(), move || config.load().classifier.sync.duration(), shutdown_rx.clone())
    });
    crate::systemd::notify("READY=1");
    wait_for_signals(&path, &shared).await?;
    crate::systemd::notify("STOPPING=1");
    tracing::info!(event = "shutdown", open_connections = limiter.open());
    let _ = shutdown_tx.send(true);
    let grace = shared.config.load().timeouts.shutdown_grace.duration();
    let drained = tokio::time::timeout(grace, async {
        while limiter.open() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(event = "shutdown_grace_expired", open_connections = limiter.open());
    }
    let _ = tokio::time::timeout(grace + Duration::from_secs(5), shared.queue.stopped()).await;
    // The scheduler gives up its lease as it stops, so another node takes over at once.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(quarantine_task, scheduler_task) }).await;
    Ok(())
}

async fn bind_all(listen: &[Listener]) -> Result<Vec<(TcpListener, Listener)>, ServeError> {
    let mut bound = Vec::new();
    for settings in listen {
        let listener =
            TcpListener::bind(settings.address).await.map_err(|source| ServeError::Bind { address: settings.address, source })?;
        bound.push((listener, settings.clone()));
    }
    Ok(bound)
}

async fn wait_for_signals(path: &std::path::Path, shared: &App) -> Result<(), ServeError> {
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = app::reload(path, shared).await; }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

async fn accept_loop(listener: TcpListener, settings: Listener, shared: Arc<App>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(admit(stream, peer, settings.clone(), shared.clone()));
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(event = "accept_error", error = %error);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// PROXY header, connection limits, then the session.
async fn admit(mut stream: TcpStream, peer: SocketAddr, settings: Listener, shared: Arc<App>) {
    let (peer, input) = if settings.proxy_protocol {
        match read_proxy_header(&mut stream).await {
            Some((source, rest)) => (source.unwrap_or(peer), rest),
            None => {
                metrics::counter!("moat_connections_total", "ending" => "bad_proxy_header").increment(1);
                tracing::info!(event = "connection", client_ip = %peer.ip(), ending = "bad_proxy_header");
                return;
            }
        }
    } else {
        (peer, Vec::new())
    };
    let config = shared.config.load_full();
    let bounds = Bounds {
        max_total: config.limits.max_connections,
        max_per_ip: config.limits.max_connections_per_ip,
        stress_threshold: config.limits.stress_threshold,
    };
    let connections = shared.connections.clone();
    let Some(_permit) = connections.acquire(peer.ip(), bounds) else {
        let reply = replies::too_many_connections(&config.hostname).to_bytes();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply)).await;
        metrics::counter!("moat_connections_total", "ending" => "too_many_connections").increment(1);
        tracing::info!(event = "connection", client_ip = %peer.ip(), ending = "too_many_connections");
        return;
    };
    let listener = ListenerInfo { starttls: settings.starttls };
    metrics::gauge!("moat_connections_open").increment(1.0);
    Session::new(shared, listener, peer, Conn::Plain(stream), input).run().await;
    metrics::gauge!("moat_connections_open").decrement(1.0);
}

/// Reads a PROXY v1/v2 header. Returns the client's address (None for LOCAL) and any bytes
/// that followed it; None if the header is missing, invalid or late.
async fn read_proxy_header(stream: &mut TcpStream) -> Option<(Option<SocketAddr>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            match proxy::parse(&buf) {
                Ok(Some((header, used))) => return Some((header.source, buf[used..].to_vec())),
                Ok(None) if buf.len() < proxy::MAX_HEADER_LEN => {}
                _ => return None,
            }
            let mut chunk = [0u8; 512];
            let want = (proxy::MAX_HEADER_LEN - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PROXY_HEADER_DEADLINE, read).await.ok().flatten()
}
