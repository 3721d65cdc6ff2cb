//! The `strata` binary: `serve`, `check-config`, `demo`.

use anyhow::Context;

/// mimalloc: measured faster than the system allocator on the hit path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use strata::config::{ByteSize, ConfigFile, Resolved};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A persistent, disk-backed HTTP cache node for the regional and shield tiers of a CDN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node, from a config file or in front of one origin.
    Serve {
        /// The config file (TOML); see docs/configuration.md.
        #[arg(long, conflicts_with = "origin")]
        config: Option<PathBuf>,
        /// Run with no config file, in front of this origin, honouring its caching headers.
        #[arg(long, required_unless_present = "config")]
        origin: Option<String>,
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        cache_size: Option<ByteSize>,
    },
    /// Validate a config file and print the resolved behaviours.
    CheckConfig { file: PathBuf },
    /// Start a sample origin and a POP → regional → shield chain on loopback, replay a Zipf
    /// workload, restart the shield, and print hit ratios and origin requests per tier.
    Demo {
        /// Requests to replay before and after the restart.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Distinct objects in the workload.
        #[arg(long, default_value_t = 2_000)]
        objects: u64,
        /// Instead: compare three cooperating peers (127.0.0.2-4) with three independent
        /// nodes on the same Zipf workload, and print origin requests for each.
        #[arg(long)]
        peers: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve {
            config,
            origin,
            listen,
            admin_listen,
            id,
            cache_dir,
            cache_size,
        } => load_serve_config(
            config,
            origin,
            listen,
            admin_listen,
            id,
            cache_dir,
            cache_size,
        )
        .and_then(|(cfg, path)| run(strata::serve::serve(cfg, path))),
        Command::Demo {
            requests,
            objects,
            peers: false,
        } => run(strata::demo::run(requests, objects)),
        Command::Demo {
            requests,
            objects,
            peers: true,
        } => run(strata::demo::peers(requests, objects)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A worker going idle hands the access-log lines it holds to the writer.
        .on_thread_park(strata::access_log::flush_thread)
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(fut)
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let (cfg, text) = ConfigFile::load(file)?;
    let resolved = Resolved::new(cfg, &file.display().to_string(), Some(&text))?;
    print!("{}", resolved.describe());
    println!("{}: OK", file.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn load_serve_config(
    config: Option<PathBuf>,
    origin: Option<String>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    id: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_size: Option<ByteSize>,
) -> anyhow::Result<(Resolved, Option<PathBuf>)> {
    let (mut file, text, name) = match (&config, &origin) {
        (Some(path), _) => {
            let (f, t) = ConfigFile::load(path)?;
            (f, Some(t), path.display().to_string())
        }
        (None, Some(o)) => (ConfigFile::quick(o), None, "--origin".to_string()),
        (None, None) => anyhow::bail!("give --config FILE or --origin URL"),
    };
    if let Some(l) = listen {
        file.node.listen = l;
    }
    if let Some(a) = admin_listen {
        file.node.admin_listen = a;
    }
    if let Some(i) = id {
        file.node.id = Some(i);
    }
    if let Some(d) = cache_dir {
        file.store.path = d;
    }
    if let Some(s) = cache_size {
        file.store.size = s;
        if file.store.memory > s {
            file.store.memory = s;
        }
    }
    let resolved = Resolved::new(file, &name, text.as_deref())?;
    Ok((resolved, config))
}
