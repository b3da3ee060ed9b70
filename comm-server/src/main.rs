//! `comm-server`: the command line. Kept short; the server is `comm_server::server::App`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use comm_server::config::{Config, DEMO_CONFIG};
use comm_server::server::{App, Listeners};

#[derive(Parser)]
#[command(
    name = "comm-server",
    version,
    about = "Call-center communication server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on the embedded demo config when no --config is given).
    Serve {
        #[command(flatten)]
        opts: ServeOpts,
    },
    /// Check a config file and what it references; errors name file and line.
    CheckConfig {
        /// The config file; default: the embedded demo config.
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeOpts {
    #[arg(long)]
    config: Option<PathBuf>,
    /// SIP listen address for both UDP and TCP (overrides the config).
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// SIP UDP listen address only.
    #[arg(long)]
    sip_udp: Option<SocketAddr>,
    /// SIP TCP listen address only.
    #[arg(long)]
    sip_tcp: Option<SocketAddr>,
    /// Data directory (SQLite database, recordings).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::parse(DEMO_CONFIG, "deploy/comm-server.toml (embedded)")?,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { opts } => serve(opts),
        Command::CheckConfig { config } => load(config.as_ref()).map(|_| println!("config OK")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(opts: ServeOpts) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut config = load(opts.config.as_ref())?;
    if let Some(d) = opts.data_dir {
        config.server.data_dir = d;
    }
    let parse = |s: &str| -> anyhow::Result<Option<SocketAddr>> {
        Ok(if s.is_empty() { None } else { Some(s.parse()?) })
    };
    let udp = opts
        .sip_udp
        .or(opts.sip)
        .map_or_else(|| parse(&config.sip.udp), |a| Ok(Some(a)))?;
    let tcp = opts
        .sip_tcp
        .or(opts.sip)
        .map_or_else(|| parse(&config.sip.tcp), |a| Ok(Some(a)))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listeners = Listeners::bind(udp, tcp).await?;
        tracing::info!(udp = ?listeners.udp_addr(), tcp = ?listeners.tcp_addr(), "listening");
        let app = App::build(config).await?;
        app.run(listeners, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
