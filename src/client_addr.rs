//! The client's address: the socket peer, unless the peer is a configured trusted proxy.
//!
//! `X-Forwarded-For` is a header anyone can send. It is read only when the connection comes
//! from one of `server.trusted_proxies` (IP addresses or CIDR networks), and then the
//! right-most entry that is not itself a trusted proxy is the client: every proxy appends the
//! address it received the request from, so the entries left of that one were written by the
//! client and prove nothing. From any other peer the header is ignored, in the credential
//! throttle ([`crate::throttle`]) as in the request log ([`crate::telemetry`]).

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest};
use anyhow::Context;
use ipnet::IpNet;

/// `server.trusted_proxies`, parsed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Each entry is an address (`10.0.0.5`, `::1`) or a network (`10.0.0.0/8`).
    ///
    /// # Errors
    /// An entry that is neither, named with its position.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .with_context(|| {
                        format!("server.trusted_proxies[{index}] '{entry}' is not an IP address or CIDR network")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client of a connection from `peer` that carried `headers`.
    ///
    /// # Returns
    /// `peer` when it is not a trusted proxy (or no proxy is configured); otherwise the
    /// right-most `X-Forwarded-For` entry that is not a trusted proxy, or, when every entry is
    /// one, the left-most. An entry that is not an address stops the walk: what lies left of
    /// it cannot be told apart from what the client wrote, so the last trusted hop is kept.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Several headers are one list, in order (RFC 9110 §5.3).
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(addr) = parse_entry(entry) else {
                return client;
            };
            client = addr.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, with a port or IPv6 brackets as some proxies write.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The client's address of `req`, per the `TrustedProxies` in its app data (none: the peer).
/// `None` only when the connection has no peer address (a test request without one).
pub fn client_addr(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    Some(match req.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => proxies.client_of(peer, req.headers()),
        None => peer.to_canonical(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_of(ip("192.0.2.1"), &headers(&["203.0.113.9"])),
            ip("192.0.2.1")
        );
        let some = TrustedProxies::parse(&["10.0.0.0/8".to_owned()]).unwrap();
        assert_eq!(
            some.client_of(ip("192.0.2.1"), &headers(&["203.0.113.9"])),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".to_owned(), "2001:db8::1".to_owned()]).unwrap();
        let cases = [
            (vec!["203.0.113.9"], "203.0.113.9", "one hop"),
            (
                vec!["198.51.100.1, 203.0.113.9, 10.1.1.1"],
                "203.0.113.9",
                "a spoofed left entry and a second proxy",
            ),
            (
                vec!["198.51.100.1", "203.0.113.9"],
                "203.0.113.9",
                "two headers are one list",
            ),
            (vec!["10.2.2.2, 10.1.1.1"], "10.2.2.2", "only proxies: the left-most"),
            (
                vec!["garbage, 10.1.1.1"],
                "10.1.1.1",
                "not an address: the last trusted hop",
            ),
            (vec!["203.0.113.9:4711"], "203.0.113.9", "with a port"),
            (vec!["[2001:db8::7]"], "2001:db8::7", "bracketed IPv6"),
            (vec![], "10.0.0.1", "no header: the proxy itself"),
        ];
        for (xff, expected, case) in cases {
            assert_eq!(
                proxies.client_of(ip("10.0.0.1"), &headers(&xff)),
                ip(expected),
                "{case}"
            );
        }
        assert_eq!(
            proxies.client_of(ip("::ffff:10.0.0.1"), &headers(&["203.0.113.9"])),
            ip("203.0.113.9"),
            "an IPv4-mapped peer"
        );
    }

    #[test]
    fn an_entry_that_is_no_address_or_network_is_refused_by_name() {
        let err = TrustedProxies::parse(&["10.0.0.1".to_owned(), "proxy.internal".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("server.trusted_proxies[1]"), "{err}");
    }
}
