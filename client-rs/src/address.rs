//! Where a server is: a socket path, or a URL.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A server address.
///
/// Written as a plain path (`/run/app.sock`) or a URL (`unix:///run/app.sock`). `ws://` and
/// `wss://` URLs are recognised and refused with [`Error::UnsupportedAddress`] until the
/// WebSocket transport lands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// A UNIX domain socket.
    Unix(PathBuf),
}

impl Address {
    /// Parses a path or a URL.
    ///
    /// ```
    /// use pixl_ipc_client::Address;
    /// assert_eq!(Address::parse("unix:///tmp/a.sock").unwrap(), Address::Unix("/tmp/a.sock".into()));
    /// assert_eq!(Address::parse("/tmp/a.sock").unwrap(), Address::Unix("/tmp/a.sock".into()));
    /// assert!(Address::parse("http://example.com").is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::UnsupportedAddress`] for an empty address or a scheme this client cannot use.
    pub fn parse(text: &str) -> Result<Address, Error> {
        let unsupported = |reason: &str| Error::UnsupportedAddress {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = text.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(unsupported("the unix:// URL has no path"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if text.starts_with("ws://") || text.starts_with("wss://") {
            return Err(unsupported("WebSocket addresses are not supported yet"));
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

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
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
