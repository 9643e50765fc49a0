//! Where a server is: a socket path, or a URL.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A server address.
///
/// Written as a plain path (`/run/app.sock`) or a URL: `unix:///run/app.sock`,
/// `ws://127.0.0.1:7070/`, `wss://host:7443/rpc`. A Linux abstract socket is `@name`,
/// `unix:@name` or `unix://@name` (a file whose name starts with `@` is `./@name`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// A UNIX domain socket.
    Unix(PathBuf),
    /// A Linux abstract UNIX socket: the name, without the `@` (connecting elsewhere fails
    /// with [`Error::Connect`]).
    Abstract(String),
    /// A WebSocket URL.
    WebSocket {
        /// The URL as given.
        url: String,
        /// `wss://`.
        tls: bool,
        /// The host to connect to (and, by default, to verify the certificate for).
        host: String,
        /// The port (80 / 443 when the URL has none).
        port: u16,
    },
}

impl Address {
    /// Parses a path or a URL.
    ///
    /// ```
    /// use pixl_ipc_client::Address;
    /// assert_eq!(Address::parse("unix:///tmp/a.sock").unwrap(), Address::Unix("/tmp/a.sock".into()));
    /// assert_eq!(Address::parse("/tmp/a.sock").unwrap(), Address::Unix("/tmp/a.sock".into()));
    /// assert!(matches!(Address::parse("wss://example.com/rpc").unwrap(), Address::WebSocket { tls: true, port: 443, .. }));
    /// assert_eq!(Address::parse("unix:@app").unwrap(), Address::Abstract("app".into()));
    /// assert_eq!(Address::parse("@app").unwrap(), Address::Abstract("app".into()));
    /// assert!(Address::parse("http://example.com").is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::UnsupportedAddress`] for an empty address, a URL without a host, or a scheme this
    /// client cannot use.
    pub fn parse(text: &str) -> Result<Address, Error> {
        let unsupported = |reason: &str| Error::UnsupportedAddress {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(name) = ["unix://@", "unix:@", "@"]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
        {
            if name.is_empty() {
                return Err(unsupported("the abstract socket name after @ is empty"));
            }
            return Ok(Address::Abstract(name.to_owned()));
        }
        if let Some(path) = text.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(unsupported("the unix:// URL has no path"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        for (scheme, tls, default_port) in [("ws://", false, 80), ("wss://", true, 443)] {
            if let Some(rest) = text.strip_prefix(scheme) {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let (host, port) = split_host_port(authority)
                    .ok_or_else(|| unsupported("the URL has no valid host[:port]"))?;
                if !cfg!(feature = "ws") {
                    return Err(unsupported(NO_WS_SUPPORT));
                }
                if tls && !cfg!(feature = "tls") {
                    return Err(unsupported(NO_TLS_SUPPORT));
                }
                return Ok(Address::WebSocket {
                    url: text.to_owned(),
                    tls,
                    host,
                    port: port.unwrap_or(default_port),
                });
            }
        }
        if text.contains("://") {
            return Err(unsupported(
                "expected a socket path, unix://, ws:// or wss://",
            ));
        }
        if text.is_empty() {
            return Err(unsupported("the address is empty"));
        }
        Ok(Address::Unix(PathBuf::from(text)))
    }
}

/// Why a `ws://` address cannot be used by a build without WebSockets.
pub(crate) const NO_WS_SUPPORT: &str =
    "this build of pixl-ipc-client has no WebSocket support: enable its `ws` feature";
/// Why a `wss://` address cannot be used by a build without TLS.
pub(crate) const NO_TLS_SUPPORT: &str =
    "this build of pixl-ipc-client has no TLS support: enable its `tls` feature";

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    Some((host.to_owned(), port))
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{name}"),
            Address::WebSocket { url, .. } => f.write_str(&shown_url(url)),
        }
    }
}

/// A URL as errors and logs show it: without its query (which may carry `?token=`) and without
/// any `user:password@`, so a secret in the URL never reaches a log line or an error message.
/// [`Address`]'s `Display` shows WebSocket URLs this way.
///
/// ```
/// assert_eq!(
///     pixl_ipc_client::shown_url("wss://u:p@example.com/rpc?token=s3cret"),
///     "wss://example.com/rpc?..."
/// );
/// ```
pub fn shown_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?..."),
        None => (url, ""),
    };
    let shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_owned(),
    };
    shown + query
}

/// Anything [`ClientBuilder::connect`](crate::ClientBuilder::connect) accepts as an address:
/// an [`Address`], a path, or a string to [`Address::parse`].
pub trait ToAddress {
    /// Converts into an [`Address`].
    ///
    /// # Errors
    /// [`Error::UnsupportedAddress`] when a string cannot be parsed.
    fn to_address(self) -> Result<Address, Error>;
}

impl ToAddress for Address {
    fn to_address(self) -> Result<Address, Error> {
        Ok(self)
    }
}

impl ToAddress for &str {
    fn to_address(self) -> Result<Address, Error> {
        Address::parse(self)
    }
}

impl ToAddress for String {
    fn to_address(self) -> Result<Address, Error> {
        Address::parse(&self)
    }
}

impl ToAddress for &Path {
    fn to_address(self) -> Result<Address, Error> {
        Ok(Address::Unix(self.to_path_buf()))
    }
}

impl ToAddress for PathBuf {
    fn to_address(self) -> Result<Address, Error> {
        Ok(Address::Unix(self))
    }
}

impl ToAddress for &PathBuf {
    fn to_address(self) -> Result<Address, Error> {
        Ok(Address::Unix(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_names_are_written_with_an_at_sign() {
        for text in ["@app.sock", "unix:@app.sock", "unix://@app.sock"] {
            let parsed = Address::parse(text).unwrap();
            assert_eq!(parsed, Address::Abstract("app.sock".into()), "{text}");
            assert_eq!(parsed.to_string(), "@app.sock");
        }
        assert!(Address::parse("@").is_err());
        assert!(Address::parse("unix:@").is_err());
        assert_eq!(
            Address::parse("./@app").unwrap(),
            Address::Unix("./@app".into())
        );
    }

    #[test]
    #[cfg(feature = "tls")]
    fn websocket_urls_keep_host_port_and_tls() {
        let parsed = Address::parse("ws://127.0.0.1:7070/rpc?x=1").unwrap();
        assert_eq!(
            parsed,
            Address::WebSocket {
                url: "ws://127.0.0.1:7070/rpc?x=1".into(),
                tls: false,
                host: "127.0.0.1".into(),
                port: 7070
            }
        );
        let v6 = Address::parse("wss://[::1]:9443").unwrap();
        assert!(
            matches!(v6, Address::WebSocket { tls: true, ref host, port: 9443, .. } if host == "::1")
        );
        assert!(Address::parse("ws://:80/").is_err());
        assert!(Address::parse("ws://host:notaport/").is_err());
    }

    #[test]
    #[cfg(not(feature = "ws"))]
    fn without_the_ws_feature_a_websocket_url_is_refused_naming_the_feature() {
        let err = Address::parse("ws://127.0.0.1:7070/").unwrap_err();
        assert!(err.to_string().contains("`ws` feature"), "{err}");
    }

    #[test]
    #[cfg(all(feature = "ws", not(feature = "tls")))]
    fn without_the_tls_feature_a_wss_url_is_refused_naming_the_feature() {
        assert!(Address::parse("ws://127.0.0.1:7070/").is_ok());
        let err = Address::parse("wss://127.0.0.1:7070/").unwrap_err();
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }

    #[test]
    fn a_url_is_shown_without_its_query_or_credentials() {
        assert_eq!(
            shown_url("wss://user:pw@example.com:7443/rpc?token=s3cret"),
            "wss://example.com:7443/rpc?..."
        );
        assert_eq!(shown_url("ws://127.0.0.1:7070/"), "ws://127.0.0.1:7070/");
    }
}
