//! The UNIX socket transport: the socket's lifecycle (probing what is at the path, binding
//! without a permission window, removing the socket at shutdown only if it is still ours; or
//! serving one handed in, which is never touched), and
//! its connections: newline-delimited JSON read through the partial-message guard, replies
//! written by one writer per connection straight from the outbound queue.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{umask, Mode};
use pixl_ipc_io::unix::{UnixWriter, WriteQueue};
use pixl_ipc_protocol::{JsonLinesCodec, RawRequest};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::FramedRead;

use super::stall::StallGuard;
use super::Listener;
use crate::admission::{Refusal, Slot};
use crate::config::ServerConfig;
use crate::connection::{self, PeerWatch, Received};
use crate::context::ConnectionContext;
use crate::error::ServerError;
use crate::handler::{ConnectionInfo, PeerCredentials, Transport};
use crate::outbound::{Line, Outbound, OutboundReceiver};

/// The longest path a `sockaddr_un` holds, without its terminating NUL (Linux and most BSDs).
pub(crate) const MAX_SOCKET_PATH_BYTES: usize = 107;

/// A bound, listening socket and its file.
struct BoundSocket {
    listener: UnixListener,
    file: SocketFile,
}

/// The socket file this server created, remembered so that it is removed only if still ours.
pub(crate) struct SocketFile {
    pub(crate) path: PathBuf,
    /// Device and inode of the socket file we created: removal checks the path still has them.
    identity: (u64, u64),
    /// The lock on `<path>.lock`, held for as long as this value lives: dropped (released) only
    /// after the listener is closed and the socket file removed, so no other server starting on
    /// the path can take the socket for stale while we still use it.
    _lock: PathLock,
}

impl SocketFile {
    /// Removes the socket file if the path still names the socket this server created. A file
    /// that another process put there since (a newer server, say) is left alone.
    pub(crate) fn remove_if_ours(&self) -> bool {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                fs::remove_file(&self.path).is_ok()
            }
            _ => false,
        }
    }
}

/// Binds `path` following the safety rules: a live socket is refused, a stale socket is
/// replaced, anything else at the path is refused and untouched. The socket file is created
/// with at most the owner bits of `mode`, given `group`, then opened up to exactly `mode`, so
/// there is no moment at which it is more open than configured.
///
/// Must be called inside a Tokio runtime.
///
/// Before looking at the path it takes the advisory lock `<path>.lock` (see [`PathLock`]), so
/// of several servers starting on one path exactly one gets past this point, and a socket is
/// only ever judged stale by the one server allowed to replace it.
///
/// Once the socket file exists, any later failure removes it again (if it is still ours): a
/// failed start leaves nothing behind but the lock file.
fn bind(path: &Path, mode: u32, group: Option<u32>) -> Result<BoundSocket, ServerError> {
    check_length(path)?;
    let lock = PathLock::acquire(path)?;
    clear_stale_socket(path)?;

    let listener = bind_with_owner_bits(path, mode)?;
    let meta = fs::symlink_metadata(path).map_err(io_error(path, "stat"))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
        _lock: lock,
    };
    match set_owner_and_mode(path, mode, group) {
        Ok(()) => Ok(BoundSocket { listener, file }),
        Err(err) => {
            file.remove_if_ours();
            Err(err)
        }
    }
}

/// Binds the Linux abstract socket `name`. No file: nothing to probe, lock, chmod or remove.
/// The kernel is the lock: while a socket is bound to the name, a second `bind` fails with
/// `EADDRINUSE`, reported as [`ServerError::AbstractNameInUse`]; the name is freed when the last
/// descriptor of the listener is closed, however the process ends.
///
/// Must be called inside a Tokio runtime.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_abstract(name: &str) -> Result<UnixListener, ServerError> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;

    let shown = PathBuf::from(format!("@{name}"));
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(io_error(&shown, "use the abstract name"))?;
    let listener =
        UnixListener::bind_addr(&address.into()).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => ServerError::AbstractNameInUse {
                name: name.to_owned(),
            },
            _ => io_error(&shown, "bind")(source),
        })?;
    Ok(listener)
}

/// Abstract sockets exist only on Linux; [`ServerConfig::validate`] refuses them elsewhere.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn bind_abstract(name: &str) -> Result<UnixListener, ServerError> {
    Err(ServerError::InvalidSetting {
        setting: "abstract_name",
        flag: "--socket",
        value: format!("@{name}"),
        allowed: "a socket path: abstract sockets (@name) exist only on Linux".into(),
    })
}

/// Gives the socket file its group, then opens it up to exactly `mode`.
fn set_owner_and_mode(path: &Path, mode: u32, group: Option<u32>) -> Result<(), ServerError> {
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(io_error(path, "set the group of"))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error(path, "chmod"))
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io {
        action,
        path,
        source,
    }
}

/// An exclusive `flock` on `<socket path>.lock`, held for the server's whole life.
///
/// Probing a socket (connect: refused means stale) and then unlinking it is a race on its own:
/// a second server can probe between another's `bind` and `listen`, or pause between its probe
/// and its unlink, and then delete a live server's socket. Taking this lock first makes the
/// probe-unlink-bind sequence exclusive among our servers. The kernel releases the lock when
/// the process exits, however it exits, so a crash never leaves the path locked.
///
/// The lock file is never deleted, not even at shutdown: a server that unlinked it would let
/// the next server lock a fresh file at the same path while a third still held (or was about
/// to take) the lock on the old, unlinked one, and both would believe they own the path.
pub(crate) struct PathLock {
    _file: Flock<File>,
}

impl PathLock {
    /// Creates (0600, no symlink followed) and locks `<path>.lock` without waiting.
    ///
    /// # Errors
    /// [`ServerError::SocketInUse`] when another process holds the lock (a server running, or
    /// starting, on the path); [`ServerError::Io`] when the lock file cannot be opened.
    fn acquire(path: &Path) -> Result<PathLock, ServerError> {
        let lock_path = lock_path(path);
        // O_CLOEXEC is std's default; O_NOFOLLOW so a planted symlink cannot point us at
        // someone else's file.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_error(&lock_path, "open the lock file"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(PathLock { _file: file }),
            Err((_, Errno::EWOULDBLOCK)) => Err(ServerError::SocketInUse {
                path: path.to_path_buf(),
            }),
            Err((_, errno)) => Err(ServerError::Io {
                action: "lock",
                path: lock_path,
                source: errno.into(),
            }),
        }
    }
}

/// `<path>.lock`, beside the socket.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

fn check_length(path: &Path) -> Result<(), ServerError> {
    let length = path.as_os_str().len();
    if length > MAX_SOCKET_PATH_BYTES {
        return Err(ServerError::PathTooLong {
            path: path.to_path_buf(),
            length,
            limit: MAX_SOCKET_PATH_BYTES,
        });
    }
    Ok(())
}

/// Leaves the path free to bind, or says why it is not.
fn clear_stale_socket(path: &Path) -> Result<(), ServerError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Io {
                action: "inspect",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: path.to_path_buf(),
            kind: describe(&meta.file_type()),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServerError::SocketInUse {
            path: path.to_path_buf(),
        }),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            // Stale: nobody listens. Remove it only if it is still the same file we probed.
            match fs::symlink_metadata(path) {
                Ok(again) if (again.dev(), again.ino()) == (meta.dev(), meta.ino()) => {
                    tracing::info!(path = %path.display(), "removing stale socket left by a server that is gone");
                    fs::remove_file(path).map_err(|source| ServerError::Io {
                        action: "remove the stale socket",
                        path: path.to_path_buf(),
                        source,
                    })
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                _ => Err(ServerError::SocketInUse {
                    path: path.to_path_buf(),
                }),
            }
        }
        Err(source) => Err(ServerError::CannotProbe {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Binds while the process umask masks everything but the owner bits of `mode`, then restores
/// the umask. The umask is process-wide: files other threads create in that instant come out
/// more restrictive, never more open.
fn bind_with_owner_bits(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    let owner_bits = mode & 0o700;
    let mask = Mode::from_bits_truncate((0o777 & !owner_bits) as nix::libc::mode_t);
    let previous = umask(mask);
    let bound = UnixListener::bind(path);
    umask(previous);
    bound.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => ServerError::SocketInUse {
            path: path.to_path_buf(),
        },
        _ => io_error(path, "bind")(source),
    })
}

fn describe(file_type: &fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_file() {
        "regular file"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_fifo() {
        "named pipe"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Initial read buffer of a connection; it grows with the messages that arrive.
const IDLE_BUFFER: usize = 1024;
/// Reply bytes the writer takes from the queue before writing them in one vectored write.
const WRITE_BATCH: usize = 64 * 1024;

/// The listening UNIX socket and what serving its connections needs: the path connections
/// report. The uid/gid allow-list is the context's, read at each accept (a reload can change it).
pub(crate) struct SocketListener {
    listener: UnixListener,
    path: PathBuf,
}

impl SocketListener {
    /// Binds `config`'s socket path (see [`bind`]), or its abstract name (see
    /// [`bind_abstract`]), The [`SocketFile`] is the
    /// caller's, to remove at shutdown; an abstract socket has none.
    pub(crate) fn bind(
        config: &ServerConfig,
    ) -> Result<(SocketListener, Option<SocketFile>), ServerError> {
        let (listener, file) = match &config.abstract_name {
            Some(name) => {
                let listener = bind_abstract(name)?;
                tracing::info!(
                    path = %config.socket_path.display(),
                    allowed_uids = ?config.allowed_uids,
                    allowed_gids = ?config.allowed_gids,
                    "listening on an abstract socket (no file; the allow-list is the access control)"
                );
                (listener, None)
            }
            None => {
                let BoundSocket { listener, file } =
                    bind(&config.socket_path, config.socket_mode, config.socket_group)?;
                tracing::info!(
                    path = %file.path.display(),
                    mode = format_args!("{:04o}", config.socket_mode),
                    "listening"
                );
                (listener, Some(file))
            }
        };
        let listener = SocketListener {
            listener,
            path: config.socket_path.clone(),
        };
        Ok((listener, file))
    }

    /// Serves a listener handed in (systemd socket activation, or an embedder's own) under the
    /// server's allow-list (read at each accept, as for a socket we bound). Nothing is done to its file: no lock, no mode, no group, no
    /// removal; those are its creator's (a `.socket` unit's `SocketMode=`, `SocketGroup=`,
    /// `RemoveOnStop=`).
    pub(crate) fn inherit(
        config: &ServerConfig,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<SocketListener, ServerError> {
        let path = crate::activation::describe_unix(&listener)
            .unwrap_or_else(|| config.socket_path.clone());
        let passed = |source| ServerError::Io {
            action: "serve the passed-in socket",
            path: path.clone(),
            source,
        };
        listener.set_nonblocking(true).map_err(passed)?;
        let listener = UnixListener::from_std(listener).map_err(passed)?;
        tracing::info!(
            path = %path.display(),
            "listening on the socket passed in (socket activation): its mode, owner and removal are left to its creator"
        );
        if path != config.socket_path {
            tracing::debug!(configured = %config.socket_path.display(), "the configured socket path is not used");
        }
        Ok(SocketListener { listener, path })
    }

    /// The path connections report (the socket's path, or `@name` when abstract).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A UNIX connection's place under the limits, its peer's kernel-verified credentials, and the
/// socket path it reports.
pub(crate) struct UnixTicket {
    _slot: Slot,
    peer: Option<PeerCredentials>,
    path: PathBuf,
}

impl Listener for SocketListener {
    type Io = UnixStream;
    type Ticket = UnixTicket;

    async fn accept(&mut self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    fn admit(&self, ctx: &ConnectionContext, stream: &UnixStream) -> Result<UnixTicket, Refusal> {
        let peer = stream.peer_cred().ok().map(|cred| PeerCredentials {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        });
        let rules = ctx.access.current();
        // With an allow-list, a peer must show who it is: unknown credentials are not a pass.
        if peer.is_none() && rules.has_allow_list() {
            return Err(Refusal::PeerUnknown);
        }
        if let Some(peer) = peer.filter(|peer| !rules.allows_peer(peer.uid, peer.gid)) {
            return Err(Refusal::PeerNotAllowed {
                uid: peer.uid,
                gid: peer.gid,
            });
        }
        let slot = ctx.admission.connection(peer.map(|peer| peer.uid))?;
        Ok(UnixTicket {
            _slot: slot,
            peer,
            path: self.path.clone(),
        })
    }

    fn refuse(&self, stream: UnixStream, refusal: &Refusal) {
        // A new socket's send buffer is empty, so the line goes out without waiting; if it does
        // not, the peer is told nothing rather than holding anything here.
        let _ = stream.try_write(&refusal.line());
    }

    async fn serve(ctx: Arc<ConnectionContext>, id: u64, stream: UnixStream, ticket: UnixTicket) {
        let UnixTicket { _slot, peer, path } = ticket;
        let info = Arc::new(ConnectionInfo {
            id,
            transport: Transport::Unix { path },
            peer,
        });
        tracing::debug!(conn = id, ?peer, "connection opened");

        let (mut read, write) = match pixl_ipc_io::unix::split_tokio(stream) {
            Ok(halves) => halves,
            Err(err) => {
                tracing::warn!(conn = id, error = %err, "cannot set up the connection");
                return;
            }
        };
        if let Some(window) = ctx.read_spin {
            read.spin_after_lines(window);
        }
        let hangup = read.hangup();
        let codec = JsonLinesCodec::<RawRequest>::with_max_length(ctx.max_message_bytes);
        // Small initial buffers: an idle connection should cost little (buffers grow on demand).
        let lines = FramedRead::with_capacity(read, codec, IDLE_BUFFER);
        let requests = StallGuard::new(lines, ctx.partial_message_timeout).map(|item| {
            item.map(|message| Received {
                message,
                binary: false,
            })
        });
        let (outbound, replies) = Outbound::new(&ctx.outbound_limits);
        let writer = tokio::spawn(write_replies(replies, write));
        let watch = PeerWatch::new(writer, async move { hangup.wait().await });
        connection::serve(info, &ctx, requests, outbound, watch).await;
        tracing::debug!(conn = id, "connection closed");
    }
}

/// Adds a line's pieces to what the writer sends next.
fn queue_line(unsent: &mut WriteQueue, line: Line) {
    for piece in line.into_pieces() {
        unsent.push(piece);
    }
}

/// The connection's one writer: replies go from the outbound queue to the socket as the
/// `Bytes` they were encoded into (vectored writes, never copied together), up to
/// [`WRITE_BATCH`] at a time. Each byte stays counted by the connection's gauge until the kernel
/// has taken it. Once every sender is gone and the last reply is written it ends our side, so
/// the peer sees end-of-file after the last reply; an error means the peer stopped taking data.
async fn write_replies(mut replies: OutboundReceiver, mut socket: UnixWriter) -> io::Result<()> {
    let mut unsent = WriteQueue::default();
    loop {
        if unsent.is_empty() {
            match replies.recv().await {
                Some(line) => queue_line(&mut unsent, line),
                None => break,
            }
        }
        while unsent.len() < WRITE_BATCH {
            match replies.try_recv() {
                Some(line) => queue_line(&mut unsent, line),
                None => break,
            }
        }
        let written =
            std::future::poll_fn(|cx| unsent.poll_write_some(Pin::new(&mut socket), cx)).await?;
        replies.written(written);
    }
    // Every reply is out; a peer already gone cannot be told end-of-file, which is no failure.
    let _ = socket.shutdown().await;
    Ok(())
}
