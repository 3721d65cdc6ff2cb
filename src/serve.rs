//! `strata serve`: runs a node until SIGTERM or SIGINT; SIGHUP re-reads the config file
//! (a bad file keeps the running config and logs why); SIGUSR1 reopens the access log.

use crate::config::{ConfigFile, Resolved};
use crate::metrics::ReloadLabels;
use crate::proxy::Runtime;
use crate::server::Node;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub async fn serve(config: Resolved, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match &config_path {
                Some(path) => reload(&node, path).await,
                None => tracing::info!("SIGHUP ignored: running without a config file"),
            },
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: reopening the access log");
                node.proxy.access_log.reopen();
            }
        }
    }
    tracing::info!("stopping: draining in-flight requests");
    node.shutdown().await;
    Ok(())
}

/// Re-reads the config file and swaps it in, `[cluster]` (peers added or removed, timeouts,
/// DNS settings) included; on any error the running config stays.
pub async fn reload(node: &Node, path: &Path) {
    let attempt = async {
        let (file, text) = ConfigFile::load(path)?;
        let resolved = Resolved::new(file, &path.display().to_string(), Some(&text))?;
        let running = node.proxy.config();
        if resolved.file.node.listen != running.file.node.listen
            || resolved.file.node.admin_listen != running.file.node.admin_listen
        {
            tracing::warn!("listen addresses change only on restart; keeping the running ones");
        }
        let runtime = Runtime::new(Arc::new(resolved)).map_err(anyhow::Error::msg)?;
        // The access log may move; a path that cannot be opened refuses the whole reload.
        node.proxy
            .access_log
            .configure(runtime.config.file.access_log.as_ref())?;
        let cluster = runtime.config.file.cluster.clone();
        node.proxy.reload(runtime);
        node.apply_cluster(cluster.as_ref()).await?;
        anyhow::Ok(())
    };
    let reloads = &node.proxy.metrics.reloads;
    match attempt.await {
        Ok(()) => {
            reloads.get_or_create(&ReloadLabels { result: "ok" }).inc();
            tracing::info!(file = %path.display(), "configuration reloaded")
        }
        Err(e) => {
            reloads
                .get_or_create(&ReloadLabels { result: "error" })
                .inc();
            tracing::error!(file = %path.display(), "reload refused, keeping the running configuration: {e:#}")
        }
    }
}
