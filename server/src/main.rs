//! The `pixl-ipc-server` binary: flags and config file in, a server on a UNIX socket out, with
//! a graceful drain on SIGINT/SIGTERM.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pixl_ipc_server::{Server, DEFAULT_SOCKET_MODE};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // This thread accepts connections, handles signals and logs statistics; the connections
    // themselves run on the server's worker threads (`--threads`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pixl-ipc-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pixl-ipc-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Args) -> anyhow::Result<()> {
    let config = cli::resolve(&args)?;
    // Install the handlers before the socket exists, so a signal sent as soon as the server is
    // reachable drains it rather than killing it.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let mode = config.socket_mode;
    let (uids, gids) = (config.allowed_uids.clone(), config.allowed_gids.clone());
    // A daemon serving many connections wants its whole descriptor allowance; the server then
    // keeps max_connections within it.
    match pixl_ipc_server::raise_descriptor_limit() {
        Ok(limit) => tracing::debug!(limit, "descriptor limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the descriptor limit"),
    }
    let running = Server::new(config).start().await?;
    let handle = running.handle();
    let hint = if mode == DEFAULT_SOCKET_MODE {
        ": owner only; --chmod 777 opens it to every local user, as pixl-ipc did"
    } else {
        ""
    };
    // Who can reach each listener: the socket's mode and allow-list, each WebSocket's rules.
    let allowed = match (&uids[..], &gids[..]) {
        ([], []) => String::new(),
        (uids, gids) => {
            let uids = uids.iter().map(|id| format!("uid {id}"));
            let list: Vec<String> = uids
                .chain(gids.iter().map(|id| format!("gid {id}")))
                .collect();
            format!("; only {}", list.join(", "))
        }
    };
    let ws: String = handle
        .ws_access()
        .iter()
        .map(|listener| format!(" and {listener}"))
        .collect();
    println!(
        "pixl-ipc-server listening on {} (mode {mode:04o}{hint}{allowed}){ws}",
        handle.socket_path().display()
    );
    let _ = std::io::stdout().flush();

    let waiting = running.wait();
    tokio::pin!(waiting);
    let mut signals = 0;
    let report = loop {
        tokio::select! {
            report = &mut waiting => break report,
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        signals += 1;
        if signals == 1 {
            tracing::info!("signal received: draining (send it again to stop at once)");
            handle.shutdown();
        } else {
            anyhow::bail!("second signal: stopped without waiting for in-flight requests");
        }
    };
    if !report.drained {
        tracing::warn!("exit timeout reached before every in-flight request was answered");
    }
    Ok(())
}
