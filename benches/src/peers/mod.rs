//! The peers benchmark's other stacks (`--features peers`): for each, a server and a client
//! written the way a user of that stack would write them, echoing the same JSON message.
//!
//! Each peer's server runs in a child process of its own ([`PeerServer`]: the `peers` binary
//! started again with `--serve KIND ADDRESS`), so that pinning covers it and its memory is
//! measurable on its own, like the pixl-ipc release server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

// The affinity and memory helpers live in the crate root, shared with the other benches.
pub use crate::{current_affinity, memory_kib, one_cpu, set_thread_affinity};

pub mod axum_uds;
pub mod jsonrpsee_ws;
pub mod tonic_uds;
pub mod zlink_uds;

/// A peer's server process: this program started with `--serve KIND ADDRESS`; killed by PID
/// when dropped.
pub struct PeerServer {
    child: Child,
    /// What the server printed after `ready `: its socket path or URL.
    pub address: String,
}

impl PeerServer {
    /// Starts `--serve kind address` and waits for its `ready ADDRESS` line.
    pub fn start(kind: &str, address: &str) -> anyhow::Result<PeerServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", kind, address])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start the {kind} server"))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(address) = line.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the {kind} server did not start: {line:?}");
        };
        Ok(PeerServer {
            address: address.to_owned(),
            child,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the server `kind` on `address` until killed (the child side of [`PeerServer`]); prints
/// `ready ADDRESS` once it accepts connections.
pub fn serve(kind: &str, address: &str) -> anyhow::Result<()> {
    match kind {
        "axum" => axum_uds::serve(Path::new(address)),
        "tonic" => tonic_uds::serve(Path::new(address)),
        "jsonrpsee" => jsonrpsee_ws::serve(),
        "zlink" => zlink_uds::serve(Path::new(address)),
        _ => bail!("no peer server named {kind:?}"),
    }
}

/// Prints the line [`PeerServer::start`] waits for.
fn announce(address: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {address}");
    let _ = out.flush();
}
