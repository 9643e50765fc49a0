//! Which local user owns the other end of a TCP connection, read from `/proc/net/tcp` and
//! `/proc/net/tcp6`: the kernel's per-socket table, where the peer's socket is the row whose
//! local address is the peer's address and port and whose remote address is ours, and its
//! `uid` column is the user that created that socket. This lets the uid/gid allow-list reach
//! WebSocket peers on this machine, which `SO_PEERCRED` cannot (it is for UNIX sockets only).
//!
//! The table lists every TCP socket of the network namespace, so reading it costs time in
//! proportion to the sockets open (about 150 bytes each); callers run [`owner_uid`] off the
//! async reactor. Only a TCP peer gets a uid this way; its gid is not in the table.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's TCP states that have no owner any more (`TIME_WAIT` rows print uid 0) or that
/// are a listener: such a row never stands for a connected peer.
const TIME_WAIT: u8 = 0x06;
const LISTEN: u8 = 0x0A;
const NEW_SYN_RECV: u8 = 0x0C;

/// The uid owning the socket at `peer` connected to `local`, or `None` when no process of this
/// network namespace holds it (the peer is on another machine, or it has gone).
///
/// # Errors
/// When neither table can be read (not Linux, or `/proc` not mounted).
pub(crate) fn owner_uid(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<u32>> {
    let (peer, local) = (canonical(peer), canonical(local));
    let mut tables = 0;
    let mut last_error = None;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // An IPv6 address never appears in the IPv4 table.
        if path == "/proc/net/tcp" && peer.is_ipv6() {
            continue;
        }
        match File::open(path) {
            Ok(file) => {
                tables += 1;
                if let Some(uid) = find_owner(BufReader::new(file), peer, local, NATIVE_BIG)? {
                    return Ok(Some(uid));
                }
            }
            Err(err) => last_error = Some(err),
        }
    }
    match (tables, last_error) {
        (0, Some(err)) => Err(err),
        _ => Ok(None),
    }
}

/// True when this machine's TCP tables can be read, so [`owner_uid`] can answer.
pub(crate) fn available() -> io::Result<()> {
    File::open("/proc/net/tcp").map(drop)
}

const NATIVE_BIG: bool = cfg!(target_endian = "big");

/// Scans a table in the format of `/proc/net/tcp{,6}` (`big_endian`: how the kernel that wrote
/// it stores words) for the row of the socket at `peer` connected to `local`.
fn find_owner(
    table: impl BufRead,
    peer: SocketAddr,
    local: SocketAddr,
    big_endian: bool,
) -> io::Result<Option<u32>> {
    for line in table.lines().skip(1) {
        let line = line?;
        if let Some(row) = parse_row(&line, big_endian) {
            if row.local == peer && row.remote == local && row.live() {
                return Ok(Some(row.uid));
            }
        }
    }
    Ok(None)
}

/// The columns of one row that matter here.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    uid: u32,
}

impl Row {
    fn live(&self) -> bool {
        !matches!(self.state, TIME_WAIT | LISTEN | NEW_SYN_RECV)
    }
}

/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode`
fn parse_row(line: &str, big_endian: bool) -> Option<Row> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_endpoint(fields.next()?, big_endian)?;
    let remote = parse_endpoint(fields.next()?, big_endian)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let uid = fields.nth(3)?.parse().ok()?;
    Some(Row {
        local,
        remote,
        state,
        uid,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints the address as
/// 32-bit words in its own byte order (`%08X` of each word as it lies in memory), and the port
/// as a number.
fn parse_endpoint(text: &str, big_endian: bool) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| -> Option<[u8; 4]> {
        let value = u32::from_str_radix(hex, 16).ok()?;
        Some(if big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        })
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(address)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (index, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(address.get(index * 8..index * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack listener reports for an
/// IPv4 peer, and what `/proc/net/tcp6` lists for an IPv4 connection of an IPv6 socket) as the
/// IPv4 address it stands for, so both spellings compare equal.
fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Rows as a little-endian (x86, arm64) kernel prints them: 127.0.0.1:7070 listening, a
    /// client at 127.0.0.1:50000 (uid 1000) connected to it, the server's end (uid 0), and a
    /// TIME_WAIT row for an older connection from port 40000.
    const TCP_LE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1B9E 01 00000000:00000000 00:00000000 00000000  1000        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1B9E 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C40 0100007F:1B9E 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((a, port))
    }

    #[test]
    fn finds_the_peer_row_of_an_ipv4_connection() {
        let peer = v4([127, 0, 0, 1], 50000);
        let local = v4([127, 0, 0, 1], 7070);
        assert_eq!(
            find_owner(TCP_LE.as_bytes(), peer, local, false).unwrap(),
            Some(1000)
        );
        // Our own end of the same connection is not the peer's.
        assert_eq!(
            find_owner(TCP_LE.as_bytes(), local, peer, false).unwrap(),
            Some(0)
        );
        // Nobody here holds a socket at 127.0.0.1:50001.
        assert_eq!(
            find_owner(TCP_LE.as_bytes(), v4([127, 0, 0, 1], 50001), local, false).unwrap(),
            None
        );
    }

    #[test]
    fn time_wait_and_listening_rows_never_match() {
        let local = v4([127, 0, 0, 1], 7070);
        assert_eq!(
            find_owner(TCP_LE.as_bytes(), v4([127, 0, 0, 1], 40000), local, false).unwrap(),
            None
        );
        assert_eq!(
            find_owner(TCP_LE.as_bytes(), local, v4([0, 0, 0, 0], 0), false).unwrap(),
            None
        );
    }

    #[test]
    fn reads_both_byte_orders() {
        let little = parse_endpoint("0100007F:1B9E", false).unwrap();
        let big = parse_endpoint("7F000001:1B9E", true).unwrap();
        assert_eq!(little, v4([127, 0, 0, 1], 7070));
        assert_eq!(big, little);
        assert_eq!(
            parse_endpoint("0201A8C0:0050", false).unwrap(),
            v4([192, 168, 1, 2], 80)
        );
        // ::1 port 7070: the last word holds the 1.
        let loopback6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7070);
        assert_eq!(
            parse_endpoint("00000000000000000000000001000000:1B9E", false).unwrap(),
            loopback6
        );
        assert_eq!(
            parse_endpoint("00000000000000000000000000000001:1B9E", true).unwrap(),
            loopback6
        );
        // 2001:db8::5, each word in its own byte order.
        let doc = SocketAddr::new("2001:db8::5".parse().unwrap(), 443);
        assert_eq!(
            parse_endpoint("B80D0120000000000000000005000000:01BB", false).unwrap(),
            doc
        );
        assert_eq!(
            parse_endpoint("20010DB8000000000000000000000005:01BB", true).unwrap(),
            doc
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_rows_match_ipv4_addresses() {
        // An IPv6 client socket connected to ::ffff:127.0.0.1:7070, as /proc/net/tcp6 on a
        // little-endian kernel lists it, and the same row from a big-endian one.
        let le = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:C350 0000000000000000FFFF00000100007F:1B9E 01 00000000:00000000 00:00000000 00000000  65534        0 2001 1 0000000000000000 20 4 30 10 -1
";
        let be = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000FFFF7F000001:C350 00000000000000000000FFFF7F000001:1B9E 01 00000000:00000000 00:00000000 00000000  65534        0 2001 1 0000000000000000 20 4 30 10 -1
";
        let mapped = |port| {
            SocketAddr::new(
                IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
                port,
            )
        };
        for (table, big) in [(le, false), (be, true)] {
            // Asked with either spelling of the addresses, the row is found.
            let found = find_owner(
                table.as_bytes(),
                canonical(mapped(50000)),
                canonical(mapped(7070)),
                big,
            )
            .unwrap();
            assert_eq!(found, Some(65534), "big endian: {big}");
            let found = find_owner(
                table.as_bytes(),
                v4([127, 0, 0, 1], 50000),
                v4([127, 0, 0, 1], 7070),
                big,
            )
            .unwrap();
            assert_eq!(found, Some(65534), "big endian: {big}");
        }
    }

    #[test]
    fn malformed_rows_are_skipped() {
        for line in [
            "",
            "   0: nonsense",
            "   0: 0100007F:1B9E 0100007F",
            "   0: 0100007F:XYZ 0100007F:1B9E 01 0:0 0:0 0 1000",
            "   0: 0100007F:1B9E 0100007F:C350 01 00000000:00000000 00:00000000 00000000",
            "   0: 00007F:1B9E 0100007F:C350 01 00000000:00000000 00:00000000 00000000 5",
        ] {
            assert_eq!(parse_row(line, false), None, "{line:?}");
        }
    }

    #[test]
    fn finds_a_real_loopback_connection_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_end, peer) = listener.accept().unwrap();
        let local = server_end.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let uid = owner_uid(peer, local).unwrap();
        assert_eq!(uid, Some(nix::unistd::geteuid().as_raw()));
    }
}
