//! A running node: the viewer listener (HTTP/1.1 and h2c on one port), the optional viewer
//! TLS listener (rustls, TLS 1.2 and 1.3, HTTP/2 or HTTP/1.1 by ALPN), the admin listener,
//! the store, and graceful shutdown (stop accepting, drain in-flight requests within a
//! deadline, checkpoint the store).

use crate::admin::{self, Admin};
use crate::config::Resolved;
use crate::metrics::Metrics;
use crate::proxy::{Proxy, Runtime, Viewer};
use crate::store::Store;
use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A started node.
pub struct Node {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub admin: Arc<Admin>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    drain: Duration,
}

impl Node {
    /// Starts a node: opens the store, binds the viewer and admin listeners (port 0 picks a
    /// free port) and serves until [`shutdown`](Self::shutdown).
    pub async fn start(config: Resolved) -> anyhow::Result<Node> {
        let config = Arc::new(config);
        let opened = Instant::now();
        let store = open_store(&config)?;
        let metrics = Arc::new(Metrics::new());
        let runtime = Runtime::new(config.clone()).map_err(anyhow::Error::msg)?;
        let proxy = Arc::new(Proxy::new(runtime, store, metrics));
        proxy
            .invalidations
            .attach(&config.file.store.path)
            .context("cannot load the invalidation rules (store.path)")?;
        proxy
            .access_log
            .configure(config.file.access_log.as_ref())?;

        let node = &config.file.node;
        let listener = TcpListener::bind(node.listen)
            .await
            .with_context(|| format!("cannot listen on {} (node.listen)", node.listen))?;
        let admin = TcpListener::bind(node.admin_listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} (node.admin_listen)", node.admin_listen)
            })?;
        let tls_listener = match (node.listen_tls, &node.tls) {
            (Some(at), Some(files)) => {
                let acceptor = tls_acceptor(&files.cert, &files.key)?;
                let l = TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} (node.listen_tls)"))?;
                Some((l, acceptor))
            }
            _ => None,
        };
        let addr = listener.local_addr()?;
        let admin_addr = admin.local_addr()?;
        let tls_addr = match &tls_listener {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let drain = node.drain_timeout.get();
        let admin_state = Arc::new(Admin::new(proxy.clone(), addr));
        // Readiness: the tag index is rebuilt from the store (a scan) before /readyz says so.
        {
            let admin = admin_state.clone();
            tokio::task::spawn_blocking(move || {
                let p = &admin.proxy;
                let tags = p.surrogate_keys.rebuild(p.store.as_ref());
                let stats = p.store.stats();
                p.metrics.recovered_objects.set(stats.objects as i64);
                p.metrics
                    .recovery_seconds
                    .set(opened.elapsed().as_secs_f64());
                admin
                    .ready
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::info!(
                    objects = stats.objects,
                    tags,
                    seconds = opened.elapsed().as_secs_f64(),
                    "store ready"
                );
            });
        }

        let mut tasks = vec![
            tokio::spawn(serve_viewers(
                listener,
                None,
                admin_state.clone(),
                stop_rx.clone(),
                drain,
            )),
            tokio::spawn(admin::serve(admin, admin_state.clone(), stop_rx.clone())),
            tokio::spawn(reclaim(proxy.clone(), stop_rx.clone())),
            tokio::spawn(checkpoints(
                proxy.clone(),
                config.file.store.checkpoint_interval.get(),
                stop_rx.clone(),
            )),
        ];
        if let Some(cfg) = &config.file.cluster {
            let cluster = crate::cluster::Cluster::new(
                cfg,
                addr,
                &proxy.node_id,
                proxy.metrics.clone(),
                None,
            )
            .await
            .map_err(anyhow::Error::msg)
            .context("[cluster]")?;
            proxy.cluster.store(Some(cluster.clone()));
            tasks.push(tokio::spawn(cluster.maintain(stop_rx.clone())));
        }
        if let Some((l, acceptor)) = tls_listener {
            tasks.push(tokio::spawn(serve_viewers(
                l,
                Some(acceptor),
                admin_state.clone(),
                stop_rx.clone(),
                drain,
            )));
        }
        tracing::info!(node = %proxy.node_id, %addr, ?tls_addr, %admin_addr, "serving");
        Ok(Node {
            addr,
            tls_addr,
            admin_addr,
            proxy,
            admin: admin_state,
            stop,
            tasks,
            drain,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies a reloaded `[cluster]`: a new member view replaces the running one (members
    /// in both keep their health; requests in flight finish with the view they started
    /// with), or the node leaves its tier when the section is gone.
    pub async fn apply_cluster(
        &self,
        cfg: Option<&crate::config::ClusterConfig>,
    ) -> anyhow::Result<()> {
        let old = self.proxy.cluster.load_full();
        let Some(cfg) = cfg else {
            if let Some(old) = old {
                self.proxy.cluster.store(None);
                old.retire(true);
                tracing::info!("[cluster] removed: this node fills from its own upstream only");
            }
            return Ok(());
        };
        let cluster = crate::cluster::Cluster::new(
            cfg,
            self.addr,
            &self.proxy.node_id,
            self.proxy.metrics.clone(),
            old.as_deref(),
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("[cluster]")?;
        self.proxy.cluster.store(Some(cluster.clone()));
        if let Some(old) = old {
            old.retire(false);
        }
        tokio::spawn(cluster.maintain(self.stop.subscribe()));
        Ok(())
    }

    /// The viewer TLS listener's address, when `node.listen_tls` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stops accepting, drains in-flight requests (up to `node.drain_timeout`), writes the
    /// store's checkpoint.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::sleep(self.drain + Duration::from_secs(1));
        tokio::pin!(deadline);
        for t in self.tasks {
            tokio::select! {
                _ = t => {}
                _ = &mut deadline => break,
            }
        }
        // close() flushes the write buffer, writes the index checkpoint and releases the
        // store's lock.
        let store = self.proxy.store.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || store.close()).await {
            tracing::error!(error = %e, "closing the store failed");
        }
        if let Err(e) = self.proxy.invalidations.persist() {
            tracing::error!("{e:#}");
        }
        self.proxy.access_log.close();
        tracing::info!(node = %self.proxy.node_id, "stopped");
    }
}

fn open_store(config: &Resolved) -> anyhow::Result<Arc<dyn Store>> {
    let s = &config.file.store;
    let store = crate::store::disk::DiskStore::open(s)
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "cannot open the cache store at {} (store.path)",
                s.path.display()
            )
        })?;
    Ok(Arc::new(store))
}

/// The hyper connection builder for viewers: HTTP/1.1 and h2c, header limits per SPEC.
pub(crate) fn viewer_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(crate::config::defaults::MAX_HEADER_BYTES + 1024)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    b
}

/// The viewer TLS configuration: the certificate chain and private key from PEM files,
/// TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let pem = std::fs::read(cert).with_context(|| {
        format!(
            "cannot read the TLS certificate {} (node.tls.cert)",
            cert.display()
        )
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {} (node.tls.cert)", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no PEM certificate (node.tls.cert)",
            cert.display()
        );
    }
    let pem = std::fs::read(key)
        .with_context(|| format!("cannot read the TLS key {} (node.tls.key)", key.display()))?;
    let key_der = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("bad PEM in {} (node.tls.key)", key.display()))?
        .with_context(|| format!("{} holds no PEM private key (node.tls.key)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .with_context(|| {
            format!(
                "the key {} does not fit the certificate {}",
                key.display(),
                cert.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// How long a viewer may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_viewers(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    admin: Arc<Admin>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let builder = Arc::new(viewer_builder());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let admin = admin.clone();
                let viewer = Viewer { addr: peer, tls: tls.is_some() };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let admin = admin.clone();
                    async move {
                        // Writes relayed by peers of the tier (see `admin`).
                        if req.uri().path().starts_with(admin::RELAY_PREFIX) {
                            return Ok::<_, std::convert::Infallible>(admin::serve_relay(&admin, req).await);
                        }
                        Ok(admin.proxy.handle(req, viewer).await)
                    }
                });
                match &tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(crate::conn::ExplainErrors::new(stream)), svc).into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, %peer, "connection ended with an error");
                            }
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task so a slow viewer never
                        // holds up the accept loop; a connection still handshaking at
                        // shutdown is simply dropped.
                        let acceptor = acceptor.clone();
                        let builder = builder.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection(TokioIo::new(crate::conn::ExplainErrors::new(stream)), svc).into_owned();
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(error = %e, %peer, "TLS connection ended with an error");
                            }
                        });
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed with requests still in flight");
    }
}

/// Gives back the space of invalidated objects: a reclaim pass shortly after rules appear,
/// then every minute while any rule is live.
async fn reclaim(proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_pass: Option<Instant> = None;
    let mut seen = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let rules = proxy.invalidations.rule_count();
                let due = rules > 0
                    && (proxy.invalidations.latest() != seen
                        || last_pass.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)));
                if !due {
                    continue;
                }
                let p = proxy.clone();
                let removed = tokio::task::spawn_blocking(move || p.invalidations.reclaim(p.store.as_ref()))
                    .await
                    .unwrap_or(0);
                proxy.metrics.invalidation_reclaimed.inc_by(removed);
                seen = proxy.invalidations.latest();
                last_pass = Some(Instant::now());
            }
            _ = stop.changed() => return,
        }
    }
}

async fn checkpoints(proxy: Arc<Proxy>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let store = proxy.store.clone();
                match tokio::task::spawn_blocking(move || store.checkpoint()).await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "periodic checkpoint failed"),
                    Err(e) => tracing::warn!(error = %e, "periodic checkpoint task failed"),
                    Ok(Ok(())) => {}
                }
            }
            _ = stop.changed() => return,
        }
    }
}
