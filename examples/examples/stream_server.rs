//! Streamed replies: one request, many replies ("tail", "progress" endpoints).
//!
//! Shows:
//! - `Server::add_stream_handler(pattern, name, |Data(data): Data<T>| async move { Ok(stream) })`
//!   (any extractors, in any order, as `add_handler` takes):
//!   the handler decodes its data like a typed handler and returns a `Stream`; each item goes
//!   out as `{"ipcReqID":..,"data":item,"ipcMore":true}` as soon as it is ready;
//! - a progress endpoint (`/job/run`) whose last value is the job's result (`Last(..)`: sent as
//!   the final line, without `ipcMore`);
//! - a tail endpoint (`/log/tail`) that sends the lines logged so far, then follows new ones
//!   until the client cancels (`{"ipcReqID":..,"ipcCancel":true}`, answered with the final
//!   line `cancelled`) or disconnects (the stream is dropped at once);
//! - pacing for free: while a client does not read, its streams are not polled.
//!
//! Run it (it prints the socket path and keeps running until Ctrl-C):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example stream_server                  # $TMPDIR/pixl-ipc-stream.sock
//! cargo run -p pixl-ipc-examples --example stream_server -- /tmp/my.sock  # or $PIXL_IPC_EXAMPLE_SOCKET
//! ```
//!
//! then, in other terminals: `pixl-ipc --socket /tmp/my.sock stream /log/tail` (Ctrl-C cancels)
//! and `pixl-ipc --socket /tmp/my.sock call /log/append '"hello"'`.
//!
//! `--demo` runs the server on a temporary socket, speaks the wire to it over a plain UNIX
//! socket (so every line is visible), checks the answers, prints `demo ok` and exits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{ensure, Context};
use futures_util::{stream, Stream, StreamExt};
use pixl_ipc_server::{Data, HandlerError, IntoStreamItem, Last, Server, ServerConfig, StreamItem};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// The application's log: the lines so far, and a channel announcing each new one.
struct Log {
    lines: Mutex<Vec<String>>,
    appended: broadcast::Sender<String>,
}

impl Log {
    fn new() -> Arc<Log> {
        Arc::new(Log {
            lines: Mutex::new(Vec::new()),
            // A follower that falls 64 lines behind misses lines (it is told how many).
            appended: broadcast::channel(64).0,
        })
    }

    fn append(&self, line: String) -> usize {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.push(line.clone());
        // No follower is no error.
        let _ = self.appended.send(line);
        lines.len()
    }
}

/// `/log/tail`'s data: `{"from": n}` (optional): start at line `n` of what is logged already.
#[derive(Debug, Default, Deserialize)]
struct Tail {
    #[serde(default)]
    from: usize,
}

/// `/log/tail`: the lines logged so far (from `from`), then every new line until cancelled.
fn tail(log: &Log, tail: Tail) -> impl Stream<Item = Result<Value, HandlerError>> + Send {
    // Subscribed before the copy, under the lock, so no line falls between the two.
    let (backlog, follow) = {
        let lines = log.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let backlog: Vec<String> = lines.iter().skip(tail.from).cloned().collect();
        (backlog, log.appended.subscribe())
    };
    let backlog = stream::iter(backlog).map(|line| Ok(json!({ "line": line })));
    let follow = stream::unfold(follow, |mut follow| async move {
        let item = match follow.recv().await {
            Ok(line) => json!({ "line": line }),
            Err(broadcast::error::RecvError::Lagged(missed)) => json!({ "missed": missed }),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(item), follow))
    });
    backlog.chain(follow)
}

/// `/job/run`'s data: `{"steps": n}`.
#[derive(Debug, Deserialize)]
struct Job {
    steps: u32,
}

/// `/job/run`: a progress item per step, then the job's result as the final line.
fn run_job(
    job: Job,
) -> Result<impl Stream<Item = Result<StreamItem, HandlerError>> + Send, HandlerError> {
    if job.steps == 0 || job.steps > 100 {
        return Err(HandlerError::new("bad_job", "steps must be from 1 to 100"));
    }
    let steps = job.steps;
    Ok(stream::unfold(1, move |step| async move {
        if step > steps {
            return None;
        }
        // The work of one step.
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Items of two kinds in one stream: each written with `into_stream_item`. `Last` makes
        // the result the final line (no `ipcMore`); the stream is not polled after it.
        let item = if step == steps {
            Last(json!({ "result": "done", "steps": steps })).into_stream_item()
        } else {
            json!({ "progress": step, "of": steps }).into_stream_item()
        };
        Some((item, step + 1))
    }))
}

/// The server with the log and job routes.
fn build_server(path: &Path) -> anyhow::Result<Server> {
    let server = Server::new(ServerConfig::new(path));
    let log = Log::new();
    let appending = log.clone();
    server.add_typed_handler("/log/append", "append", move |line: String, _ctx| {
        let count = appending.append(line);
        async move { Ok::<_, HandlerError>(json!({ "lines": count })) }
    })?;
    server.add_stream_handler(
        "/log/tail",
        "tail",
        move |Data(data): Data<Option<Tail>>| {
            let lines = tail(&log, data.unwrap_or_default());
            async move { Ok::<_, HandlerError>(lines) }
        },
    )?;
    server.add_stream_handler("/job/run", "job", |Data(job): Data<Job>| async move {
        run_job(job)
    })?;
    Ok(server)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// The socket path: the first argument, else `$PIXL_IPC_EXAMPLE_SOCKET`, else
/// `$TMPDIR/pixl-ipc-stream.sock`.
fn socket_path(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-stream.sock"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let path = socket_path(args.into_iter().next());
    let running = build_server(&path)?
        .start()
        .await
        .with_context(|| format!("cannot start the server on {}", path.display()))?;
    println!("listening on {}", running.handle().socket_path().display());
    stop_signal().await?;
    running.shutdown().await;
    Ok(())
}

/// A raw wire connection: one JSON line out, one JSON line in.
struct Wire {
    reader: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Wire {
    async fn open(path: &Path) -> anyhow::Result<Wire> {
        use tokio::io::AsyncBufReadExt;
        let (read, writer) = tokio::net::UnixStream::connect(path).await?.into_split();
        Ok(Wire {
            reader: tokio::io::BufReader::new(read).lines(),
            writer,
        })
    }

    async fn send(&mut self, message: Value) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        println!("-> {message}");
        self.writer
            .write_all(format!("{message}\n").as_bytes())
            .await?;
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(10), self.reader.next_line())
            .await
            .context("no reply within 10 s")??
            .context("the server closed the connection")?;
        println!("<- {line}");
        Ok(serde_json::from_str(&line)?)
    }
}

/// Starts the server on a temporary socket, runs a job and follows the log, checks the lines.
async fn demo() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sock");
    let running = build_server(&path)?.start().await?;
    let mut wire = Wire::open(&path).await?;

    // Progress items, then the result as the final line (no ipcMore).
    wire.send(
        json!({"uri": "/job/run", "ipcReqID": "job", "data": {"steps": 3}, "ipcStream": true}),
    )
    .await?;
    for step in 1..3 {
        let line = wire.read().await?;
        ensure!(
            line["ipcMore"] == true && line["data"]["progress"] == step,
            "wrong progress"
        );
    }
    let line = wire.read().await?;
    ensure!(
        line.get("ipcMore").is_none() && line["data"]["result"] == "done",
        "no result"
    );

    // A plain call to a streaming route: one clear error, as the original clients would get.
    wire.send(json!({"uri": "/job/run", "ipcReqID": "plain", "data": {"steps": 3}}))
        .await?;
    ensure!(
        wire.read().await?["data"]["code"] == "stream_required",
        "no stream_required"
    );

    // Follow the log on one connection while another appends to it.
    wire.send(json!({"uri": "/log/tail", "ipcReqID": "tail", "ipcStream": true}))
        .await?;
    let mut other = Wire::open(&path).await?;
    for text in ["first", "second"] {
        other
            .send(json!({"uri": "/log/append", "ipcReqID": text, "data": text}))
            .await?;
        other.read().await?;
        let line = wire.read().await?;
        ensure!(
            line["data"]["line"] == text && line["ipcMore"] == true,
            "missed a line"
        );
    }
    // Cancel: the stream ends with `cancelled`, and the connection carries on.
    wire.send(json!({"ipcReqID": "tail", "ipcCancel": true}))
        .await?;
    let line = wire.read().await?;
    ensure!(
        line["ipcReqID"] == "tail" && line["code"] == "cancelled",
        "not cancelled"
    );

    running.shutdown().await;
    println!("demo ok");
    Ok(())
}
