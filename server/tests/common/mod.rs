//! The shared harness (real binary, raw-wire connection) plus the server library started on its
//! own runtime, for tests that need custom handlers.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub use pixl_ipc_test_utils::*;

use std::path::PathBuf;

use pixl_ipc_server::{RunningServer, Server, ServerConfig, ServerHandle};

/// The server library started on its own runtime, for tests that need custom handlers.
pub struct LibServer {
    pub handle: ServerHandle,
    pub path: PathBuf,
    running: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl LibServer {
    /// Starts a server on a fresh temp socket after `setup` has registered its handlers.
    pub fn start(
        configure: impl FnOnce(ServerConfig) -> ServerConfig,
        setup: impl FnOnce(&Server),
    ) -> LibServer {
        LibServer::start_owned(configure, |server| {
            setup(&server);
            server
        })
    }

    /// As [`LibServer::start`], for setups that consume the server (`Server::layer`,
    /// `Server::with_state`).
    pub fn start_owned(
        configure: impl FnOnce(ServerConfig) -> ServerConfig,
        setup: impl FnOnce(Server) -> Server,
    ) -> LibServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lib.sock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = setup(Server::new(configure(ServerConfig::new(&path))));
        let running = runtime
            .block_on(server.start())
            .expect("start library server");
        LibServer {
            handle: running.handle(),
            path,
            running: Some(running),
            runtime,
            _dir: dir,
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::open(&self.path)
    }

    pub fn shutdown(mut self) -> pixl_ipc_server::ShutdownReport {
        let running = self.running.take().expect("running");
        self.runtime.block_on(running.shutdown())
    }
}

impl Drop for LibServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(TIMEOUT, running.shutdown()).await });
        }
    }
}
