//! The server's opt-in low-latency mode (`--spin-us`) against the default, in one run: what it
//! gains one request at a time, and what it costs in server CPU.
//!
//! `cargo run --release -p pixl-ipc-benches --bin spin -- [--reps N] [--window US] [--pin [CPU]]`
//!
//! Three servers run side by side: the raw echo floor, pixl-ipc-server as it is, and
//! pixl-ipc-server with `--spin-us US` (default 50). Each repetition measures, in an order
//! rotated every repetition (so none is always first), `MESSAGES` 1K echoes one at a time on a
//! fresh connection with the lean std client and with the Rust client. Unpinned is the setting
//! the mode is for (a client and server on different CPUs of a VM, where a parked thread is slow
//! to wake); `--pin` puts everything on one CPU, where spinning can only cost.
//!
//! The CPU columns read the server's own CPU time (`/proc/PID/task/*/schedstat`, nanoseconds):
//! per request in the one-at-a-time runs; per second with one connection open and idle; per
//! second while a client sends one request every millisecond (the worst case for the mode: every
//! gap is longer than the window, so each request pays the whole window).
//!
//! The table goes to `benches/RESULTS.md` (section `spin`) and standard output.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pixl_ipc_benches::{
    build_release_server, echo_request_line, floor_round_trips, load_average, pin_to_cpu, progress,
    report, rust_client_echoes, sized_message, FloorServer, Pinning, Repetitions, ServerUnderTest,
    Spread, MESSAGES,
};

/// The spin window measured unless `--window US` says otherwise.
const DEFAULT_WINDOW_US: u64 = 50;

/// The server's --spin-us mode against the default, in one run: latency one at a time and the
/// server's CPU; writes the spin (or spin-pinned) section of benches/RESULTS.md.
#[derive(clap::Parser)]
#[command(name = "spin")]
struct Cli {
    #[command(flatten)]
    repetitions: Repetitions<7, 1>,
    /// The spin window measured, in microseconds (1 to 1000)
    #[arg(
        long,
        value_name = "US",
        default_value_t = DEFAULT_WINDOW_US,
        value_parser = clap::value_parser!(u64).range(1..=1000),
    )]
    window: u64,
    #[command(flatten)]
    pinning: Pinning,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let reps = cli.repetitions.reps;
    let window = cli.window;
    let pinned = cli.pinning.pin;
    if let Some(cpu) = pinned {
        pin_to_cpu(cpu)?;
    }
    progress("building the release server...");
    let binary = build_release_server()?;
    let window_flag = window.to_string();
    let floor = FloorServer::start()?;
    let plain = ServerUnderTest::start(&binary, &[])?;
    let spinning = ServerUnderTest::start(&binary, &["--spin-us", &window_flag])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let message = sized_message(1);
    let line = echo_request_line(&message)?;
    let load_before = load_average();

    // Per repetition: lean client on the floor / plain / spinning, Rust client on plain /
    // spinning, in microseconds per message; server CPU per request (ns) alongside.
    let mut lean = [Vec::new(), Vec::new(), Vec::new()];
    let mut rust = [Vec::new(), Vec::new()];
    let mut cpu_per_request = [Vec::new(), Vec::new()];
    let started = Instant::now();
    for rep in 0..=reps {
        for turn in 0..3 {
            let which = (turn + rep) % 3;
            progress(&format!(
                "rep {rep}/{reps} ({}), {}   [{:.0}s]",
                if rep == 0 { "warm-up" } else { "measured" },
                ["floor", "default", "spin"][which],
                started.elapsed().as_secs_f64()
            ));
            let socket = match which {
                0 => floor.socket.as_path(),
                1 => plain.socket.as_path(),
                _ => spinning.socket.as_path(),
            };
            let server_pid = match which {
                1 => Some(plain.pid()),
                2 => Some(spinning.pid()),
                _ => None,
            };
            let cpu_before = server_pid.map(cpu_ns);
            let elapsed = floor_round_trips(socket, &line, MESSAGES)?;
            let cpu_after = server_pid.map(cpu_ns);
            if rep == 0 {
                continue;
            }
            lean[which].push(micros_per_message(elapsed));
            if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
                cpu_per_request[which - 1].push((after - before) as f64 / MESSAGES as f64);
            }
            if which > 0 {
                let address = socket.display().to_string();
                let elapsed =
                    runtime.block_on(rust_client_echoes(&address, &message, MESSAGES, false))?;
                rust[which - 1].push(micros_per_message(elapsed));
            }
        }
    }
    progress("measuring CPU while idle and while paced...");
    let idle = [idle_cpu(&plain)?, idle_cpu(&spinning)?];
    let paced = [paced_cpu(&plain, &line)?, paced_cpu(&spinning, &line)?];
    progress("");
    eprintln!();

    let body = table(
        window,
        reps,
        pinned,
        &load_before,
        &lean,
        &rust,
        &cpu_per_request,
        idle,
        paced,
    );
    println!("{body}");
    let results = pixl_ipc_benches::repo_root().join("benches/RESULTS.md");
    let name = if pinned.is_some() {
        "spin-pinned"
    } else {
        "spin"
    };
    report::write_results(&results, name, &body)
        .with_context(|| format!("cannot update {}", results.display()))?;
    Ok(())
}

fn micros_per_message(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / MESSAGES as f64
}

/// CPU time the process `pid` has used, all threads, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Server CPU (ms) over one second with a connection open that made one call and then waits.
fn idle_cpu(server: &ServerUnderTest) -> anyhow::Result<f64> {
    let (mut stream, mut reader) = connect(&server.socket)?;
    call(
        &mut stream,
        &mut reader,
        b"{\"ipcReqID\":1,\"uri\":\"/ipcserver/test/echo\",\"data\":1}\n",
    )?;
    let before = cpu_ns(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    Ok((cpu_ns(server.pid()) - before) as f64 / 1e6)
}

/// Server CPU (ms per second) while one connection sends a 1K echo every millisecond for a
/// second, waiting for each reply.
fn paced_cpu(server: &ServerUnderTest, line: &[u8]) -> anyhow::Result<f64> {
    let (mut stream, mut reader) = connect(&server.socket)?;
    let before = cpu_ns(server.pid());
    let started = Instant::now();
    for tick in 1..=1000u32 {
        call(&mut stream, &mut reader, line)?;
        let next = started + Duration::from_millis(u64::from(tick));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((cpu_ns(server.pid()) - before) as f64 / 1e6 / seconds)
}

fn connect(socket: &Path) -> anyhow::Result<(UnixStream, BufReader<UnixStream>)> {
    let stream = UnixStream::connect(socket)?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((stream, reader))
}

fn call(
    stream: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    line: &[u8],
) -> anyhow::Result<()> {
    stream.write_all(line)?;
    let mut reply = Vec::new();
    reader.read_until(b'\n', &mut reply)?;
    if reply.last() != Some(&b'\n') {
        bail!("the server closed the connection");
    }
    Ok(())
}

fn cell(samples: &[f64]) -> String {
    let spread = Spread::of(samples);
    format!("{:.1} ({:.1}-{:.1})", spread.median, spread.min, spread.max)
}

#[allow(clippy::too_many_arguments)]
fn table(
    window: u64,
    reps: usize,
    pinned: Option<usize>,
    load: &str,
    lean: &[Vec<f64>; 3],
    rust: &[Vec<f64>; 2],
    cpu_per_request: &[Vec<f64>; 2],
    idle: [f64; 2],
    paced: [f64; 2],
) -> String {
    let floor = Spread::of(&lean[0]).median;
    let ratio = |samples: &[f64], base: f64| Spread::of(samples).median / base;
    let mut out = format!(
        "`cargo run --release -p pixl-ipc-benches --bin spin -- --reps {reps} --window {window}{}` \
         ({}; load average before: {load}). {reps} repetitions after a warm-up, {MESSAGES} 1K \
         echoes one at a time per cell on a fresh connection, the order rotated every \
         repetition; microseconds per message, median (min-max).\n\n",
        pinned.map(|cpu| format!(" --pin {cpu}")).unwrap_or_default(),
        if pinned.is_some() { "everything on one CPU" } else { "unpinned" },
    );
    out.push_str(&format!(
        "| server | lean client | / floor | Rust client | server CPU per request (ns) | server CPU, idle connection (ms/s) | server CPU, 1 request/ms (ms/s) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | raw echo (floor) | {} | 1.00x | | | | |\n",
        cell(&lean[0])
    ));
    for (which, name) in [
        "pixl-ipc-server".to_owned(),
        format!("pixl-ipc-server --spin-us {window}"),
    ]
    .iter()
    .enumerate()
    {
        out.push_str(&format!(
            "| {name} | {} | {:.2}x | {} | {:.0} | {:.1} | {:.1} |\n",
            cell(&lean[which + 1]),
            ratio(&lean[which + 1], floor),
            cell(&rust[which]),
            Spread::of(&cpu_per_request[which]).median,
            idle[which],
            paced[which],
        ));
    }
    out
}
