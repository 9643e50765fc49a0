//! Every numeric setting's allowed range, checked in one place before a server creates
//! anything, so the binary and embedders refuse the same values with the same messages.
//!
//! Each setting either has a useful meaning over its whole range or is refused: zero where it
//! would silently break the server (a reply budget of 0 bytes never lets a reply out, a ping
//! interval of 0 panics the WebSocket driver), and durations past [`MAX_TIMEOUT`], which
//! overflow `Instant + Duration` arithmetic long before they mean anything.

use std::time::Duration;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The longest abstract socket name: a `sockaddr_un` holds 108 bytes, the first of which is
/// the NUL that marks the name as abstract.
pub const MAX_ABSTRACT_NAME_BYTES: usize = 107;

/// The longest duration any setting accepts: a year. Longer is a typo or an attempt at
/// "never" (spelled by leaving the optional settings unset); a year also keeps every deadline
/// inside Tokio's timer range (about two years) and far from `Instant` overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most connection threads `worker_threads` accepts; more than this is a typo.
pub const MAX_WORKER_THREADS: usize = 1024;
/// The longest low-latency spin window (`read_spin`): past a millisecond, spinning costs far
/// more CPU than the wake-up it saves (tens of microseconds).
pub const MAX_READ_SPIN: Duration = Duration::from_millis(1);
/// The shortest statistics interval: below it the log is mostly statistics.
pub const MIN_STATS_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest timer setting (`ping_interval`, `partial_message_timeout`, `handler_timeout`).
pub const MIN_TIMER: Duration = Duration::from_millis(1);

impl ServerConfig {
    /// An abstract socket: a name that fits, on Linux, with no file settings.
    fn validate_abstract(&self, name: &str) -> Result<(), ServerError> {
        let shown = || format!("@{name}");
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return Err(invalid(
                "abstract_name",
                "--socket",
                shown(),
                "a socket path: abstract sockets (@name) exist only on Linux".into(),
            ));
        }
        if name.is_empty() || name.len() > MAX_ABSTRACT_NAME_BYTES || name.contains('\0') {
            return Err(invalid(
                "abstract_name",
                "--socket",
                shown(),
                format!("a name of 1 ..= {MAX_ABSTRACT_NAME_BYTES} bytes after the @, without NUL bytes"),
            ));
        }
        let no_file = "nothing: an abstract socket has no file to set it on, so everyone on the host (in this network namespace) can connect; limit who may with --allow-uid/--allow-gid";
        if self.socket_mode != crate::config::DEFAULT_SOCKET_MODE {
            return Err(invalid(
                "socket_mode",
                "--chmod",
                format!(
                    "{:o} with the abstract socket {}",
                    self.socket_mode,
                    shown()
                ),
                no_file.into(),
            ));
        }
        if let Some(gid) = self.socket_group {
            return Err(invalid(
                "socket_group",
                "--group",
                format!("{gid} with the abstract socket {}", shown()),
                no_file.into(),
            ));
        }
        Ok(())
    }

    /// Checks every numeric setting against its allowed range. [`Server::start`] calls this
    /// before it creates anything.
    ///
    /// [`Server::start`]: crate::Server::start
    ///
    /// # Errors
    /// [`ServerError::InvalidSetting`] naming the first setting out of range, its value and
    /// the range allowed.
    pub fn validate(&self) -> Result<(), ServerError> {
        if let Some(name) = &self.abstract_name {
            self.validate_abstract(name)?;
        }
        if self.socket_mode > 0o777 {
            return Err(invalid(
                "socket_mode",
                "--chmod",
                format!("{:o}", self.socket_mode),
                "permission bits 0 ..= 777 (octal)".into(),
            ));
        }
        duration(
            "exit_timeout",
            "--exit-timeout-ms",
            self.exit_timeout,
            Duration::ZERO,
        )?;
        count(
            "max_message_bytes",
            "--max-message-bytes",
            self.max_message_bytes,
            isize::MAX as usize,
        )?;
        count(
            "max_connections",
            "--max-connections",
            self.max_connections,
            tokio::sync::Semaphore::MAX_PERMITS,
        )?;
        if let Some(share) = self.max_connections_per_uid {
            count(
                "max_connections_per_uid",
                "--max-connections-per-uid",
                share,
                tokio::sync::Semaphore::MAX_PERMITS,
            )?;
        }
        count(
            "max_in_flight_per_connection",
            "--max-in-flight",
            self.max_in_flight_per_connection,
            usize::MAX,
        )?;
        count(
            "max_streams_per_connection",
            "--max-streams",
            self.max_streams_per_connection,
            usize::MAX,
        )?;
        count(
            "max_outbound_bytes_per_connection",
            "--max-outbound-bytes",
            self.max_outbound_bytes_per_connection,
            usize::MAX,
        )?;
        count(
            "max_held_bytes_per_connection",
            "--max-held-bytes",
            self.max_held_bytes_per_connection,
            usize::MAX,
        )?;
        count(
            "max_held_bytes_total",
            "--max-held-bytes-total",
            self.max_held_bytes_total,
            usize::MAX,
        )?;
        duration(
            "stats_interval",
            "--stats-interval",
            self.stats_interval,
            MIN_STATS_INTERVAL,
        )?;
        duration(
            "slow_threshold",
            "--slow-threshold-ms",
            self.slow_threshold,
            Duration::ZERO,
        )?;
        if let Some(timeout) = self.handler_timeout {
            duration(
                "handler_timeout",
                "--handler-timeout-ms",
                timeout,
                MIN_TIMER,
            )?;
        }
        duration(
            "partial_message_timeout",
            "--partial-message-timeout-ms",
            self.partial_message_timeout,
            MIN_TIMER,
        )?;
        if let Some(window) = self.read_spin {
            if window.is_zero() || window > MAX_READ_SPIN {
                return Err(invalid(
                    "read_spin",
                    "--spin-us",
                    format!("{} us", window.as_micros()),
                    format!("1 ..= {} us", MAX_READ_SPIN.as_micros()),
                ));
            }
        }
        if let Some(threads) = self.worker_threads {
            count("worker_threads", "--threads", threads, MAX_WORKER_THREADS)?;
        }
        self.validate_websocket()
    }

    fn validate_websocket(&self) -> Result<(), ServerError> {
        let ws = &self.websocket;
        // An empty token would let in every peer that sends an empty one (`?token=`), while
        // the banner and the allow-list rules count the listener as token-protected.
        if ws.token.as_deref().is_some_and(str::is_empty) {
            return Err(ServerError::InvalidSetting {
                setting: "websocket.token",
                flag: "--ws-token-file",
                value: "\"\"".into(),
                allowed: "a non-empty token (or none)".into(),
            });
        }
        // The OS caps the backlog at net.core.somaxconn; 0 would leave it at its minimum.
        count(
            "websocket.backlog",
            "--ws-backlog",
            ws.backlog as usize,
            i32::MAX as usize,
        )?;
        count(
            "websocket.max_handshakes",
            "max_handshakes",
            ws.max_handshakes,
            // Twice this, plus a place per listener, makes the handshake-socket semaphore.
            tokio::sync::Semaphore::MAX_PERMITS / 4,
        )?;
        duration(
            "websocket.ping_interval",
            "--ws-ping-interval-ms",
            ws.ping_interval,
            MIN_TIMER,
        )?;
        duration(
            "websocket.idle_timeout",
            "--ws-idle-timeout-ms",
            ws.idle_timeout,
            MIN_TIMER,
        )?;
        // A healthy peer that sends nothing is silent until it answers a ping: an idle timeout
        // not longer than the ping interval would drop it.
        if ws.idle_timeout <= ws.ping_interval {
            return Err(invalid(
                "websocket.idle_timeout",
                "--ws-idle-timeout-ms",
                millis(ws.idle_timeout),
                format!(
                    "longer than websocket.ping_interval (--ws-ping-interval-ms, {} ms), or idle peers are dropped before they are pinged",
                    ws.ping_interval.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// A count or size: 0 is refused (it would refuse or stall everything), `max` is the most.
fn count(
    setting: &'static str,
    flag: &'static str,
    value: usize,
    max: usize,
) -> Result<(), ServerError> {
    if (1..=max).contains(&value) {
        return Ok(());
    }
    Err(invalid(
        setting,
        flag,
        value.to_string(),
        format!("1 ..= {max}"),
    ))
}

/// A duration between `min` and [`MAX_TIMEOUT`].
fn duration(
    setting: &'static str,
    flag: &'static str,
    value: Duration,
    min: Duration,
) -> Result<(), ServerError> {
    if (min..=MAX_TIMEOUT).contains(&value) {
        return Ok(());
    }
    Err(invalid(
        setting,
        flag,
        millis(value),
        format!(
            "{} ..= {} ms (a year)",
            min.as_millis(),
            MAX_TIMEOUT.as_millis()
        ),
    ))
}

fn millis(value: Duration) -> String {
    if value.subsec_nanos() % 1_000_000 == 0 {
        format!("{} ms", value.as_millis())
    } else {
        format!("{value:?}")
    }
}

fn invalid(
    setting: &'static str,
    flag: &'static str,
    value: String,
    allowed: String,
) -> ServerError {
    ServerError::InvalidSetting {
        setting,
        flag,
        value,
        allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: ServerConfig) -> String {
        match config.validate() {
            Ok(()) => String::new(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_abstract_socket_takes_no_file_settings_and_a_name_that_fits() {
        assert_eq!(check(ServerConfig::new_abstract("app")), "");
        let mode = check(ServerConfig::new_abstract("app").with_socket_mode(0o660));
        assert!(
            mode.contains("socket_mode (--chmod)") && mode.contains("@app"),
            "{mode}"
        );
        let group = check(ServerConfig::new_abstract("app").with_socket_group(0));
        assert!(group.contains("socket_group (--group)"), "{group}");
        assert!(check(ServerConfig::new_abstract("")).contains("1 ..= 107 bytes"));
        assert!(check(ServerConfig::new_abstract("x".repeat(108))).contains("1 ..= 107 bytes"));
        assert_eq!(check(ServerConfig::new_abstract("x".repeat(107))), "");
        assert!(check(ServerConfig::new_abstract("a\0b")).contains("without NUL"));
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(check(ServerConfig::new("/tmp/x.sock")), "");
    }

    #[test]
    fn zero_and_absurd_values_are_refused_by_name() {
        let base = || ServerConfig::new("/tmp/x.sock");
        let cases: Vec<(ServerConfig, &str)> = vec![
            (
                base().with_max_outbound_bytes_per_connection(0),
                "--max-outbound-bytes",
            ),
            (base().with_max_message_bytes(0), "--max-message-bytes"),
            (
                base().with_websocket(crate::WebSocketConfig::default().with_token("")),
                "--ws-token-file",
            ),
            (
                base().with_max_message_bytes(isize::MAX as usize + 1),
                "--max-message-bytes",
            ),
            (base().with_max_connections(0), "--max-connections"),
            (base().with_max_connections(usize::MAX), "--max-connections"),
            (
                base().with_max_connections_per_uid(0),
                "--max-connections-per-uid",
            ),
            (
                base().with_exit_timeout(Duration::from_millis(u64::MAX)),
                "--exit-timeout-ms",
            ),
            (
                base().with_handler_timeout(Duration::ZERO),
                "--handler-timeout-ms",
            ),
            (
                base().with_partial_message_timeout(Duration::ZERO),
                "--partial-message-timeout-ms",
            ),
            (
                base().with_stats_interval(Duration::ZERO),
                "--stats-interval",
            ),
            (
                base().with_slow_threshold(Duration::MAX),
                "--slow-threshold-ms",
            ),
            (
                base().with_websocket(
                    crate::WebSocketConfig::default()
                        .with_keepalive(Duration::ZERO, Duration::from_secs(1)),
                ),
                "--ws-ping-interval-ms",
            ),
            (
                base().with_websocket(
                    crate::WebSocketConfig::default()
                        .with_keepalive(Duration::from_secs(2), Duration::from_secs(1)),
                ),
                "--ws-idle-timeout-ms",
            ),
            (
                base().with_websocket(crate::WebSocketConfig::default().with_backlog(0)),
                "--ws-backlog",
            ),
        ];
        for (config, flag) in cases {
            let message = check(config);
            assert!(message.contains(flag), "{flag}: {message:?}");
        }
        let mut threads = base();
        threads.worker_threads = Some(0);
        assert!(check(threads).contains("--threads"));
        let mut mode = base();
        mode.socket_mode = 0o1777;
        assert!(check(mode).contains("--chmod"));
    }

    #[test]
    fn zero_where_it_has_a_meaning_is_accepted() {
        let config = ServerConfig::new("/tmp/x.sock")
            .with_exit_timeout(Duration::ZERO)
            .with_slow_threshold(Duration::ZERO)
            .with_max_outbound_bytes_per_connection(1);
        assert_eq!(check(config), "");
    }
}
