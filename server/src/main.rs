//! The `pixl-ipc-server` binary: flags and config file in, a server on a UNIX socket out, with
//! a graceful drain on SIGINT/SIGTERM/SIGQUIT, a reload of the token, allow-list and log level
//! on SIGHUP; SIGUSR1/SIGUSR2 are logged and ignored. Under systemd it serves the sockets of a
//! `.socket` unit and notifies a `Type=notify` service manager (see contrib/systemd/).

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pixl_ipc_server::{
    ActivationError, Listeners, Notifier, Server, ServerHandle, DEFAULT_SOCKET_MODE,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use cli::{LevelSource, LogFormat};

/// The log filter in force, and the handle that swaps it on reload.
struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    level: String,
    json: bool,
}

impl Logging {
    /// Logs to stderr as text or JSON lines, at the level `--log-level` or `RUST_LOG` names
    /// (the config file's `log_level` is applied once it has been read).
    fn init(args: &cli::Args) -> Logging {
        let (level, source) = cli::initial_log_level(args);
        let (filter, level, bad_env) = match EnvFilter::try_new(&level) {
            Ok(filter) => (filter, level, None),
            // Only RUST_LOG can be invalid here: the flag was checked when parsed.
            Err(err) => (EnvFilter::new("info"), "info".to_owned(), Some(err)),
        };
        let (filter, handle) = reload::Layer::new(filter);
        let json = args.log_format == LogFormat::Json;
        let text = (!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        });
        // One object a line, the event's fields beside `message` (as journald and log
        // shippers read them), without span lists the server does not use.
        let json_layer = json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(std::io::stderr)
        });
        tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json_layer)
            .init();
        if let (Some(err), LevelSource::Env) = (bad_env, source) {
            tracing::warn!(error = %err, "RUST_LOG is not a valid log filter; logging at info");
        }
        Logging {
            filter: handle,
            level,
            json,
        }
    }

    /// Puts `level` (already checked) in force; says whether it changed.
    fn set_level(&mut self, level: &str) -> anyhow::Result<bool> {
        if level == self.level {
            return Ok(false);
        }
        let filter = EnvFilter::try_new(level)
            .with_context(|| format!("{level:?} is not a log level or filter"))?;
        self.filter
            .reload(filter)
            .context("cannot change the log level")?;
        self.level = level.to_owned();
        Ok(true)
    }
}

/// What the service manager passed in: sockets (socket activation) and where to notify.
struct FromManager {
    listeners: Result<Option<Listeners>, ActivationError>,
    notifier: Result<Option<Notifier>, ActivationError>,
}

fn main() -> ExitCode {
    // First, while this is the only thread: these read and remove LISTEN_*, NOTIFY_SOCKET and
    // WATCHDOG_* from the environment (so no child inherits them), which is safe only here.
    let manager = FromManager {
        listeners: Listeners::from_env(),
        notifier: Notifier::from_env(),
    };
    let args = cli::Args::parse();
    let mut logging = Logging::init(&args);
    let json = logging.json;
    // This thread accepts connections, handles signals and logs statistics; the connections
    // themselves run on the server's worker threads (`--threads`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report_error(json, format_args!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, manager, &mut logging)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints each error of the chain once (see pixl_ipc_server::ServerError).
            report_error(json, format_args!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes the fatal error to stderr: a plain line, or with `--log-format json` a log object
/// like every other line. `eprintln!` would panic if stderr is closed; there is nobody to tell
/// then, and the exit status still says it failed.
fn report_error(json: bool, message: std::fmt::Arguments<'_>) {
    if json && tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!("{message}");
    } else if json {
        // The log filter turns errors off (RUST_LOG=off, or only other targets): the one fatal
        // message must still be said, in the same shape.
        let timestamp = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let line = serde_json::json!({
            "timestamp": timestamp.to_string(),
            "level": "ERROR",
            "target": "pixl_ipc_server",
            "message": message.to_string(),
        });
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        let _ = writeln!(std::io::stderr(), "pixl-ipc-server: {message}");
    }
}

/// What a signal asks of the server, with the signal's name for the log.
#[derive(Clone, Copy)]
enum Received {
    /// Drain and stop (a second one stops at once).
    Stop(&'static str),
    /// Re-read the token file and the config file's reloadable settings.
    Reload(&'static str),
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
            (SignalKind::hangup(), Received::Reload("SIGHUP")),
            (SignalKind::user_defined1(), Received::Ignore("SIGUSR1")),
            (SignalKind::user_defined2(), Received::Ignore("SIGUSR2")),
        ];
        let mut handlers = Vec::with_capacity(table.len());
        for (kind, meaning) in table {
            let (Received::Stop(name) | Received::Reload(name) | Received::Ignore(name)) = meaning;
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

/// The socket's mode for the banner: the one we set, or for a socket passed in, what it has.
fn describe_mode(handle: &ServerHandle, configured: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    if handle.socket_path().to_string_lossy().starts_with('@') {
        return "abstract, passed in by the service manager".to_owned();
    }
    if !handle.socket_inherited() {
        return format!("mode {configured:04o}");
    }
    match std::fs::metadata(handle.socket_path()) {
        Ok(meta) => format!(
            "passed in by the service manager, mode {:04o}",
            meta.permissions().mode() & 0o777
        ),
        Err(_) => "passed in by the service manager".to_owned(),
    }
}

async fn run(args: cli::Args, manager: FromManager, logging: &mut Logging) -> anyhow::Result<()> {
    let config = cli::resolve(&args)?;
    let (level, _) = cli::start_log_level(&args)?;
    logging.set_level(&level)?;
    // A socket passed in that cannot be served is a broken unit: refuse to start, naming it.
    let listeners = manager.listeners?.unwrap_or_default();
    // Without notifications a Type=notify unit times out, which the log line explains; the
    // server itself can still serve.
    let notifier = manager.notifier.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot notify the service manager; serving without notifications");
        None
    });
    if listeners.unix.is_some()
        && (config.socket_mode != DEFAULT_SOCKET_MODE || config.socket_group.is_some())
    {
        tracing::warn!("--chmod and --group do not apply to a socket passed in by the service manager: set SocketMode= and SocketGroup= in the .socket unit");
    }
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
    let mut server = Server::new(config).with_listeners(listeners);
    for spec in &forwards {
        server
            .add_forward(spec)
            .with_context(|| format!("cannot forward {}", spec.pattern))?;
    }
    if let Some(notifier) = notifier {
        server = server.with_notifier(notifier);
    }
    let running = server.start().await?;
    let handle = running.handle();
    // Abstract whether we bound the name or systemd passed it in (`ListenStream=@name`).
    let is_abstract = handle.socket_path().to_string_lossy().starts_with('@');
    let hint = if is_abstract || handle.socket_inherited() {
        ""
    } else if mode == DEFAULT_SOCKET_MODE {
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
    // An abstract socket has no file, hence no mode: the allow-list is its only access control.
    let access = match (is_abstract, allowed.is_empty()) {
        (true, true) => "abstract socket, no file: anyone on this host (in this network namespace) can connect; limit it with --allow-uid/--allow-gid".to_owned(),
        (true, false) => format!("abstract socket, no file{allowed}; --allow-uid/--allow-gid set who may connect"),
        (false, _) => format!("{}{hint}{allowed}", describe_mode(&handle, mode)),
    };
    print_banner(&format!(
        "pixl-ipc-server listening on {} ({access}){ws}",
        handle.socket_path().display()
    ));

    let waiting = running.wait();
    tokio::pin!(waiting);
    let report = loop {
        let name = tokio::select! {
            report = &mut waiting => break report,
            received = signals.next() => match received {
                Received::Stop(name) => name,
                Received::Reload(name) => {
                    reload(&args, &handle, logging, name, is_abstract);
                    continue;
                }
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

/// Re-reads what can change while serving (see `cli::reload`) and puts it in force for new
/// connections, all or nothing; logs what changed, never the token.
fn reload(
    args: &cli::Args,
    handle: &ServerHandle,
    logging: &mut Logging,
    signal: &str,
    is_abstract: bool,
) {
    let fresh = match cli::reload(args) {
        Ok(fresh) => fresh,
        Err(err) => {
            tracing::error!(
                signal,
                error = %format_args!("{err:#}"),
                "reload failed; keeping every previous setting"
            );
            return;
        }
    };
    let before = handle.reloadable();
    let mut rules = before.clone();
    if let Some(token) = fresh.token {
        rules.ws_token = Some(token);
    }
    rules.allowed_uids = fresh.allowed_uids;
    rules.allowed_gids = fresh.allowed_gids;
    let report = match handle.reload(rules) {
        Ok(report) => report,
        Err(err) => {
            let err = anyhow::Error::from(err);
            tracing::error!(
                signal,
                error = %format_args!("{err:#}"),
                "reload failed; keeping every previous setting"
            );
            return;
        }
    };
    let (level, source) = fresh.log_level;
    let previous_level = logging.level.clone();
    let level_changed = match logging.set_level(&level) {
        Ok(changed) => changed,
        Err(err) => {
            tracing::error!(signal, error = %format_args!("{err:#}"), "reload: log level unchanged");
            false
        }
    };
    if report.token_changed {
        tracing::info!(
            signal,
            "reload: new WebSocket token in force for new connections; open ones keep going"
        );
    }
    if report.allowed_peers_changed {
        let now = handle.reloadable();
        tracing::info!(
            signal,
            allowed_uids = ?now.allowed_uids,
            allowed_gids = ?now.allowed_gids,
            previous_uids = ?before.allowed_uids,
            previous_gids = ?before.allowed_gids,
            "reload: new uid/gid allow-list in force for new connections; open ones keep going"
        );
        if is_abstract && !now.has_allow_list() {
            tracing::warn!(signal, "the abstract socket has no allow-list now: anyone on this host (in this network namespace) can connect");
        }
    }
    if level_changed {
        tracing::info!(signal, level = %level, previous = %previous_level, "reload: new log level");
    }
    if !report.token_changed && !report.allowed_peers_changed && !level_changed {
        let fixed = if args.config.is_none() && args.ws_token_file.is_none() {
            " (no --config or --ws-token-file to re-read)"
        } else if source != LevelSource::File && args.config.is_some() {
            " (the log level is set by --log-level or RUST_LOG)"
        } else {
            ""
        };
        tracing::info!(signal, "reload: nothing changed{fixed}");
    }
}
