//! Listening sockets handed to the server instead of bound by it: systemd socket activation
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, as `sd_listen_fds_with_names(3)` reads them),
//! or listeners an embedding program made itself.
//!
//! The protocol is a few lines, so they are written here rather than taken from a crate:
//! `listenfd` also takes descriptors when `LISTEN_PID` is missing and ignores `LISTEN_FDNAMES`;
//! `sd-notify` hands back raw descriptors without looking at them, and re-reads the environment
//! on every call. Either way the one `unsafe` step, owning a descriptor number, would remain
//! ours. The checks (is it a listening stream socket, of which family) use `socket2`, which
//! Tokio already depends on.
//!
//! A socket passed in belongs to whoever created it (systemd, with the `.socket` unit's
//! `SocketMode=`, `SocketUser=`, `SocketGroup=` and `RemoveOnStop=`): the server never unlinks,
//! chmods or chowns it, takes no `<socket>.lock` for it (that lock only makes our own
//! probe-unlink-bind exclusive, and none of that happens), and leaves it in place at exit.

use std::env;
use std::ffi::OsString;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use socket2::{Domain, Socket, Type};

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const FIRST_PASSED_FD: RawFd = 3;

/// Set by the first [`Listeners::from_env`] that takes descriptors: none is ever owned twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Listening sockets for [`Server::with_listeners`](crate::Server::with_listeners) to serve
/// instead of (UNIX) or besides (WebSocket) the ones it would bind.
///
/// ```
/// use pixl_ipc_server::Listeners;
///
/// # fn main() -> std::io::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("pixl-ipc-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("made-by-me.sock");
/// let listeners = Listeners::default()
///     .with_unix(std::os::unix::net::UnixListener::bind(&path)?)
///     .with_websocket(std::net::TcpListener::bind("127.0.0.1:0")?);
/// assert!(!listeners.is_empty());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Listeners {
    /// Served instead of binding `socket_path`. Its file (if it has one) is never unlinked,
    /// chmod'ed or chown'ed, and no `<socket>.lock` is taken for it: whoever created it owns it.
    pub unix: Option<UnixListener>,
    /// Served as WebSocket listeners, beside any in `websocket.listen`, with the same TLS and
    /// access rules.
    pub websocket: Vec<TcpListener>,
}

impl Listeners {
    /// Serves this UNIX listener instead of binding the configured path.
    pub fn with_unix(mut self, listener: UnixListener) -> Self {
        self.unix = Some(listener);
        self
    }

    /// Also serves WebSockets on this TCP listener.
    pub fn with_websocket(mut self, listener: TcpListener) -> Self {
        self.websocket.push(listener);
        self
    }

    /// True when there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.unix.is_none() && self.websocket.is_empty()
    }

    /// The sockets systemd passed to this process (socket activation), or `None` when it passed
    /// none: `LISTEN_PID` unset or naming another process (then descriptors 3 and up are not
    /// ours and are left alone), or `LISTEN_FDS` unset.
    ///
    /// Each passed descriptor must be a listening stream socket: a UNIX one (at most one) is
    /// served instead of the configured path, TCP ones (IPv4 or IPv6) as WebSocket listeners.
    /// They are told apart by their address family (`getsockname`), so names do not matter;
    /// `LISTEN_FDNAMES` (`FileDescriptorName=`) only names them in errors.
    ///
    /// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the environment, so no
    /// child process takes them for its own, and each descriptor taken is marked close-on-exec.
    /// Call it once, early in `main`, before any other thread exists (the Tokio runtime's
    /// included): changing the environment while another thread reads it is not safe. Only the
    /// first call in a process takes descriptors. Do not also hand the descriptors to other
    /// code: they are owned by the returned listeners, and closed with them.
    ///
    /// # Errors
    /// [`ActivationError`] for variables that do not parse, a name count that differs from the
    /// descriptor count, or a descriptor that is closed, not a listening stream socket, of
    /// another family, or a second UNIX socket. Descriptors already taken are closed.
    pub fn from_env() -> Result<Option<Listeners>, ActivationError> {
        let pid = take_var("LISTEN_PID");
        let count = take_var("LISTEN_FDS");
        let names = take_var("LISTEN_FDNAMES");
        let Some(pid) = pid else { return Ok(None) };
        let pid: u32 = parse_var("LISTEN_PID", &pid)?;
        if pid != std::process::id() {
            return Ok(None);
        }
        let Some(count) = count else { return Ok(None) };
        let count: u32 = parse_var("LISTEN_FDS", &count)?;
        // sd_listen_fds: zero descriptors is "nothing passed", not an error.
        if count == 0 {
            return Ok(None);
        }
        let last = RawFd::try_from(count)
            .ok()
            .and_then(|count| FIRST_PASSED_FD.checked_add(count));
        let last = match last {
            Some(last) if count > 0 => last,
            _ => {
                return Err(ActivationError::Environment {
                    variable: "LISTEN_FDS",
                    value: count.to_string(),
                    reason: "expected at least 1 descriptor",
                })
            }
        };
        let names = match names {
            Some(names) => {
                let names: Vec<String> = names
                    .to_string_lossy()
                    .split(':')
                    .map(str::to_owned)
                    .collect();
                if names.len() != count as usize {
                    return Err(ActivationError::Environment {
                        variable: "LISTEN_FDNAMES",
                        value: names.join(":"),
                        reason: "expected one name per descriptor in LISTEN_FDS",
                    });
                }
                names
            }
            None => vec!["unknown".to_owned(); count as usize],
        };
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        let mut listeners = Listeners::default();
        for (fd, name) in (FIRST_PASSED_FD..last).zip(names) {
            let bad = |reason: String| ActivationError::Descriptor {
                fd,
                name: name.clone(),
                reason,
            };
            // Close-on-exec first, as sd_listen_fds does; it also says whether `fd` is open.
            let flags = fcntl(fd, FcntlArg::F_GETFD).map_err(|errno| match errno {
                Errno::EBADF => bad("it is not open".to_owned()),
                errno => bad(format!("cannot read its flags: {errno}")),
            })?;
            let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
            fcntl(fd, FcntlArg::F_SETFD(flags))
                .map_err(|errno| bad(format!("cannot mark it close-on-exec: {errno}")))?;
            match classify(own_passed_descriptor(fd)).map_err(bad)? {
                Passed::Unix(listener) => {
                    if listeners.unix.is_some() {
                        return Err(bad(
                            "it is a second UNIX socket, and the server serves one: pass one ListenStream= path".to_owned(),
                        ));
                    }
                    listeners.unix = Some(listener);
                }
                Passed::Tcp(listener) => listeners.websocket.push(listener),
            }
        }
        Ok(Some(listeners))
    }
}

/// Takes ownership of descriptor `fd`, passed to this process by its service manager.
#[allow(unsafe_code)]
fn own_passed_descriptor(fd: RawFd) -> OwnedFd {
    // SAFETY: `from_raw_fd` needs `fd` open and owned by nothing else in this process. It is
    // open: the caller's F_GETFD on it has just succeeded. Nothing else owns it: the service
    // manager opened it for this process (`LISTEN_PID` is our pid) and nothing in the process
    // opened it; `TAKEN` lets one call per process get here, and that call takes each
    // descriptor once (`Listeners::from_env` says not to hand them to other code as well).
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A passed descriptor, checked.
enum Passed {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts a listening stream socket of the UNIX, IPv4 or IPv6 family; says what else it is.
fn classify(fd: OwnedFd) -> Result<Passed, String> {
    let socket = Socket::from(fd);
    let kind = socket.r#type().map_err(|err| match err.raw_os_error() {
        Some(nix::libc::ENOTSOCK) => "it is not a socket".to_owned(),
        _ => format!("cannot read its socket type: {err}"),
    })?;
    if kind != Type::STREAM {
        return Err(format!(
            "it is a {} socket, not a stream socket (ListenStream=)",
            if kind == Type::DGRAM {
                "datagram"
            } else if kind == Type::SEQPACKET {
                "seqpacket"
            } else {
                "non-stream"
            }
        ));
    }
    // SO_ACCEPTCONN; where the system has no such query, a socket that does not listen fails
    // at its first accept instead.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let listening = socket
            .is_listener()
            .map_err(|err| format!("cannot tell whether it listens: {err}"))?;
        if !listening {
            return Err(
                "it is not listening (an accepted connection, or a socket never passed to listen)"
                    .to_owned(),
            );
        }
    }
    // The family of the address it is bound to (getsockname), which every system reports.
    let domain = socket
        .local_addr()
        .map_err(|err| format!("cannot read its address: {err}"))?
        .domain();
    if domain == Domain::UNIX {
        Ok(Passed::Unix(UnixListener::from(OwnedFd::from(socket))))
    } else if domain == Domain::IPV4 || domain == Domain::IPV6 {
        Ok(Passed::Tcp(TcpListener::from(OwnedFd::from(socket))))
    } else {
        Err(format!(
            "its address family ({domain:?}) is neither UNIX nor IPv4/IPv6"
        ))
    }
}

/// Reads `name` and removes it from the environment.
pub(crate) fn take_var(name: &str) -> Option<OsString> {
    let value = env::var_os(name);
    if value.is_some() {
        env::remove_var(name);
    }
    value
}

/// Parses a variable's value, or says which variable is wrong.
pub(crate) fn parse_var<T: std::str::FromStr>(
    variable: &'static str,
    value: &OsString,
) -> Result<T, ActivationError> {
    value
        .to_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ActivationError::Environment {
            variable,
            value: value.to_string_lossy().into_owned(),
            reason: "expected a non-negative number",
        })
}

/// Why what a service manager passed in cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// A variable of the protocol does not parse.
    #[error("{variable}={value:?} set by the service manager is invalid: {reason}")]
    Environment {
        /// `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, `NOTIFY_SOCKET` or `WATCHDOG_USEC`.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A passed descriptor cannot be served.
    #[error("descriptor {fd} ({name}) passed by the service manager cannot be served: {reason}")]
    Descriptor {
        /// The descriptor number (3 for the first).
        fd: RawFd,
        /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`), or "unknown".
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No datagram socket for notifications could be made.
    #[error("cannot make a socket to notify the service manager: {0}")]
    Notify(#[source] std::io::Error),
}

/// What a passed-in UNIX listener is bound to, for logs and [`crate::ServerHandle::socket_path`]:
/// its path, `@name` for an abstract address, or `None` when unnamed.
pub(crate) fn describe_unix(listener: &UnixListener) -> Option<std::path::PathBuf> {
    let addr = listener.local_addr().ok()?;
    if let Some(path) = addr.as_pathname() {
        return Some(path.to_path_buf());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = addr.as_abstract_name() {
            return Some(format!("@{}", String::from_utf8_lossy(name)).into());
        }
    }
    None
}
