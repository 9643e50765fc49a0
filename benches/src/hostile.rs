//! The hostile-peer soak: well-behaved clients checking every reply while other connections
//! attack the server for the whole run (peers that never read, half-sent lines, malformed and
//! over-long input, silent TCP connects, stuck requests, invalid WebSocket frames, churn).
//!
//! Every attack runs on its own thread with raw sockets, repeats with short pauses until the
//! run ends, and bounds every iteration in count and time (socket timeouts on every read and
//! write). Only loopback addresses and the server's temp UNIX socket are used.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use pixl_ipc_client::{Client, ReconnectPolicy};
use serde_json::{json, Value};
use tungstenite::Message;

use crate::echo_load::EchoLoad;
use crate::{progress, ServerUnderTest};

/// Longest line the server under test accepts (`--max-message-bytes`).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Requests one connection may have running (`--max-in-flight`).
pub const MAX_IN_FLIGHT: usize = 64;

/// The server's flags for this run: small enough limits that the attacks reach them, large
/// enough that the well-behaved clients never do.
pub const SERVER_ARGS: [&str; 12] = [
    "--max-message-bytes",
    "4194304",
    "--max-outbound-bytes",
    "1048576",
    "--max-in-flight",
    "64",
    "--max-connections",
    "512",
    "--max-connections-per-uid",
    "512",
    "--partial-message-timeout-ms",
    "2000",
];

/// How long an attack thread waits between iterations.
const PAUSE: Duration = Duration::from_millis(100);
/// The socket timeout for every blocking read an attack does.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Descriptors the server may hold above its count before the attacks, afterwards.
pub const FD_SLACK: usize = 4;

/// One attack's tally.
#[derive(Debug, Default)]
pub struct AttackTally {
    /// Iterations finished (successfully or not).
    pub iterations: AtomicU64,
    /// Things the attack saw that the server's promises say should not happen.
    pub unexpected: AtomicU64,
    /// The first few of those, described.
    pub notes: Mutex<Vec<String>>,
    /// What the attack measured, for the report (e.g. bytes written before blocking).
    pub info: Mutex<String>,
    /// WebSocket upgrades the server refused with 503 (handshake pool full).
    pub refused: AtomicU64,
    /// Iterations that found the handshake pool full for 2 s and did nothing.
    pub gave_up: AtomicU64,
}

impl AttackTally {
    fn note(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut notes) = self.notes.lock() {
            if notes.len() < 5 && !notes.contains(&what) {
                notes.push(what);
            }
        }
    }
}

/// The attacks, in the order of the report.
pub const ATTACKS: [&str; 8] = [
    "UNIX peer sends 64 KiB echoes, never reads, until its writes block",
    "WebSocket peer does the same with binary frames",
    "UNIX peer sends 3 MiB of spaces without a newline, then a byte every 5 ms for 1 s, leaves",
    "malformed input: invalid JSON, 1 MiB string in ipcNoReply, 5 MiB line, unknown uri",
    "100 silent TCP connects to the WebSocket port, held 1 s",
    "64 x /ipcserver/test/delay 60000 ms (the in-flight limit), then leaves",
    "WebSocket text frame with invalid UTF-8 (zero mask key), expects close 1007",
    "connection churn: 200 UNIX connects and closes",
];

/// What a hostile soak run saw.
#[derive(Debug)]
pub struct HostileReport {
    /// How long the attacks ran.
    pub elapsed: Duration,
    /// Echo replies the well-behaved clients compared with their request.
    pub checked: u64,
    /// Failed calls or replies that differed from the request.
    pub errors: u64,
    /// The first few well-behaved errors, described.
    pub error_notes: Vec<String>,
    /// Latency of the well-behaved calls, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Well-behaved calls slower than 100 ms (to tell one stall from many).
    pub over_100ms: usize,
    /// Server RSS, smallest and largest sample (every 100 ms), KiB.
    pub rss_min_kib: u64,
    /// Largest RSS sample, KiB.
    pub rss_max_kib: u64,
    /// Server descriptors with the well-behaved clients connected, before the attacks.
    pub fds_before: usize,
    /// The same 2 s after the attacks stopped.
    pub fds_after: usize,
    /// Per attack: name, iterations, unexpected count, notes, info.
    pub attacks: Vec<(String, u64, u64, Vec<String>, String)>,
}

impl HostileReport {
    /// Whether the run passed: no well-behaved error, descriptors back near their start.
    pub fn passed(&self) -> bool {
        self.errors == 0 && self.fds_after <= self.fds_before + FD_SLACK
    }

    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "| measure | value |\n| --- | ---: |\n\
             | duration | {:.0} s |\n\
             | well-behaved replies checked (2 UNIX + 2 WebSocket clients) | {} |\n\
             | well-behaved errors | {} |\n\
             | well-behaved latency p50 / p99 / max | {:.2} / {:.2} / {:.1} ms |\n\
             | well-behaved calls over 100 ms | {} |\n\
             | server RSS min / max (100 ms samples) | {:.1} / {:.1} MiB |\n\
             | server descriptors before / after (2 s after the attacks) | {} / {} |\n\n\
             | attack | iterations | unexpected |\n| --- | ---: | --- |\n",
            self.elapsed.as_secs_f64(),
            self.checked,
            self.errors,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.over_100ms,
            self.rss_min_kib as f64 / 1024.0,
            self.rss_max_kib as f64 / 1024.0,
            self.fds_before,
            self.fds_after,
        );
        for (index, (name, iterations, unexpected, notes, info)) in self.attacks.iter().enumerate()
        {
            let mut seen = if *unexpected == 0 {
                "none".to_owned()
            } else {
                format!("{unexpected}: {}", notes.join("; "))
            };
            if !info.is_empty() {
                seen.push_str(&format!(" ({info})"));
            }
            out.push_str(&format!(
                "| {}. {name} | {iterations} | {} |\n",
                index + 1,
                seen.replace('|', "\\|")
            ));
        }
        if !self.error_notes.is_empty() {
            out.push_str(&format!(
                "\nwell-behaved errors: {}\n",
                self.error_notes.join("; ")
            ));
        }
        out
    }
}

/// The server's open descriptors (`/proc/<pid>/fd`).
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// One iteration of an attack: where to connect, its tally, and the flag that ends the run.
type Attack = fn(&Target, &AttackTally, &AtomicBool) -> anyhow::Result<()>;

/// Where the attacks connect.
#[derive(Clone)]
struct Target {
    socket: PathBuf,
    ws_url: String,
    ws_addr: String,
}

/// Runs the well-behaved clients and the attacks numbered in `attacks` (1-based, as in
/// [`ATTACKS`]) for `duration` against the server `binary`.
pub async fn run(
    binary: &Path,
    duration: Duration,
    attacks: &[usize],
) -> anyhow::Result<HostileReport> {
    let server = ServerUnderTest::start(binary, &SERVER_ARGS)?;
    let pid = server.pid();
    let ws_addr = server
        .ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let target = Target {
        socket: server.socket.clone(),
        ws_url: server.ws_url.clone(),
        ws_addr,
    };

    // RSS, sampled every 100 ms for the whole run.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let (mut min, mut max) = (u64::MAX, 0);
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    min = min.min(rss);
                    max = max.max(rss);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (if min == u64::MAX { 0 } else { min }, max)
        })
    };

    let mut clients = Vec::new();
    for index in 0..4 {
        let address = if index % 2 == 0 {
            server.socket.display().to_string()
        } else {
            server.ws_url.clone()
        };
        clients.push(
            Client::builder()
                .reconnect(ReconnectPolicy::Off)
                .request_timeout(Duration::from_secs(30))
                .connect(address.as_str())
                .await?,
        );
    }
    // Let the server settle its connections before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_before = fd_count(pid);

    let started = Instant::now();
    let deadline = started + duration;

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<AttackTally>> = ATTACKS
        .iter()
        .map(|_| Arc::new(AttackTally::default()))
        .collect();
    let attack_fns: [Attack; 8] = [
        unix_never_reads,
        ws_never_reads,
        unix_slow_partial_line,
        malformed_input,
        silent_tcp_connects,
        stuck_delays,
        ws_invalid_utf8,
        unix_churn,
    ];
    let mut attackers = Vec::new();
    for (index, (attack, tally)) in attack_fns.into_iter().zip(&tallies).enumerate() {
        if !attacks.contains(&(index + 1)) {
            if let Ok(mut info) = tally.info.lock() {
                *info = "not run (--attacks)".into();
            }
            continue;
        }
        let (target, tally, stop) = (target.clone(), tally.clone(), stop.clone());
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(error) = attack(&target, &tally, &stop) {
                    tally.note(format!("{error:#}"));
                }
                tally.iterations.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(PAUSE);
            }
        }));
    }

    let load = EchoLoad::start(&clients, 3, deadline);

    // Progress once a second until the end.
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let iterations: Vec<String> = tallies
            .iter()
            .map(|tally| tally.iterations.load(Ordering::Relaxed).to_string())
            .collect();
        progress(&format!(
            "{:.0}/{:.0} s: {} replies checked, {} errors; attack iterations {}; server fds {}",
            started.elapsed().as_secs_f64(),
            duration.as_secs_f64(),
            load.checked(),
            load.errors(),
            iterations.join("/"),
            fd_count(pid),
        ));
    }
    let outcome = load.finish().await?;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let stopping = tokio::task::spawn_blocking(move || {
        for attacker in attackers {
            let _ = attacker.join();
        }
    });
    stopping.await?;
    progress("attacks stopped; waiting 2 s before counting descriptors...");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fds_after = fd_count(pid);
    sampling.store(false, Ordering::Relaxed);
    let (rss_min_kib, rss_max_kib) = sampler.join().unwrap_or((0, 0));
    for client in clients {
        client.close().await;
    }

    let attacks = ATTACKS
        .iter()
        .zip(&tallies)
        .map(|(name, tally)| {
            (
                (*name).to_owned(),
                tally.iterations.load(Ordering::Relaxed),
                tally.unexpected.load(Ordering::Relaxed),
                tally.notes.lock().map(|n| n.clone()).unwrap_or_default(),
                {
                    let mut info = tally.info.lock().map(|i| i.clone()).unwrap_or_default();
                    let refused = tally.refused.load(Ordering::Relaxed);
                    let gave_up = tally.gave_up.load(Ordering::Relaxed);
                    if refused > 0 {
                        if !info.is_empty() {
                            info.push_str("; ");
                        }
                        info.push_str(&format!(
                            "{refused} upgrades refused with 503, handshake pool full; \
                             {gave_up} iterations found it full for 2 s"
                        ));
                    }
                    info
                },
            )
        })
        .collect();
    let all = &outcome.latencies_ms;
    Ok(HostileReport {
        elapsed,
        checked: outcome.checked,
        errors: outcome.errors,
        p50_ms: outcome.quantile_ms(0.5),
        p99_ms: outcome.quantile_ms(0.99),
        max_ms: all.last().copied().unwrap_or(0.0),
        over_100ms: all.iter().filter(|ms| **ms > 100.0).count(),
        error_notes: outcome.error_notes,
        rss_min_kib,
        rss_max_kib,
        fds_before,
        fds_after,
        attacks,
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn unix(target: &Target) -> anyhow::Result<UnixStream> {
    let stream = UnixStream::connect(&target.socket).context("UNIX connect")?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

fn tcp(target: &Target) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(&target.ws_addr).context("TCP connect")?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// A WebSocket after the upgrade, or `None` when the server kept refusing the upgrade with
/// 503 for 2 s: its pool of handshakes in progress is full (attack 5 fills it), which is its
/// defence working, so the refusals are counted and the attack retries every 50 ms, to get in
/// between attack 5's rounds.
fn websocket(
    target: &Target,
    tally: &AttackTally,
    stop: &AtomicBool,
) -> anyhow::Result<Option<tungstenite::WebSocket<TcpStream>>> {
    for _ in 0..40 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(socket) = upgrade(target, tally)? {
            return Ok(Some(socket));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tally.gave_up.fetch_add(1, Ordering::Relaxed);
    Ok(None)
}

fn upgrade(
    target: &Target,
    tally: &AttackTally,
) -> anyhow::Result<Option<tungstenite::WebSocket<TcpStream>>> {
    let stream = tcp(target)?;
    match tungstenite::client::client(target.ws_url.as_str(), stream) {
        Ok((socket, _)) => Ok(Some(socket)),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)))
            if response.status() == 503
                && response
                    .body()
                    .as_deref()
                    .is_some_and(|body| String::from_utf8_lossy(body).contains("handshakes")) =>
        {
            tally.refused.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }
        Err(error) => anyhow::bail!("WebSocket upgrade: {error}"),
    }
}

/// A 64 KiB echo request line (the data is a string of `x`).
fn echo_64k(id: usize) -> Vec<u8> {
    let mut line = serde_json::to_vec(
        &json!({"ipcReqID": id, "uri": "/ipcserver/test/echo", "data": "x".repeat(64 << 10)}),
    )
    .unwrap_or_default();
    line.push(b'\n');
    line
}

fn would_block(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The most a peer that never reads may push before its writes block: the server's reply
/// budget and line limit plus generous kernel buffers on both sides.
const NEVER_READS_CAP: usize = 64 << 20;

fn record_blocked_at(tally: &AttackTally, written: usize) {
    if let Ok(mut info) = tally.info.lock() {
        let kib = written >> 10;
        let (low, high) = parse_range(&info).map_or((kib, kib), |(l, h)| (l.min(kib), h.max(kib)));
        *info = format!("writes blocked after {low}-{high} KiB");
    }
}

fn parse_range(info: &str) -> Option<(usize, usize)> {
    let range = info
        .strip_prefix("writes blocked after ")?
        .strip_suffix(" KiB")?;
    let (low, high) = range.split_once('-')?;
    Some((low.parse().ok()?, high.parse().ok()?))
}

/// Attack 1: writes 64 KiB echoes and reads nothing until a write blocks for 200 ms, then closes.
fn unix_never_reads(target: &Target, tally: &AttackTally, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut stream = unix(target)?;
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    let mut written = 0;
    let started = Instant::now();
    for id in 0.. {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("writes never blocked within 10 s ({} KiB)", written >> 10);
        }
        if written > NEVER_READS_CAP {
            anyhow::bail!("writes never blocked after {} MiB", written >> 20);
        }
        let line = echo_64k(id);
        let mut rest = &line[..];
        while !rest.is_empty() {
            match stream.write(rest) {
                Ok(0) => anyhow::bail!("the server closed the connection"),
                Ok(n) => {
                    written += n;
                    rest = &rest[n..];
                }
                Err(error) if would_block(&error) => {
                    record_blocked_at(tally, written);
                    return Ok(());
                }
                Err(error) => return Err(error).context("write"),
            }
        }
    }
    Ok(())
}

/// Attack 2: the same over WebSocket, in binary frames.
fn ws_never_reads(target: &Target, tally: &AttackTally, stop: &AtomicBool) -> anyhow::Result<()> {
    let Some(mut socket) = websocket(target, tally, stop)? else {
        return Ok(());
    };
    socket
        .get_mut()
        .set_write_timeout(Some(Duration::from_millis(200)))?;
    let mut written = 0;
    let started = Instant::now();
    for id in 0.. {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("writes never blocked within 10 s ({} KiB)", written >> 10);
        }
        if written > NEVER_READS_CAP {
            anyhow::bail!("writes never blocked after {} MiB", written >> 20);
        }
        let mut line = echo_64k(id);
        line.pop();
        let size = line.len();
        match socket.send(Message::binary(line)) {
            Ok(()) => written += size,
            Err(tungstenite::Error::Io(error)) if would_block(&error) => {
                record_blocked_at(tally, written);
                return Ok(());
            }
            Err(error) => anyhow::bail!("WebSocket send: {error}"),
        }
    }
    Ok(())
}

/// Attack 3: 3 MiB of spaces with no newline, then one space every 5 ms for a second (slow
/// progress, which the partial-message timeout must not cut), then leaves mid-line.
fn unix_slow_partial_line(
    target: &Target,
    _tally: &AttackTally,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut stream = unix(target)?;
    stream
        .write_all(&vec![b' '; 3 << 20])
        .context("writing 3 MiB of spaces")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) && !stop.load(Ordering::Relaxed) {
        stream.write_all(b" ").context("trickling a byte")?;
        std::thread::sleep(Duration::from_millis(5));
    }
    // Nothing should have come back: no reply to an unfinished line, no timeout while it moves.
    stream.set_nonblocking(true)?;
    let mut buffer = [0u8; 4096];
    match stream.read(&mut buffer) {
        Ok(0) => anyhow::bail!("the server closed a connection whose line was still growing"),
        Ok(n) => anyhow::bail!(
            "the server answered an unfinished line: {}",
            String::from_utf8_lossy(&buffer[..n.min(200)])
        ),
        Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(error) => Err(error).context("read"),
    }
}

/// Attack 4: malformed input on one connection; every error reply is checked, then a good echo.
fn malformed_input(target: &Target, tally: &AttackTally, _stop: &AtomicBool) -> anyhow::Result<()> {
    let mut stream = unix(target)?;
    let mut lines: Vec<Vec<u8>> = vec![
        br#"{"ipcReqID":"bad-json","uri":"/ipcserver/test/echo","data":{"a":}"#.to_vec(),
        serde_json::to_vec(&json!({
            "ipcReqID": "bad-type",
            "uri": "/ipcserver/test/echo",
            "ipcNoReply": "n".repeat(1 << 20),
        }))?,
        serde_json::to_vec(&json!({
            "ipcReqID": "too-long",
            "uri": "/ipcserver/test/echo",
            "data": "L".repeat(MAX_MESSAGE_BYTES + (1 << 20)),
        }))?,
        br#"{"ipcReqID":"no-route","uri":"/no/such/uri"}"#.to_vec(),
        br#"{"ipcReqID":"still-ok","uri":"/ipcserver/test/echo","data":{"fine":true}}"#.to_vec(),
    ];
    for line in &mut lines {
        line.push(b'\n');
        stream.write_all(line).context("write")?;
    }
    let mut reader = BufReader::new(stream);
    let mut replies: HashMap<String, Value> = HashMap::new();
    let mut longest = 0;
    for _ in 0..lines.len() {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .context("reading the error replies")?;
        if line.is_empty() {
            anyhow::bail!("the server closed after {} of 5 replies", replies.len());
        }
        longest = longest.max(line.len());
        let reply: Value = serde_json::from_str(&line).context("a reply that is not JSON")?;
        let id = reply["ipcReqID"].as_str().unwrap_or("(null)").to_owned();
        replies.insert(id, reply);
    }
    let code = |id: &str, in_data: bool| {
        let reply = replies.get(id)?;
        let holder = if in_data { &reply["data"] } else { reply };
        holder["code"].as_str().map(str::to_owned)
    };
    let expected = [
        ("bad-json", false, "invalid_json"),
        ("bad-type", false, "invalid_request"),
        ("too-long", false, "message_too_large"),
        ("no-route", true, "no_handler_found"),
    ];
    for (id, in_data, want) in expected {
        let got = code(id, in_data);
        if got.as_deref() != Some(want) {
            tally.note(format!("{id}: expected {want}, got {got:?}"));
        }
    }
    if replies.get("still-ok").map(|reply| &reply["data"]) != Some(&json!({"fine": true})) {
        tally.note("the good echo after the bad lines was not answered".into());
    }
    if longest > 4096 {
        tally.note(format!(
            "an error reply of {longest} bytes (quotes are bounded)"
        ));
    }
    Ok(())
}

/// Attack 5: 100 TCP connects to the WebSocket port that send nothing, held a second, closed. The
/// server may refuse those beyond its handshake pool; that is counted, not an error.
fn silent_tcp_connects(
    target: &Target,
    tally: &AttackTally,
    _stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(tcp(target)?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut closed_early = 0;
    for stream in &held {
        stream.set_nonblocking(true)?;
        let mut byte = [0u8; 1];
        match (&*stream).read(&mut byte) {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            _ => closed_early += 1,
        }
    }
    if let Ok(mut info) = tally.info.lock() {
        let most = info
            .strip_prefix("up to ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
            .max(closed_early);
        *info = format!("up to {most} of 100 answered or closed by the server within 1 s");
    }
    Ok(())
}

/// Attack 6: as many 60-second delays as one connection may have running, then the peer leaves.
fn stuck_delays(target: &Target, _tally: &AttackTally, _stop: &AtomicBool) -> anyhow::Result<()> {
    let mut stream = unix(target)?;
    let mut batch = Vec::new();
    for id in 0..MAX_IN_FLIGHT {
        let request =
            json!({"ipcReqID": id, "uri": "/ipcserver/test/delay", "data": {"delay": 60000}});
        batch.extend_from_slice(&serde_json::to_vec(&request)?);
        batch.push(b'\n');
    }
    stream.write_all(&batch).context("write")?;
    std::thread::sleep(Duration::from_millis(200));
    stream.set_nonblocking(true)?;
    let mut buffer = [0u8; 4096];
    match stream.read(&mut buffer) {
        Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(()),
        Ok(0) => anyhow::bail!("the server closed a connection with delays running"),
        Ok(n) => anyhow::bail!(
            "an early reply to a 60 s delay: {}",
            String::from_utf8_lossy(&buffer[..n.min(200)])
        ),
        Err(error) => Err(error).context("read"),
    }
}

/// Attack 7: a masked text frame (zero mask key) whose payload is not UTF-8; the server must close
/// with 1007.
fn ws_invalid_utf8(target: &Target, tally: &AttackTally, stop: &AtomicBool) -> anyhow::Result<()> {
    let Some(mut socket) = websocket(target, tally, stop)? else {
        return Ok(());
    };
    // FIN + text, masked, 4-byte payload, mask key 0 0 0 0, payload not UTF-8.
    let frame = [0x81, 0x84, 0, 0, 0, 0, 0xff, 0xfe, 0xc3, 0x28];
    socket.get_mut().write_all(&frame).context("write")?;
    let started = Instant::now();
    for _ in 0..16 {
        if started.elapsed() > READ_TIMEOUT {
            break;
        }
        match socket.read() {
            Ok(Message::Close(frame)) => {
                let code = frame.map(|frame| u16::from(frame.code));
                if code != Some(1007) {
                    tally.note(format!("closed with {code:?}, not 1007"));
                }
                return Ok(());
            }
            Ok(_) => continue,
            Err(error) => anyhow::bail!("no close frame: {error}"),
        }
    }
    anyhow::bail!("no close frame within {READ_TIMEOUT:?}")
}

/// Attack 8: 200 UNIX connects, each closed at once.
fn unix_churn(target: &Target, _tally: &AttackTally, stop: &AtomicBool) -> anyhow::Result<()> {
    for _ in 0..200 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        drop(UnixStream::connect(&target.socket).context("UNIX connect")?);
    }
    Ok(())
}
