//! `pixl-ipc`: call any pixl-ipc server from the command line.
//!
//! Exit codes: 0 success, 2 usage (including request data that is not JSON), 3 cannot connect, 4 timeout, 5 the server answered with an
//! error, 1 anything else (connection lost, bad reply). Errors are one line on stderr. `health`
//! uses the same codes, so a monitor can tell "down" (3) from "hung" (4) and "failing" (5).
//! `stream` and `watch --stats` use them too (after the lines already printed); interrupted
//! (Ctrl-C) or with their output closed (a pipe into `head`), they cancel the stream and exit 0.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use pixl_ipc_client::{Backoff, Client, Error, ReconnectPolicy, ReplyStream, SubscriptionError};
use serde_json::{json, Value};

/// Call a pixl-ipc server over its UNIX socket or a WebSocket.
#[derive(Debug, Parser)]
#[command(name = "pixl-ipc", version, about)]
struct Cli {
    /// Socket path, or @NAME for a Linux abstract socket [default:
    /// $XDG_RUNTIME_DIR/pixl-ipc.sock, or /tmp/pixl-ipc.sock]
    #[arg(long, env = "PIXL_IPC_SOCKET", conflicts_with = "url", global = true)]
    socket: Option<PathBuf>,
    /// Server URL: unix:///path, unix:@name (abstract socket), ws://host:port/path or
    /// wss://host:port/path
    #[arg(long, global = true)]
    url: Option<String>,
    /// For wss://: PEM file of the CA certificates to trust [default: the system's]
    #[arg(long, value_name = "FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// For wss://: the name the server certificate must be valid for [default: the URL's host]
    #[arg(long, value_name = "NAME", global = true)]
    tls_domain: Option<String>,
    /// For WebSockets: file holding the bearer token (or set PIXL_IPC_WS_TOKEN)
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// How long to wait for each reply, e.g. 500ms, 2s [default: 10s; for health: 2s, connection
    /// and answer together]
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    timeout: Option<Duration>,
    /// Largest reply to decode, in bytes; a longer one fails at once (exit 1)
    #[arg(long, value_name = "BYTES", default_value_t = pixl_ipc_client::DEFAULT_MAX_REPLY_BYTES, global = true)]
    max_reply_bytes: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send DATA (JSON; "-" reads it from stdin; default {}) to URI and print the reply's data
    Call {
        /// The uri, e.g. /ipcserver/test/echo
        uri: String,
        /// The request data as JSON, or - for stdin
        data: Option<String>,
    },
    /// Print the server's statistics (/ipcserver/stats)
    Stats,
    /// Check that the server answers (/ipcserver/test/echo) within --timeout (default 2s): exit
    /// 0 and one line on stdout if it does; else 3 cannot connect, 4 no answer in time, 5 error
    /// reply, 1 wrong answer, with the reason on stderr
    Health,
    /// Print what the server says about itself (/ipcserver/info): version, routes, listeners
    Info,
    /// Measure round trips to /ipcserver/test/echo
    Ping {
        /// How many round trips
        #[arg(long, short = 'c', default_value_t = 4)]
        count: u32,
        /// Pause between round trips, e.g. 200ms
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Send DATA as a streamed request (ipcStream) to URI and print each item's data as one
    /// JSON line, the final value last, until the stream ends or is interrupted. --timeout
    /// applies to the wait for each line
    Stream {
        /// The uri, e.g. /ipcserver/test/stream
        uri: String,
        /// The request data as JSON, or - for stdin
        data: Option<String>,
    },
    /// Print every push the server sends, one JSON line each, until interrupted; with --stats,
    /// the server's statistics every --interval instead (the /ipcserver/stats/watch stream)
    Watch {
        /// Follow /ipcserver/stats/watch: one JSON line of statistics per interval
        #[arg(long)]
        stats: bool,
        /// With --stats: time between two statistics, in ms or with a unit (500, 2s)
        #[arg(long, requires = "stats", default_value = "1000", value_parser = parse_interval)]
        interval: Duration,
    },
}

/// A duration in milliseconds (`500`) or with a unit (`500ms`, `2s`).
fn parse_interval(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => humantime::parse_duration(text).map_err(|err| err.to_string()),
    }
}

/// The reply timeout when --timeout is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `health`'s whole budget (connect and answer) when --timeout is not given: short, as
/// monitors expect.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A monitor reads the first word: what failed is the server's health, and why follows.
    let prefix = if matches!(cli.command, Command::Health) {
        "unhealthy: "
    } else {
        ""
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(1, &format!("cannot start the async runtime: {err}")),
    };
    let outcome = runtime.block_on(run(cli));
    // Do not wait for a decode the command already gave up on (a large reply that came too
    // late keeps decoding on a blocking thread): the answer has been printed.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<Error>() {
            // The client's errors already carry their cause in one line.
            Some(client_error) => {
                let code = match client_error {
                    Error::Connect { .. }
                    | Error::NotConnected { .. }
                    | Error::UnsupportedAddress { .. } => 3,
                    Error::InvalidOption { .. } => 2,
                    Error::Timeout { .. } => 4,
                    Error::Server { .. } => 5,
                    _ => 1,
                };
                fail(code, &format!("{prefix}{client_error}"))
            }
            None if err.downcast_ref::<serde_json::Error>().is_some() => {
                fail(2, &format!("{prefix}{err:#}"))
            }
            None => fail(1, &format!("{prefix}{err:#}")),
        },
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("pixl-ipc: {message}");
    ExitCode::from(code)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let address = match (&cli.url, &cli.socket) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => pixl_ipc_io::default_socket_path().display().to_string(),
    };
    let reconnect = match cli.command {
        // Watching pushes is long-lived: ride out server restarts. (A stream is never re-sent
        // on a new connection, so `watch --stats` ends with the connection instead.)
        Command::Watch { stats: false, .. } => ReconnectPolicy::Backoff(Backoff::default()),
        _ => ReconnectPolicy::Off,
    };
    let timeout = cli.timeout.unwrap_or(match cli.command {
        Command::Health => HEALTH_TIMEOUT,
        _ => DEFAULT_TIMEOUT,
    });
    let line_timeout = match cli.command {
        // The wait for each statistics line includes the interval itself.
        Command::Watch {
            stats: true,
            interval,
        } => timeout.saturating_add(interval),
        _ => timeout,
    };
    let mut builder = Client::builder()
        .request_timeout(line_timeout)
        .connect_timeout(timeout)
        .max_reply_bytes(cli.max_reply_bytes)
        .user_agent(format!("pixl-ipc-cli/{}", env!("CARGO_PKG_VERSION")))
        .reconnect(reconnect);
    if let Some(ca_file) = &cli.ca_file {
        builder = builder.tls_ca_file(ca_file);
    }
    if let Some(domain) = &cli.tls_domain {
        builder = builder.tls_domain(domain);
    }
    let file = cli.token_file.as_deref();
    let token = pixl_ipc_io::read_token(file).with_context(|| {
        format!(
            "cannot read the token file {}",
            file.unwrap_or(std::path::Path::new("")).display()
        )
    })?;
    if let Some(token) = token {
        builder = builder.bearer_token(token);
    }
    let started = Instant::now();
    let client = builder.connect(address.as_str()).await?;
    match cli.command {
        Command::Health => health(&client, &address, started, timeout).await?,
        Command::Info => print_json(&client.send("/ipcserver/info", json!({})).await?)?,
        Command::Call { uri, data } => {
            let data = read_data(data.as_deref())?;
            let reply: Value = client.call(&uri, &data).await?;
            print_json(&reply)?;
        }
        Command::Stats => print_json(&client.send("/ipcserver/stats", json!({})).await?)?,
        Command::Ping { count, interval } => ping(&client, &address, count, interval).await?,
        Command::Stream { uri, data } => {
            let data = read_data(data.as_deref())?;
            print_stream(&client, client.stream(&uri, &data)).await?;
        }
        Command::Watch {
            stats: true,
            interval,
        } => {
            let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
            let stats = client.stream("/ipcserver/stats/watch", json!({ "interval": ms }));
            print_stream(&client, stats).await?;
        }
        Command::Watch { stats: false, .. } => watch(&client).await?,
    }
    client.close().await;
    Ok(())
}

fn read_data(data: Option<&str>) -> anyhow::Result<Value> {
    let text = match data {
        None => return Ok(json!({})),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the request data from stdin")?;
            text
        }
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text).context("the request data is not valid JSON")
}

/// Pretty on a terminal, one compact line otherwise (for pipes and scripts).
fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    } else {
        writeln!(out, "{value}")?;
    }
    Ok(())
}

async fn ping(
    client: &Client,
    address: &str,
    count: u32,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut times = Vec::new();
    for seq in 1..=count {
        let started = Instant::now();
        client
            .send("/ipcserver/test/echo", json!({"seq": seq}))
            .await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!("reply from {address}: seq={seq} time={ms:.3} ms");
        times.push(ms);
        if seq < count {
            tokio::time::sleep(interval).await;
        }
    }
    if !times.is_empty() {
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(0.0, f64::max);
        let avg = times.iter().sum::<f64>() / times.len() as f64;
        println!("{count} round trips: min {min:.3} ms, avg {avg:.3} ms, max {max:.3} ms");
    }
    Ok(())
}

/// One echo within what is left of `timeout` since `started` (the connection took the rest):
/// the server reads, routes and answers.
async fn health(
    client: &Client,
    address: &str,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let probe = json!({"health": std::process::id()});
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let reply = client
        .send_with_timeout("/ipcserver/test/echo", &probe, left)
        .await?;
    anyhow::ensure!(
        reply == probe,
        "{address} answered the echo with {} instead of {probe}",
        pixl_ipc_protocol::quote::bounded(&reply.to_string())
    );
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("ok: {address} answered in {ms:.3} ms");
    Ok(())
}

/// Prints each item of `stream` as one compact JSON line, flushed at once, until it ends, fails,
/// Ctrl-C, or stdout closes (the last two cancel it: dropping it sends the cancel).
async fn print_stream(client: &Client, mut stream: ReplyStream<Value>) -> anyhow::Result<()> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let item = tokio::select! {
            _ = &mut interrupted => break,
            item = stream.next() => item,
        };
        let Some(item) = item else { return Ok(()) };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{}", item?).and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader went away (`| head`): what it wanted is printed.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(err) => return Err(err).context("cannot write to stdout"),
        }
    }
    drop(stream);
    // Give the connection task a moment to write the cancel before the connection closes
    // (closing alone also stops the stream: the server drops a gone client's handlers).
    let _ =
        tokio::time::timeout(CANCEL_GRACE, client.send("/ipcserver/test/echo", json!({}))).await;
    Ok(())
}

/// How long an interrupted stream waits for its cancel to go out.
const CANCEL_GRACE: Duration = Duration::from_millis(200);

async fn watch(client: &Client) -> anyhow::Result<()> {
    let mut pushes = client.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            push = pushes.recv() => match push {
                Ok(push) => {
                    let line = serde_json::to_string(&push)?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
                Err(SubscriptionError::Lagged(missed)) => eprintln!("pixl-ipc: missed {missed} pushes (output too slow)"),
                Err(SubscriptionError::Closed) => anyhow::bail!("the connection closed"),
            },
        }
    }
}
