//! The peers benchmark: pixl-ipc against the RPC stacks a user might pick instead for local
//! calls, each with its own idiomatic server and client, echoing the same messages (the
//! original's 1K and 100K), in one interleaved run, unpinned and pinned to one CPU.
//!
//! `cargo run --release -p pixl-ipc-benches --features peers --bin peers [-- --reps N]
//! [--current-thread]`
//!
//! The stacks (see `benches/src/peers/`): the release pixl-ipc-server with the Rust client
//! (UNIX socket and WebSocket); axum on a UNIX socket with a hyper HTTP/1.1 keep-alive client;
//! tonic gRPC on a UNIX socket (the JSON text in a `bytes` field, so its client does no JSON);
//! jsonrpsee over WebSocket and HTTP; zlink (varlink) on a UNIX socket. Every server runs in a
//! process of its own (this program with `--serve KIND ADDRESS`); the clients share one
//! multi-threaded Tokio runtime (two workers here, as `#[tokio::main]` gives), each
//! measurement a task on it.
//!
//! Rows: one call at a time (median and p99 of each call's time), and requests per second with
//! 16 and 128 calls in flight on one connection and with 16 connections x 16 in flight, for a
//! fixed time. Stacks that cannot have several calls in flight on one connection (HTTP/1.1,
//! varlink) get one connection per call in flight instead; the jsonrpsee HTTP client is one
//! client per "connection", with its own pool. Each repetition measures every row twice: with
//! everything free to run on any CPU, then with this process and every server pinned to CPU 0
//! (`sched_setaffinity` on each of their threads); the peers are interleaved within each row.
//!
//! Writes the `peers` section of `benches/RESULTS.md` (`peers-current-thread` with
//! `--current-thread`).
//!
//! For profiles, one side at a time: `peers --serve KIND ADDRESS` runs a peer's server alone
//! (KIND: axum, tonic, jsonrpsee, zlink; the pixl-ipc server is `pixl-ipc-server`), and
//! `peers --calls STACK ADDRESS SIZE COUNT` makes COUNT calls of the SIZE K message one at a
//! time with one stack's client on a current-thread runtime (STACK: ours, ours-ws, axum, tonic,
//! jsonrpsee-ws, jsonrpsee-http, zlink), so that callgrind can count each side's instructions
//! per call (run it at two counts and take the difference).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use pixl_ipc_benches::peers::{
    axum_uds, current_affinity, jsonrpsee_ws, memory_kib, one_cpu, set_thread_affinity, tonic_uds,
    zlink_uds, PeerServer,
};
use pixl_ipc_benches::{
    build_release_server, chart, load_average, progress, repo_root, report, sized_message,
    Repetitions, ServerUnderTest, Spread,
};
use pixl_ipc_client::{Client, ReconnectPolicy};
use serde_json::Value;

/// The pixl-ipc echo route.
const URI: &str = "/ipcserver/test/echo";
/// How long each in-flight row runs per repetition.
const RUN: Duration = Duration::from_millis(300);
/// The CPU of the pinned rows.
const PINNED_CPU: usize = 0;

/// The stacks measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    OursUnix,
    OursWs,
    Axum,
    Tonic,
    JsonrpseeWs,
    JsonrpseeHttp,
    Zlink,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::OursUnix => "pixl-ipc, Rust client, UNIX socket",
            Stack::OursWs => "pixl-ipc, Rust client, WebSocket",
            Stack::Axum => "axum + hyper client, HTTP/1.1, UNIX socket",
            Stack::Tonic => "tonic gRPC, UNIX socket",
            Stack::JsonrpseeWs => "jsonrpsee, WebSocket",
            Stack::JsonrpseeHttp => "jsonrpsee, HTTP/1.1",
            Stack::Zlink => "zlink (varlink), UNIX socket",
        }
    }

    fn is_ours(self) -> bool {
        matches!(self, Stack::OursUnix | Stack::OursWs)
    }
}

/// A stack with the address of its server.
#[derive(Clone)]
struct Peer {
    stack: Stack,
    address: String,
}

/// The servers, in the order of [`StackSet::pids`].
const SERVERS: [&str; 5] = ["pixl-ipc-server", "axum", "tonic", "jsonrpsee", "zlink"];

/// Every stack's server, and a client runtime, started with the calling thread's CPU affinity.
struct StackSet {
    runtime: tokio::runtime::Runtime,
    peers: Vec<Peer>,
    pids: [u32; 5],
    idle_rss: [u64; 5],
    _ours: ServerUnderTest,
    _servers: [PeerServer; 4],
    _dir: tempfile::TempDir,
}

impl StackSet {
    fn start(binary: &std::path::Path, current_thread: bool) -> anyhow::Result<StackSet> {
        let ours = ServerUnderTest::start(binary, &[])?;
        let dir = tempfile::tempdir()?;
        let socket = |name: &str| dir.path().join(name).display().to_string();
        let servers = [
            PeerServer::start("axum", &socket("axum.sock"))?,
            PeerServer::start("tonic", &socket("tonic.sock"))?,
            PeerServer::start("jsonrpsee", "")?,
            PeerServer::start("zlink", &socket("zlink.sock"))?,
        ];
        let pids = [
            ours.pid(),
            servers[0].pid(),
            servers[1].pid(),
            servers[2].pid(),
            servers[3].pid(),
        ];
        let peer = |stack, address: &str| Peer {
            stack,
            address: address.to_owned(),
        };
        let [axum, tonic, jsonrpsee, zlink] = &servers;
        let peers = vec![
            peer(Stack::OursUnix, &ours.socket.display().to_string()),
            peer(Stack::OursWs, &ours.ws_url),
            peer(Stack::Axum, &axum.address),
            peer(Stack::Tonic, &tonic.address),
            peer(Stack::JsonrpseeWs, &jsonrpsee.address),
            peer(Stack::JsonrpseeHttp, &jsonrpsee.address),
            peer(Stack::Zlink, &zlink.address),
        ];
        // What `#[tokio::main]` builds: a worker per CPU this thread may use; or with
        // `--current-thread`, the measuring thread alone.
        let runtime = if current_thread {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
        };
        Ok(StackSet {
            runtime,
            peers,
            idle_rss: pids.map(|pid| memory_kib(pid).0),
            pids,
            _ours: ours,
            _servers: servers,
            _dir: dir,
        })
    }
}

/// One measured row.
#[derive(Clone, Copy)]
enum Row {
    /// One call at a time, `calls` calls of the `size`K message.
    OneAtATime { size: usize, calls: usize },
    /// Calls of the `size`K message kept in flight for `RUN`.
    InFlight {
        size: usize,
        connections: usize,
        per_connection: usize,
    },
}

const ROWS: [Row; 6] = [
    Row::OneAtATime {
        size: 1,
        calls: 500,
    },
    Row::OneAtATime {
        size: 100,
        calls: 200,
    },
    Row::InFlight {
        size: 1,
        connections: 1,
        per_connection: 16,
    },
    Row::InFlight {
        size: 1,
        connections: 1,
        per_connection: 128,
    },
    Row::InFlight {
        size: 1,
        connections: 16,
        per_connection: 16,
    },
    Row::InFlight {
        size: 100,
        connections: 1,
        per_connection: 16,
    },
];

impl Row {
    fn title(self) -> String {
        match self {
            Row::OneAtATime { size, .. } => {
                format!("{size}K one at a time, us: median (min-max); p99")
            }
            Row::InFlight {
                size,
                connections: 1,
                per_connection,
            } => format!("{size}K, {per_connection} in flight, req/s"),
            Row::InFlight {
                size,
                connections,
                per_connection,
            } => format!("{size}K, {connections} conns x {per_connection}, req/s"),
        }
    }

    /// The row's label under its bars in the chart.
    fn short(self) -> String {
        match self {
            Row::OneAtATime { size, .. } => format!("{size}K, one at a time"),
            Row::InFlight {
                size,
                connections: 1,
                per_connection,
            } => format!("{size}K, {per_connection} in flight"),
            Row::InFlight {
                size,
                connections,
                per_connection,
            } => format!("{size}K, {connections} conns x {per_connection}"),
        }
    }

    fn size(self) -> usize {
        match self {
            Row::OneAtATime { size, .. } | Row::InFlight { size, .. } => size,
        }
    }
}

/// A message in each stack's form: the JSON value, and gRPC's message with its JSON text.
struct Payload {
    json: Value,
    grpc: tonic_uds::EchoMessage,
}

impl Payload {
    fn new(size: usize) -> anyhow::Result<Arc<Payload>> {
        let json = sized_message(size);
        let grpc = tonic_uds::EchoMessage {
            body: Bytes::from(serde_json::to_vec(&json)?),
        };
        Ok(Arc::new(Payload { json, grpc }))
    }
}

/// A client of one stack, owned by one task (clones of a shared client where the stack
/// shares).
enum Conn {
    Ours(Client),
    Axum(axum_uds::Conn),
    Tonic(tonic_uds::Conn),
    Jsonrpsee(jsonrpsee_ws::Conn),
    Zlink(zlink_uds::Conn),
}

impl Conn {
    async fn connect(peer: &Peer) -> anyhow::Result<Conn> {
        let address = peer.address.as_str();
        Ok(match peer.stack {
            Stack::OursUnix | Stack::OursWs => Conn::Ours(
                Client::builder()
                    .reconnect(ReconnectPolicy::Off)
                    .request_timeout(Duration::from_secs(60))
                    .connect(address)
                    .await?,
            ),
            Stack::Axum => Conn::Axum(axum_uds::Conn::connect(address).await?),
            Stack::Tonic => Conn::Tonic(tonic_uds::Conn::connect(address).await?),
            Stack::JsonrpseeWs => Conn::Jsonrpsee(jsonrpsee_ws::Conn::connect_ws(address).await?),
            Stack::JsonrpseeHttp => Conn::Jsonrpsee(jsonrpsee_ws::Conn::connect_http(address)?),
            Stack::Zlink => Conn::Zlink(zlink_uds::Conn::connect(address).await?),
        })
    }

    /// Another handle on the same client, where the stack shares one.
    fn share(&self) -> Option<Conn> {
        match self {
            Conn::Ours(client) => Some(Conn::Ours(client.clone())),
            Conn::Tonic(conn) => Some(Conn::Tonic(conn.clone())),
            Conn::Jsonrpsee(conn) => Some(Conn::Jsonrpsee(conn.clone())),
            Conn::Axum(_) | Conn::Zlink(_) => None,
        }
    }

    /// One echo call; returns whether the reply is the message sent (the caller decides
    /// whether to look).
    async fn call(&mut self, payload: &Payload) -> anyhow::Result<Echoed> {
        Ok(match self {
            Conn::Ours(client) => Echoed::Json(client.send(URI, &payload.json).await?),
            Conn::Axum(conn) => Echoed::Json(conn.call(&payload.json).await?),
            Conn::Tonic(conn) => Echoed::Bytes(conn.call(&payload.grpc).await?.body),
            Conn::Jsonrpsee(conn) => Echoed::Json(conn.call(&payload.json).await?),
            Conn::Zlink(conn) => Echoed::Json(conn.call(&payload.json).await?),
        })
    }

    async fn close(self) {
        if let Conn::Ours(client) = self {
            client.close().await;
        }
    }
}

/// A reply, in the stack's form.
enum Echoed {
    Json(Value),
    Bytes(Bytes),
}

impl Echoed {
    fn matches(&self, payload: &Payload) -> bool {
        match self {
            Echoed::Json(value) => *value == payload.json,
            Echoed::Bytes(bytes) => *bytes == payload.grpc.body,
        }
    }
}

/// `connections` clients, each with `per_connection` handles: shared handles where the stack
/// shares a client, otherwise a client (connection) of its own for each.
async fn connect_group(
    peer: &Peer,
    connections: usize,
    per_connection: usize,
) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(connections * per_connection);
    for _ in 0..connections {
        let first = Conn::connect(peer).await?;
        for _ in 1..per_connection {
            conns.push(match first.share() {
                Some(shared) => shared,
                None => Conn::connect(peer).await?,
            });
        }
        conns.push(first);
    }
    Ok(conns)
}

/// Each call's time in microseconds, `calls` calls one at a time on a fresh connection.
async fn one_at_a_time(
    peer: Peer,
    payload: Arc<Payload>,
    calls: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut conn = Conn::connect(&peer).await?;
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        conn.call(&payload).await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    conn.close().await;
    Ok(times)
}

/// Requests per second with `connections x per_connection` calls kept in flight for `RUN`,
/// a task per call in flight.
async fn in_flight(
    peer: Peer,
    payload: Arc<Payload>,
    connections: usize,
    per_connection: usize,
) -> anyhow::Result<f64> {
    let conns = connect_group(&peer, connections, per_connection).await?;
    let started = Instant::now();
    let deadline = started + RUN;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    conn.call(&payload).await?;
                    done += 1;
                }
                anyhow::Ok((done, conn))
            })
        })
        .collect();
    let mut done = 0;
    let mut conns = Vec::new();
    for task in tasks {
        let (count, conn) = task.await??;
        done += count;
        conns.push(conn);
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    for conn in conns {
        conn.close().await;
    }
    Ok(rate)
}

/// The samples of one cell (mode, row, stack): per repetition, the median call time (or the
/// rate) and the p99 call time (one-at-a-time rows only).
#[derive(Clone, Default)]
struct Cell {
    values: Vec<f64>,
    p99: Vec<f64>,
    /// Time spent measuring the cell, warm-up included (to keep the run's length in check).
    seconds: f64,
}

/// `--calls STACK ADDRESS SIZE COUNT`: one stack's client alone, COUNT calls one at a time,
/// the first reply checked (see the module's documentation; checking each would add a
/// comparison to every call's count).
fn calls_only(args: &[String]) -> anyhow::Result<()> {
    let [stack, address, size, count] = args else {
        bail!("--calls takes STACK ADDRESS SIZE COUNT");
    };
    let stack = match stack.as_str() {
        "ours" => Stack::OursUnix,
        "ours-ws" => Stack::OursWs,
        "axum" => Stack::Axum,
        "tonic" => Stack::Tonic,
        "jsonrpsee-ws" => Stack::JsonrpseeWs,
        "jsonrpsee-http" => Stack::JsonrpseeHttp,
        "zlink" => Stack::Zlink,
        other => bail!("no stack named {other:?}"),
    };
    let peer = Peer {
        stack,
        address: address.clone(),
    };
    let payload = Payload::new(size.parse().context("SIZE is a number")?)?;
    let count: usize = count.parse().context("COUNT is a number")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conn = Conn::connect(&peer).await?;
        if !conn.call(&payload).await?.matches(&payload) {
            bail!("{} echoed something else", stack.name());
        }
        for _ in 1..count {
            conn.call(&payload).await?;
        }
        conn.close().await;
        anyhow::Ok(())
    })
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// pixl-ipc against the RPC stacks a user might pick instead, unpinned and pinned to one CPU;
/// writes the peers (or peers-current-thread) section of benches/RESULTS.md.
#[derive(clap::Parser)]
#[command(name = "peers")]
struct Cli {
    #[command(flatten)]
    repetitions: Repetitions<5, 1>,
    /// Give every stack's server and the clients current-thread runtimes
    #[arg(long)]
    current_thread: bool,
    /// Run one peer's server alone (KIND: axum, tonic, jsonrpsee, zlink), as the benchmark starts
    /// its servers; ADDRESS may be left out for jsonrpsee
    #[arg(
        long,
        num_args = 1..=2,
        value_names = ["KIND", "ADDRESS"],
        conflicts_with_all = ["calls", "reps", "current_thread"],
    )]
    serve: Option<Vec<String>>,
    /// Make COUNT calls of the SIZE K message one at a time with one stack's client (STACK: ours,
    /// ours-ws, axum, tonic, jsonrpsee-ws, jsonrpsee-http, zlink), for callgrind
    #[arg(
        long,
        num_args = 4,
        value_names = ["STACK", "ADDRESS", "SIZE", "COUNT"],
        conflicts_with_all = ["reps", "current_thread"],
    )]
    calls: Option<Vec<String>>,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    if let Some(serve) = cli.serve {
        let address = serve.get(1).map_or("", String::as_str);
        return pixl_ipc_benches::peers::serve(&serve[0], address);
    }
    if let Some(calls) = cli.calls {
        return calls_only(&calls);
    }
    let reps = cli.repetitions.reps;
    progress("building the release server...");
    let binary = build_release_server()?;
    let cores = pixl_ipc_benches::machine_cpus();
    // Two sets of servers and client runtimes: one started as this process was started, one
    // started with this thread on one CPU, so that its processes and threads inherit that CPU
    // and size their runtimes to it, as the whole run would under `taskset -c 0`.
    let current_thread = cli.current_thread;
    let unpinned = StackSet::start(&binary, current_thread)?;
    let free = current_affinity()?;
    let pinned_cpu = one_cpu(PINNED_CPU)?;
    set_thread_affinity(&pinned_cpu)?;
    let pinned = StackSet::start(&binary, current_thread);
    set_thread_affinity(&free)?;
    let sets = [unpinned, pinned?];
    let peers = sets[0].peers.clone();
    let payloads = [(1, Payload::new(1)?), (100, Payload::new(100)?)];
    let payload = |size: usize| {
        payloads
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, p)| p.clone())
            .context("no payload of that size")
    };

    // Every stack echoes every message exactly before anything is timed.
    for (set, peer) in sets
        .iter()
        .flat_map(|set| set.peers.iter().map(move |peer| (set, peer)))
    {
        let runtime = &set.runtime;
        for (size, payload) in &payloads {
            let (peer, payload) = (peer.clone(), payload.clone());
            let name = peer.stack.name();
            let ok = runtime.block_on(runtime.spawn(async move {
                let mut conn = Conn::connect(&peer).await?;
                let ok = conn.call(&payload).await?.matches(&payload);
                conn.close().await;
                anyhow::Ok(ok)
            }))??;
            if !ok {
                bail!("{name}: the {size}K echo differs from the message sent");
            }
        }
    }

    let load_before = load_average();
    // cells[mode][row][stack]; mode 0 unpinned, 1 pinned.
    let mut cells = vec![vec![vec![Cell::default(); peers.len()]; ROWS.len()]; 2];
    let started = Instant::now();
    for rep in 0..=reps {
        for (mode, set) in sets.iter().enumerate() {
            let runtime = &set.runtime;
            // This thread drives a current-thread runtime, and waits on a multi-threaded one.
            set_thread_affinity(if mode == 1 { &pinned_cpu } else { &free })?;
            for (row_index, row) in ROWS.iter().enumerate() {
                for (stack_index, peer) in set.peers.iter().enumerate() {
                    progress(&format!(
                        "rep {rep}/{reps}{} {}, {}: {}   [{:.0}s]",
                        if rep == 0 { " (warm-up)" } else { "" },
                        ["unpinned", "pinned"][mode],
                        row.title(),
                        peer.stack.name(),
                        started.elapsed().as_secs_f64()
                    ));
                    let payload = payload(row.size())?;
                    let cell_started = Instant::now();
                    let cell = &mut cells[mode][row_index][stack_index];
                    let context = || format!("{} at {}", peer.stack.name(), row.title());
                    match *row {
                        Row::OneAtATime { calls, .. } => {
                            let mut times = runtime
                                .block_on(runtime.spawn(one_at_a_time(
                                    peer.clone(),
                                    payload,
                                    calls,
                                )))?
                                .with_context(context)?;
                            times.sort_by(f64::total_cmp);
                            if rep > 0 {
                                cell.values.push(percentile(&times, 0.5));
                                cell.p99.push(percentile(&times, 0.99));
                            }
                        }
                        Row::InFlight {
                            connections,
                            per_connection,
                            ..
                        } => {
                            let rate = runtime
                                .block_on(runtime.spawn(in_flight(
                                    peer.clone(),
                                    payload,
                                    connections,
                                    per_connection,
                                )))?
                                .with_context(context)?;
                            if rep > 0 {
                                cell.values.push(rate);
                            }
                        }
                    }
                    cell.seconds += cell_started.elapsed().as_secs_f64();
                }
            }
        }
    }
    set_thread_affinity(&free)?;
    progress("");
    eprintln!();
    eprintln!(
        "whole run {:.0} s; the slowest cells over all repetitions:",
        started.elapsed().as_secs_f64()
    );
    let mut slow: Vec<(f64, String)> = Vec::new();
    for (mode, rows) in cells.iter().enumerate() {
        for (row, stacks) in rows.iter().enumerate() {
            for (stack, cell) in stacks.iter().enumerate() {
                let name = format!(
                    "{} {}, {}",
                    ["unpinned", "pinned"][mode],
                    ROWS[row].title(),
                    peers[stack].stack.name()
                );
                slow.push((cell.seconds, name));
            }
        }
    }
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (seconds, name) in slow.iter().take(6) {
        eprintln!("  {seconds:.1} s  {name}");
    }
    let memory: Vec<[(u64, u64); 2]> = (0..SERVERS.len())
        .map(|index| sets.each_ref().map(|set| memory_kib(set.pids[index])))
        .collect();
    let idle_rss: Vec<[u64; 2]> = (0..SERVERS.len())
        .map(|index| sets.each_ref().map(|set| set.idle_rss[index]))
        .collect();

    let run = RunInfo {
        reps,
        load_before,
        cores,
        current_thread,
    };
    let mut body = render(&run, &peers, &cells, &idle_rss, &memory);
    // The two client runtimes each keep a section of their own.
    let section = if current_thread {
        "peers-current-thread"
    } else {
        "peers"
    };
    for (mode, name) in ["unpinned", "pinned"].iter().enumerate() {
        let file = format!("{section}-{name}.svg");
        std::fs::write(
            repo_root().join("benches").join(&file),
            slowdown_chart(&peers, &cells[mode], name),
        )?;
        let _ = write!(
            body,
            "\n![times slower than pixl-ipc over its UNIX socket, {name}]({file})\n"
        );
    }
    println!("{body}");
    report::write_results(&repo_root().join("benches/RESULTS.md"), section, &body)?;
    Ok(())
}

/// What the report says about the run as a whole.
struct RunInfo {
    reps: usize,
    load_before: String,
    cores: usize,
    current_thread: bool,
}

fn render(
    run: &RunInfo,
    peers: &[Peer],
    cells: &[Vec<Vec<Cell>>],
    idle_rss: &[[u64; 2]],
    memory: &[[(u64, u64); 2]],
) -> String {
    let RunInfo {
        reps,
        ref load_before,
        cores,
        current_thread,
    } = *run;
    let mut body = format!(
        "Command: `cargo run --release -p pixl-ipc-benches --features peers --bin peers{}` \
         ({reps} repetitions after a warm-up, interleaved: in each repetition every row \
         unpinned then pinned, the stacks one after another within a row)\n\n\
         Each stack with its own server and client as a user of it would write them (see \
         `benches/src/peers/`), echoing the original's 1K and 100K messages \
         (`sized_message(1)`, `sized_message(100)`): as the JSON body (axum), the JSON-RPC \
         parameter (jsonrpsee), the varlink parameter (zlink), the pixl-ipc request's data, \
         and for tonic the message's JSON text in a `bytes` field (its client does no JSON \
         work at all). Every server in a process of its own; the clients on {}. One at a time: a fresh connection, 500 calls at 1K and \
         200 at 100K, each call timed. In flight: tasks each keeping one call going for \
         {} ms; HTTP/1.1 (axum) and varlink (zlink) carry one call at a time per connection, \
         so they get one connection per call in flight; the jsonrpsee HTTP client is one \
         client (its own connection pool) per connection of the other stacks. Pinned: a \
         second instance of every server and of the clients' runtime, started from a thread \
         on CPU {PINNED_CPU} (`sched_setaffinity`) so that all their threads inherit that CPU \
         and size themselves to it, as the whole run would under `taskset -c {PINNED_CPU}`; \
         unpinned, the first instance, free to use every CPU.\n\n\
         Versions: {}.\n",
        if current_thread { " -- --current-thread" } else { "" },
        if current_thread {
            "a current-thread Tokio runtime (`--current-thread`)"
        } else {
            "a multi-threaded Tokio runtime as `#[tokio::main]` builds it (a worker per \
             CPU it may use: two unpinned, one pinned), each measurement a task on it"
        },
        RUN.as_millis(),
        versions()
    );
    let ours = peers
        .iter()
        .position(|peer| peer.stack == Stack::OursUnix)
        .unwrap_or(0);
    for (mode, title) in ["unpinned", "pinned to one CPU"].iter().enumerate() {
        let _ = write!(body, "\n### {title}\n\n| stack |");
        for row in ROWS {
            let _ = write!(body, " {} |", row.title());
        }
        body.push_str("\n| --- |");
        body.push_str(&" ---: |".repeat(ROWS.len()));
        body.push('\n');
        for (stack_index, peer) in peers.iter().enumerate() {
            let _ = write!(body, "| {} |", peer.stack.name());
            for (row_index, row) in ROWS.iter().enumerate() {
                let cell = &cells[mode][row_index][stack_index];
                let spread = Spread::of(&cell.values);
                match row {
                    Row::OneAtATime { .. } => {
                        let p99 = Spread::of(&cell.p99);
                        let _ = write!(
                            body,
                            " {:.1} ({:.1}-{:.1}); {:.1} |",
                            spread.median, spread.min, spread.max, p99.median
                        );
                    }
                    Row::InFlight { .. } => {
                        let _ = write!(
                            body,
                            " {} ({}-{}) |",
                            thousands(spread.median),
                            thousands(spread.min),
                            thousands(spread.max)
                        );
                    }
                }
            }
            body.push('\n');
        }
        // Where we lead: pixl-ipc over its UNIX socket against the best other stack.
        let _ = write!(
            body,
            "\nLead of pixl-ipc (UNIX socket) over the fastest other stack in each row, {title} \
             (latency: their median / ours; rate: ours / theirs), and in how many of the \
             {reps} repetitions ours beat that stack's figure of the same repetition:\n\n\
             | row | fastest other stack | lead | repetitions ahead | 2x target |\n\
             | --- | --- | ---: | ---: | --- |\n"
        );
        for (row_index, row) in ROWS.iter().enumerate() {
            let latency = matches!(row, Row::OneAtATime { .. });
            let median =
                |stack_index: usize| Spread::of(&cells[mode][row_index][stack_index].values).median;
            let better = |a: f64, b: f64| if latency { a < b } else { a > b };
            let Some(best) = (0..peers.len())
                .filter(|&index| !peers[index].stack.is_ours())
                .reduce(|a, b| if better(median(b), median(a)) { b } else { a })
            else {
                continue;
            };
            let lead = if latency {
                median(best) / median(ours)
            } else {
                median(ours) / median(best)
            };
            let ahead = cells[mode][row_index][ours]
                .values
                .iter()
                .zip(&cells[mode][row_index][best].values)
                .filter(|(mine, theirs)| better(**mine, **theirs))
                .count();
            let _ = writeln!(
                body,
                "| {} | {} | {lead:.2}x | {ahead} of {reps} | {} |",
                row.title(),
                peers[best].stack.name(),
                if lead >= 2.0 { "met" } else { "missed" }
            );
        }
    }
    body.push_str(
        "\nServer memory, in MiB, of the unpinned and the pinned instance of each server (one \
         process per server; pixl-ipc's serves both its transports, jsonrpsee's both of its):\n\n\
         | server | RSS idle | RSS after the run | peak RSS |\n| --- | ---: | ---: | ---: |\n",
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    for ((name, idle), [free, pinned]) in SERVERS.iter().zip(idle_rss).zip(memory) {
        let _ = writeln!(
            body,
            "| {name} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |",
            mib(idle[0]),
            mib(idle[1]),
            mib(free.0),
            mib(pinned.0),
            mib(free.1),
            mib(pinned.1)
        );
    }
    let load_after = load_average();
    let _ = writeln!(
        body,
        "\nLoad average (1 min) before and after the run: {load_before} and {load_after} on \
         {cores} cores."
    );
    let busy = [load_before.as_str(), load_after.as_str()]
        .iter()
        .any(|load| load.parse::<f64>().is_ok_and(|load| load > 2.5));
    if busy {
        let _ = writeln!(
            body,
            "**The machine was busy (load above 2.5) during this run**: other work shared the \
             CPUs, pinned CPU {PINNED_CPU} included, so every absolute figure is inflated; the \
             ratios between stacks, measured interleaved, are the figures to read."
        );
    }
    body
}

/// The chart of one mode: for each row, how many times slower than pixl-ipc over its UNIX
/// socket every other stack is (latency: its median / ours; rate: ours / its median).
fn slowdown_chart(peers: &[Peer], cells: &[Vec<Cell>], mode: &str) -> String {
    let ours = peers
        .iter()
        .position(|peer| peer.stack == Stack::OursUnix)
        .unwrap_or(0);
    let others: Vec<usize> = (0..peers.len()).filter(|&index| index != ours).collect();
    let values: Vec<Vec<f64>> = ROWS
        .iter()
        .zip(cells)
        .map(|(row, stacks)| {
            let median = |index: usize| Spread::of(&stacks[index].values).median;
            others
                .iter()
                .map(|&index| match row {
                    Row::OneAtATime { .. } => median(index) / median(ours),
                    Row::InFlight { .. } => median(ours) / median(index),
                })
                .collect()
        })
        .collect();
    let groups: Vec<String> = ROWS.iter().map(|row| row.short()).collect();
    let series: Vec<&str> = others
        .iter()
        .map(|&index| peers[index].stack.name())
        .collect();
    let title = format!(
        "Times slower than pixl-ipc (Rust client, UNIX socket), {mode}: medians, log scale"
    );
    chart::bars_svg(&chart::Bars {
        title: &title,
        groups: &groups,
        series: &series,
        values: &values,
        target: (2.0, "2x target"),
    })
}

/// `12345.6` as `12.3k`; below 10,000 the whole number (`987`).
fn thousands(rate: f64) -> String {
    if rate >= 10_000.0 {
        format!("{:.1}k", rate / 1000.0)
    } else {
        format!("{rate:.0}")
    }
}

/// The peers' crate versions, from the workspace's `Cargo.lock`.
fn versions() -> String {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap_or_default();
    let version = |name: &str| {
        let marker = format!("name = \"{name}\"\nversion = \"");
        lock.find(&marker)
            .and_then(|at| lock[at + marker.len()..].split('"').next())
            .unwrap_or("?")
            .to_owned()
    };
    [
        "axum",
        "hyper",
        "tonic",
        "prost",
        "jsonrpsee",
        "zlink",
        "tokio",
    ]
    .iter()
    .map(|name| format!("{name} {}", version(name)))
    .collect::<Vec<_>>()
    .join(", ")
}
