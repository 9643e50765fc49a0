//! Readiness, status and watchdog notifications to the service manager: datagrams to
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace), as `sd_notify(3)` sends them.
//!
//! Written here rather than taken from the `sd-notify` crate: it cannot reach an abstract
//! `@` socket, and it reads the environment at every call, which rules out removing the
//! variables at start (so children do not inherit them). The protocol is one datagram of
//! `KEY=value` lines per notification.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::activation::{parse_var, take_var, ActivationError};

/// Sends notifications to the service manager that started this process (systemd with
/// `Type=notify`). Cheap to clone. Give it to
/// [`Server::with_notifier`](crate::Server::with_notifier) and the server sends `READY=1` once
/// it listens, `STOPPING=1` when it starts draining, a `STATUS=` line with its connections and
/// requests at each statistics interval, and `WATCHDOG=1` at half the `WATCHDOG_USEC` period.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    socket: UnixDatagram,
    address: SocketAddr,
    /// `NOTIFY_SOCKET` as given.
    shown: String,
    /// The manager's watchdog period (`WATCHDOG_USEC`), when it watches this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`, or `None` when it is unset (not started by a service
    /// manager that listens). `WATCHDOG_USEC` sets the watchdog period, if `WATCHDOG_PID` is
    /// unset or names this process.
    ///
    /// `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` are removed from the environment,
    /// so no child process notifies in our name; call it once, early in `main`, before any
    /// other thread exists (see [`Listeners::from_env`](crate::Listeners::from_env)).
    ///
    /// # Errors
    /// [`ActivationError::Environment`] when `NOTIFY_SOCKET` is neither an absolute path nor an
    /// `@` abstract name (systemd's `vsock:` addresses are not supported);
    /// [`ActivationError::Notify`] when no datagram socket can be made. Watchdog variables that
    /// do not parse turn the watchdog off (with a warning, if logging is set up already) and
    /// keep the notifier.
    pub fn from_env() -> Result<Option<Notifier>, ActivationError> {
        let socket = take_var("NOTIFY_SOCKET");
        let usec = take_var("WATCHDOG_USEC");
        let pid = take_var("WATCHDOG_PID");
        let Some(socket) = socket else {
            return Ok(None);
        };
        // A watchdog setting that does not parse costs the watchdog only: without READY=1 a
        // Type=notify unit would time out and restart in a loop.
        let watchdog = match (usec, pid) {
            (None, _) => None,
            (Some(usec), pid) => {
                let parsed = parse_var::<u64>("WATCHDOG_USEC", &usec).and_then(|usec| {
                    let ours = match &pid {
                        None => true,
                        Some(pid) => parse_var::<u32>("WATCHDOG_PID", pid)? == std::process::id(),
                    };
                    Ok((ours && usec > 0).then(|| Duration::from_micros(usec)))
                });
                parsed.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "no watchdog pings: the watchdog settings do not parse");
                    None
                })
            }
        };
        Notifier::new(&socket, watchdog).map(Some)
    }

    fn new(address: &OsStr, watchdog: Option<Duration>) -> Result<Notifier, ActivationError> {
        let shown = address.to_string_lossy().into_owned();
        let invalid = |reason| ActivationError::Environment {
            variable: "NOTIFY_SOCKET",
            value: shown.clone(),
            reason,
        };
        let bytes = address.as_bytes();
        let address = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(Path::new(address))
                .map_err(|_| invalid("the path is too long for a socket address"))?,
            Some(b'@') => abstract_address(&bytes[1..]).map_err(|_| {
                invalid(
                    "an abstract socket name, which this system does not support or is too long",
                )
            })?,
            _ => return Err(invalid("expected an absolute path or an @abstract name")),
        };
        let socket = UnixDatagram::unbound().map_err(ActivationError::Notify)?;
        // A manager that stops reading must never stall the server: a notification that
        // cannot go out at once is dropped (and reported to the caller).
        socket
            .set_nonblocking(true)
            .map_err(ActivationError::Notify)?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                socket,
                address,
                shown,
                watchdog,
            }),
        })
    }

    /// Sends `state`: one or more `KEY=value` lines, e.g. `"READY=1\nSTATUS=serving"`.
    ///
    /// # Errors
    /// The datagram could not be sent: the manager is gone, or its queue is full
    /// ([`io::ErrorKind::WouldBlock`]; the notification is dropped, not queued).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let sent = self
            .inner
            .socket
            .send_to_addr(state.as_bytes(), &self.inner.address)?;
        if sent == state.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notification was cut short",
            ))
        }
    }

    /// How often to send `WATCHDOG=1`: half the manager's `WATCHDOG_USEC` (as sd_watchdog_enabled(3)
    /// advises), or `None` when the manager does not watch this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.watchdog.map(|period| period / 2)
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("socket", &self.inner.shown)
            .field("watchdog", &self.inner.watchdog)
            .finish()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_and_an_abstract_name_are_addresses_and_anything_else_is_refused() {
        assert!(Notifier::new(OsStr::new("/run/systemd/notify"), None).is_ok());
        #[cfg(target_os = "linux")]
        assert!(Notifier::new(OsStr::new("@/org/freedesktop/systemd1/notify/1"), None).is_ok());
        for bad in ["", "relative/path", "vsock:2:1234"] {
            let err = Notifier::new(OsStr::new(bad), None).unwrap_err();
            assert!(err.to_string().contains("NOTIFY_SOCKET"), "{err}");
        }
    }

    #[test]
    fn the_watchdog_interval_is_half_the_period() {
        let notifier = Notifier::new(OsStr::new("/x"), Some(Duration::from_secs(30))).unwrap();
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(15)));
        let unwatched = Notifier::new(OsStr::new("/x"), None).unwrap();
        assert_eq!(unwatched.watchdog_interval(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_notification_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pixl-ipc-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(OsStr::new(&format!("@{name}")), None).unwrap();
        notifier.notify("READY=1\nSTATUS=up").unwrap();
        let mut buffer = [0u8; 64];
        let length = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=up");
    }
}
