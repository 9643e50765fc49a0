//! Which web pages may open a WebSocket to the server: the `Origin` rules of the upgrade.
//!
//! A browser sends `Origin` on every WebSocket upgrade, naming the page that opened it, and
//! any page may try to connect to `ws://127.0.0.1:PORT`: without a check every web site the
//! user visits could call every handler (cross-site WebSocket hijacking). By default only a
//! page from the server's own host and port (`Origin` equal to the request's `Host`) is let
//! in; other pages need `--ws-origin`. Requests without `Origin` (non-browser clients) are not
//! affected.

use std::net::IpAddr;

/// The Origins a listener accepts besides requests without one.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginPolicy {
    /// Every Origin (`--ws-origin '*'`).
    pub(crate) any: bool,
    /// Origins allowed besides the same-origin ones, as configured.
    pub(crate) listed: Vec<String>,
}

impl OriginPolicy {
    /// True when a request with this `Origin` and `Host` (`None` when absent) may upgrade;
    /// `tls`: the listener speaks `wss://` (port 443 when `Host` names none).
    pub(crate) fn allows(&self, origin: &str, host: Option<&str>, tls: bool) -> bool {
        if self.any {
            return true;
        }
        let parsed = Origin::parse(origin);
        let listed = self.listed.iter().any(|ok| {
            ok == origin || parsed.is_some() && Origin::parse(ok).as_ref() == parsed.as_ref()
        });
        listed || host.is_some_and(|host| same_origin(parsed.as_ref(), host, tls))
    }
}

/// `scheme://host[:port]` as browsers send it, normalised: lower-case scheme and host, the
/// scheme's default port filled in.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `None` for `null` (sandboxed pages, `file:` URLs), other schemes, and anything with a
    /// path, user info or no host.
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        if rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = authority(rest, default_port)?;
        Some(Origin { scheme, host, port })
    }
}

/// `host[:port]` or `[v6]:port`: the host in lower case, and the port (`default_port` when
/// absent).
fn authority(text: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, after)
    } else {
        match text.find(':') {
            Some(colon) => text.split_at(colon),
            None => (text, ""),
        }
    };
    let port = match port {
        "" => default_port,
        port => {
            let digits = port.strip_prefix(':')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()?
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// The page's host and port equal the ones the request was sent to (`Host`), and that host
/// cannot have been pointed at this server by someone else's DNS: an IP address, `localhost`,
/// or any name over TLS (the certificate must match it). A plain-text name could be a DNS
/// rebinding attack, where `evil.example` first serves a page and then resolves to 127.0.0.1,
/// making that page same-origin with us; such names need `--ws-origin`.
fn same_origin(origin: Option<&Origin>, host: &str, tls: bool) -> bool {
    let Some(origin) = origin else {
        return false;
    };
    let Some((host, port)) = authority(host, if tls { 443 } else { 80 }) else {
        return false;
    };
    origin.host == host && origin.port == port && (tls || cannot_be_rebound(&host))
}

fn cannot_be_rebound(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> OriginPolicy {
        OriginPolicy::default()
    }

    #[test]
    fn by_default_only_the_servers_own_host_and_port_are_allowed() {
        let policy = default_policy();
        let host = Some("127.0.0.1:7070");
        assert!(policy.allows("http://127.0.0.1:7070", host, false));
        assert!(policy.allows("HTTP://127.0.0.1:7070", host, false));
        assert!(policy.allows("https://127.0.0.1:7070", host, false));
        assert!(!policy.allows("https://evil.example", host, false));
        assert!(!policy.allows("http://127.0.0.1:7071", host, false));
        assert!(!policy.allows("http://127.0.0.1", host, false));
        assert!(!policy.allows("http://127.0.0.2:7070", host, false));
        assert!(!policy.allows("null", host, false));
        assert!(!policy.allows("", host, false));
        assert!(!policy.allows("file://", host, false));
        assert!(!policy.allows("chrome-extension://abc", host, false));
        assert!(!policy.allows("http://127.0.0.1:7070/", host, false));
        assert!(!policy.allows("http://user@127.0.0.1:7070", host, false));
        assert!(!policy.allows("http://127.0.0.1:7070", None, false));
        assert!(!policy.allows("http://127.0.0.1:7070", Some(""), false));
    }

    #[test]
    fn hosts_compare_case_insensitively_with_default_ports() {
        let policy = default_policy();
        assert!(policy.allows("http://LocalHost:7070", Some("localhost:7070"), false));
        assert!(policy.allows("http://localhost", Some("localhost"), false));
        assert!(policy.allows("http://localhost:80", Some("localhost"), false));
        assert!(policy.allows("http://localhost", Some("localhost:80"), false));
        assert!(policy.allows("https://localhost", Some("localhost"), true));
        assert!(policy.allows("wss://localhost:443", Some("localhost"), true));
        assert!(!policy.allows("http://localhost", Some("localhost"), true));
        assert!(policy.allows(
            "http://app.localhost:8080",
            Some("APP.localhost:8080"),
            false
        ));
        assert!(policy.allows("http://[::1]:7070", Some("[::1]:7070"), false));
        assert!(!policy.allows("http://[::1]:7070", Some("::1:7070"), false));
        assert!(!policy.allows("http://localhost:7070", Some("localhost:x"), false));
        assert!(!policy.allows("http://localhost:", Some("localhost:80"), false));
    }

    #[test]
    fn names_that_dns_could_rebind_need_tls_or_the_list() {
        let policy = default_policy();
        let host = Some("evil.example:7070");
        assert!(!policy.allows("http://evil.example:7070", host, false));
        assert!(policy.allows("https://evil.example:7070", host, true));
        let listed = OriginPolicy {
            any: false,
            listed: vec!["http://evil.example:7070".into()],
        };
        assert!(listed.allows("http://evil.example:7070", host, false));
    }

    #[test]
    fn listed_origins_add_to_the_default() {
        let policy = OriginPolicy {
            any: false,
            listed: vec!["http://localhost:8080".into(), "https://App.Example".into()],
        };
        let host = Some("127.0.0.1:7070");
        assert!(policy.allows("http://localhost:8080", host, false));
        assert!(policy.allows("https://app.example", host, false));
        assert!(policy.allows("https://app.example:443", host, false));
        assert!(policy.allows("http://127.0.0.1:7070", host, false));
        assert!(!policy.allows("http://localhost:8081", host, false));
        assert!(!policy.allows("http://app.example", host, false));
        assert!(!policy.allows("null", host, false));
        // An entry that is not an origin still matches exactly (as before).
        let odd = OriginPolicy {
            any: false,
            listed: vec!["null".into()],
        };
        assert!(odd.allows("null", host, false));
    }

    #[test]
    fn any_allows_everything() {
        let policy = OriginPolicy {
            any: true,
            listed: Vec::new(),
        };
        assert!(policy.allows("https://evil.example", Some("127.0.0.1:7070"), false));
        assert!(policy.allows("null", None, false));
    }
}
