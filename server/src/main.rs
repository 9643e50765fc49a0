//! The `pixl-ipc-server` binary: flags and config file in, a server on a UNIX socket out, with
//! a graceful drain on SIGINT/SIGTERM/SIGQUIT; SIGHUP/SIGUSR1/SIGUSR2 are logged and ignored.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pixl_ipc_server::{Server, DEFAULT_SOCKET_MODE};
use tokio::signal::unix::{signal, Signal, SignalKind};
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
            report_error(format_args!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(format_args!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes the fatal error to stderr. `eprintln!` would panic if stderr is closed; there is
/// nobody to tell then, and the exit status still says it failed.
fn report_error(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "pixl-ipc-server: {message}");
}

/// What a signal asks of the server, with the signal's name for the log.
#[derive(Clone, Copy)]
enum Received {
    /// Drain and stop (a second one stops at once).
    Stop(&'static str),
    /// Logged and otherwise ignored: the server keeps serving.
    Ignore(&'static str),
}

/// The signals a daemon commonly receives. Each is handled, so none of them kills the server
/// with its default action (losing in-flight replies and leaving the socket behind).
struct Signals(Vec<(Signal, Received)>);

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        let table = [
            (SignalKind::terminate(), Received::Stop("SIGTERM")),
            (SignalKind::interrupt(), Received::Stop("SIGINT")),
            (SignalKind::quit(), Received::Stop("SIGQUIT")),
            // SIGHUP is the usual "reload"; until there is something to reload, ignore it.
            (SignalKind::hangup(), Received::Ignore("SIGHUP")),
            (SignalKind::user_defined1(), Received::Ignore("SIGUSR1")),
            (SignalKind::user_defined2(), Received::Ignore("SIGUSR2")),
        ];
        let mut handlers = Vec::with_capacity(table.len());
        for (kind, meaning) in table {
            let (Received::Stop(name) | Received::Ignore(name)) = meaning;
            let handler = signal(kind).with_context(|| format!("cannot handle {name}"))?;
            handlers.push((handler, meaning));
        }
        Ok(Signals(handlers))
    }

    /// Waits for the next signal.
    async fn next(&mut self) -> Received {
        let waiting = self.0.iter_mut().map(|(handler, meaning)| {
            Box::pin(async move {
                handler.recv().await;
                *meaning
            })
        });
        futures_util::future::select_all(waiting).await.0
    }
}

/// Prints the banner the harnesses wait for. A closed stdout (`... | true`) must not stop the
/// server: `println!` would panic there, so write and only log a failure.
fn print_banner(banner: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{banner}").and_then(|()| stdout.flush()) {
        tracing::warn!(error = %err, "cannot print the banner to stdout; serving anyway");
    }
}

async fn run(args: cli::Args) -> anyhow::Result<()> {
    let config = cli::resolve(&args)?;
    let forwards = cli::forwards(&args)?;
    // Install the handlers before the socket exists, so a signal sent as soon as the server is
    // reachable drains it rather than killing it.
    let mut signals = Signals::install()?;

    let mode = config.socket_mode;
    let (uids, gids) = (config.allowed_uids.clone(), config.allowed_gids.clone());
    // A daemon serving many connections wants its whole descriptor allowance; the server then
    // keeps max_connections within it.
    match pixl_ipc_server::raise_descriptor_limit() {
        Ok(limit) => tracing::debug!(limit, "descriptor limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the descriptor limit"),
    }
    let server = Server::new(config);
    for spec in &forwards {
        server
            .add_forward(spec)
            .with_context(|| format!("cannot forward {}={}", spec.pattern, spec.address))?;
    }
    let running = server.start().await?;
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
    print_banner(&format!(
        "pixl-ipc-server listening on {} (mode {mode:04o}{hint}{allowed}){ws}",
        handle.socket_path().display()
    ));

    let waiting = running.wait();
    tokio::pin!(waiting);
    let report = loop {
        let name = tokio::select! {
            report = &mut waiting => break report,
            received = signals.next() => match received {
                Received::Stop(name) => name,
                Received::Ignore(name) => {
                    tracing::info!(signal = name, "signal received and ignored; still serving");
                    continue;
                }
            },
        };
        if handle.is_shutting_down() {
            anyhow::bail!("second signal ({name}): stopped without waiting for in-flight requests");
        }
        tracing::info!(
            signal = name,
            "signal received: draining (send it again to stop at once)"
        );
        handle.shutdown();
    };
    if !report.drained {
        tracing::warn!("exit timeout reached before every in-flight request was answered");
    }
    Ok(())
}
