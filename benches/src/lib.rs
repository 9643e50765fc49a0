//! Shared pieces of the benchmarks: the original's message recipe (re-exported from the test
//! harness), the servers under test (the release binary, and a raw echo "floor"), timing
//! statistics and progress output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// The message sizes of the original README's table ("K" = keys of ~1 KiB each).
pub const SIZES: [usize; 5] = [1, 5, 10, 20, 100];
/// Echo requests per measurement, as in the original recipe.
pub const MESSAGES: usize = 500;

/// The original's benchmark message, from the test harness so tests and benchmarks measure and
/// check the same recipe.
pub use pixl_ipc_test_utils::sized_message;

/// An echo request for `message` as one line, `\n` included: the bytes the raw echo servers
/// send back, and what a client without a framework writes.
pub fn echo_request_line(message: &Value) -> anyhow::Result<Vec<u8>> {
    let request =
        serde_json::json!({"ipcReqID": "rq0", "uri": "/ipcserver/test/echo", "data": message});
    let mut line = serde_json::to_vec(&request)?;
    line.push(b'\n');
    Ok(line)
}

/// The repository root (the benches crate lives in `benches/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the release server binary and returns its path; or, when `PIXL_BENCH_SERVER_BIN`
/// names a binary, returns that path without building (to measure another build, such as an
/// older commit's, with this client code).
pub fn build_release_server() -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os("PIXL_BENCH_SERVER_BIN").filter(|path| !path.is_empty())
    {
        let binary = PathBuf::from(binary);
        if !binary.is_file() {
            bail!("PIXL_BENCH_SERVER_BIN: no file at {}", binary.display());
        }
        return Ok(binary);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "pixl-ipc-server",
            "--bin",
            "pixl-ipc-server",
        ])
        .current_dir(repo_root())
        .status()
        .context("cannot run cargo to build the server")?;
    if !status.success() {
        bail!("building the release server failed");
    }
    Ok(repo_root().join("target/release/pixl-ipc-server"))
}

/// The server binary under test, on a temp socket and a loopback WebSocket port; stopped by PID
/// when dropped.
pub struct ServerUnderTest {
    child: Child,
    /// The UNIX socket path.
    pub socket: PathBuf,
    /// The `ws://` URL.
    pub ws_url: String,
    _dir: tempfile::TempDir,
}

impl ServerUnderTest {
    /// Starts `binary` with `extra` flags, then any in `PIXL_BENCH_SERVER_ARGS` (e.g.
    /// `--threads 1`, to compare settings), and waits until it listens.
    pub fn start(binary: &Path, extra: &[&str]) -> anyhow::Result<ServerUnderTest> {
        let from_env = std::env::var("PIXL_BENCH_SERVER_ARGS").unwrap_or_default();
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("bench.sock");
        let mut child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .args(["--ws", "127.0.0.1:0"])
            .args(extra)
            .args(from_env.split_whitespace())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut banner = String::new();
        BufReader::new(stdout).read_line(&mut banner)?;
        let ws_url = banner
            .split_whitespace()
            .find(|word| word.starts_with("ws://"))
            .with_context(|| format!("no ws:// URL in the banner: {banner}"))?
            .to_owned();
        Ok(ServerUnderTest {
            child,
            socket,
            ws_url,
            _dir: dir,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory of the server, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.pid())
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The physical floor: a raw echo of newline-terminated bytes, no JSON, no framework, one
/// thread per connection, on a UNIX socket and on TCP loopback (the floor under WebSockets).
pub struct FloorServer {
    /// The socket path.
    pub socket: PathBuf,
    /// The TCP loopback address.
    pub tcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl FloorServer {
    /// Starts the echo threads.
    pub fn start() -> anyhow::Result<FloorServer> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("floor.sock");
        let listener = UnixListener::bind(&socket)?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Ok(writer) = stream.try_clone() {
                    std::thread::spawn(move || echo_lines(stream, writer));
                }
            }
        });
        let tcp_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let tcp = tcp_listener.local_addr()?;
        std::thread::spawn(move || {
            for stream in tcp_listener.incoming().flatten() {
                let _ = stream.set_nodelay(true);
                if let Ok(writer) = stream.try_clone() {
                    std::thread::spawn(move || echo_lines(stream, writer));
                }
            }
        });
        Ok(FloorServer {
            socket,
            tcp,
            _dir: dir,
        })
    }
}

fn echo_lines(stream: impl Read, mut writer: impl Write) {
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if writer.write_all(&line).is_err() {
                    return;
                }
            }
        }
    }
}

/// One floor round trip per message on the UNIX socket: write the line, read it back.
pub fn floor_round_trips(socket: &Path, line: &[u8], count: usize) -> anyhow::Result<Duration> {
    let stream = UnixStream::connect(socket)?;
    let reader = stream.try_clone()?;
    let elapsed = round_trips(&stream, reader, line, count)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(elapsed)
}

/// The same on TCP loopback (with `TCP_NODELAY`, as the WebSocket transports use).
pub fn floor_round_trips_tcp(
    address: SocketAddr,
    line: &[u8],
    count: usize,
) -> anyhow::Result<Duration> {
    let stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let reader = stream.try_clone()?;
    let elapsed = round_trips(&stream, reader, line, count)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(elapsed)
}

fn round_trips(
    mut writer: impl Write,
    reader: impl Read,
    line: &[u8],
    count: usize,
) -> anyhow::Result<Duration> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut back = Vec::with_capacity(line.len());
    let started = Instant::now();
    for _ in 0..count {
        writer.write_all(line)?;
        back.clear();
        reader.read_until(b'\n', &mut back)?;
    }
    Ok(started.elapsed())
}

/// One Rust-client cell: `count` echo requests of `message` to `address` (a socket path or a
/// `ws://` URL) on a fresh connection, one at a time or all in flight at once; returns the time
/// from the first send to the last reply (connecting and closing not included).
pub async fn rust_client_echoes(
    address: &str,
    message: &Value,
    count: usize,
    all_in_flight: bool,
) -> anyhow::Result<Duration> {
    use pixl_ipc_client::{Client, ReconnectPolicy};

    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .request_timeout(Duration::from_secs(60))
        .connect(address)
        .await?;
    let started = Instant::now();
    if all_in_flight {
        let calls = (0..count).map(|_| client.send("/ipcserver/test/echo", message));
        for reply in futures_util::future::join_all(calls).await {
            reply?;
        }
    } else {
        for _ in 0..count {
            client.send("/ipcserver/test/echo", message).await?;
        }
    }
    let elapsed = started.elapsed();
    client.close().await;
    Ok(elapsed)
}

/// Median, minimum and maximum of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

impl Spread {
    /// Summarizes `samples` (empty gives zeros).
    pub fn of(samples: &[f64]) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 0 {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// `--reps N`, the option every measuring benchmark takes; `DEFAULT` is the binary's own count
/// and `MIN` the fewest it accepts (1 where a median of no samples would be printed).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Repetitions<const DEFAULT: usize, const MIN: usize = 0> {
    /// Repetitions measured, after one warm-up repetition that is not counted
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT,
        value_parser = |text: &str| at_least(text, MIN),
    )]
    pub reps: usize,
}

/// `text` as a count of at least `min`, or why not (clap prints it after the flag and value).
fn at_least(text: &str, min: usize) -> Result<usize, String> {
    match text.parse() {
        Ok(count) if count >= min => Ok(count),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(error) => Err(format!("{error}")),
    }
}

/// `--pin [CPU]`, for the benchmarks that can run on one CPU (see [`pin_to_cpu`]).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Pinning {
    /// Run everything (this process, the servers under test, the clients) on the one CPU named,
    /// CPU 0 without a number
    #[arg(long, value_name = "CPU", num_args = 0..=1, default_missing_value = "0")]
    pub pin: Option<usize>,
}

/// The 1-minute load average, from `/proc/loadavg` (`unknown` where there is none): printed
/// beside results measured on a machine that may be shared.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The machine's CPUs, however few this process is allowed to use (a pinned run's
/// `available_parallelism` is 1): counted from `/proc/cpuinfo`, or that figure where there is none.
pub fn machine_cpus() -> usize {
    let listed = std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| {
            text.lines()
                .filter(|line| line.starts_with("processor"))
                .count()
        })
        .unwrap_or(0);
    if listed > 0 {
        return listed;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Pins this process, and so every thread and child it starts from now on (the servers under
/// test, the floor's echo threads, the Node and PHP clients), to `cpu`.
///
/// Why: on a VM whose vCPUs the host schedules freely, a ping-pong between two processes is
/// bimodal (both ends on one vCPU: a few microseconds; on two: tens, with whatever wakes the
/// other vCPU), so unpinned ratios swing between runs. On one CPU every hand-off is a context
/// switch on that CPU, and the figures measure the work each side does.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    set_thread_affinity(&one_cpu(cpu)?).with_context(|| format!("cannot pin to CPU {cpu}"))
}

/// The CPUs the calling thread may run on.
pub fn current_affinity() -> anyhow::Result<nix::sched::CpuSet> {
    Ok(nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(
        0,
    ))?)
}

/// The set of the one CPU `cpu`.
pub fn one_cpu(cpu: usize) -> anyhow::Result<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context("no such CPU")?;
    Ok(set)
}

/// Sets the CPUs the calling thread may run on; threads and processes it starts afterwards
/// inherit them (and a Tokio runtime built then sizes itself to them, as under `taskset`).
pub fn set_thread_affinity(set: &nix::sched::CpuSet) -> anyhow::Result<()> {
    Ok(nix::sched::sched_setaffinity(
        nix::unistd::Pid::from_raw(0),
        set,
    )?)
}

/// Resident and peak resident memory of process `pid`, in KiB (zeros if it is gone).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One progress line on stderr, rewritten in place.
pub fn progress(message: &str) {
    eprint!("\r\x1b[2K{message}");
    let _ = std::io::stderr().flush();
}

pub mod chart;
pub mod echo_load;
pub mod hostile;
#[cfg(feature = "peers")]
pub mod peers;
pub mod report;
pub mod soak;

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Pinning, Repetitions};

    /// A benchmark's command line with both shared options.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        repetitions: Repetitions<7, 1>,
        #[command(flatten)]
        pinning: Pinning,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_binarys_own() {
        let cli = parse(&[]).expect("no arguments");
        assert_eq!(cli.repetitions.reps, 7);
        assert_eq!(cli.pinning.pin, None);
    }

    #[test]
    fn pin_without_a_cpu_is_cpu_0_even_before_another_flag() {
        for args in [&["--pin"][..], &["--pin", "--reps", "3"]] {
            let cli = parse(args).expect("valid");
            assert_eq!(cli.pinning.pin, Some(0), "{args:?}");
        }
        let cli = parse(&["--pin", "--reps", "3"]).expect("valid");
        assert_eq!(cli.repetitions.reps, 3);
    }

    #[test]
    fn pin_takes_a_cpu_number() {
        assert_eq!(parse(&["--pin", "1"]).expect("valid").pinning.pin, Some(1));
        assert_eq!(
            parse(&["--reps", "2", "--pin", "1"])
                .expect("valid")
                .pinning
                .pin,
            Some(1)
        );
        assert!(parse(&["--pin", "x"]).is_err());
    }

    #[test]
    fn reps_below_the_minimum_or_not_a_number_are_refused() {
        assert_eq!(parse(&["--reps", "1"]).expect("valid").repetitions.reps, 1);
        for bad in ["0", "x", "-1"] {
            assert!(parse(&["--reps", bad]).is_err(), "--reps {bad}");
        }
    }

    #[test]
    fn unknown_flags_are_refused() {
        let error = parse(&["--rep", "3"]).err().expect("refused");
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
