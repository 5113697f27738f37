//! Where webhooks may go. A subscriber URL is chosen by whoever holds the admin token or the
//! configuration, but the request leaves from inside the deployment: pointed at loopback, a
//! private network or a link-local address (a cloud's metadata service at 169.254.169.254),
//! the relay would carry signed requests to places no merchant should reach. Unless
//! `outbox.allow_private_targets` is set (development and tests, where receivers run on
//! 127.0.0.1), only public addresses are accepted, when the subscriber is added and again when
//! each request connects (a name is resolved at delivery time, so a name that later resolves
//! to a private address is still refused). Redirects are never followed: a 3xx is a failed
//! delivery, so a public endpoint cannot bounce the relay to a private one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// One block of the IANA special-purpose address registries: no webhook receiver lives in one.
struct Special<N> {
    block: N,
    /// The registry's name of the block, for the tests and a reader.
    #[cfg_attr(not(test), allow(dead_code))]
    name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str) -> Special<Ipv4Net> {
    Special {
        block: Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len),
        name,
    }
}

const fn v6(segments: [u16; 8], len: u8, name: &'static str) -> Special<Ipv6Net> {
    let [a, b, c, d, e, f, g, h] = segments;
    Special {
        block: Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len),
        name,
    }
}

/// The IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry, as of its
/// 2024 revision), every row, plus multicast from the IPv4 address space registry. Every block
/// is refused whatever its "Globally Reachable" column: the anycast services marked reachable
/// (PCP, TURN, AS112, AMT) are never a webhook receiver either, and a stricter rule needs no
/// per-row judgement. A row added to the registry is added here, with its test.
const SPECIAL_V4: [Special<Ipv4Net>; 26] = [
    v4(0, 0, 0, 0, 8, "this network"),
    v4(0, 0, 0, 0, 32, "this host on this network"),
    v4(10, 0, 0, 0, 8, "private-use"),
    v4(100, 64, 0, 0, 10, "shared address space"),
    v4(127, 0, 0, 0, 8, "loopback"),
    v4(169, 254, 0, 0, 16, "link local"),
    v4(172, 16, 0, 0, 12, "private-use"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments"),
    v4(192, 0, 0, 0, 29, "IPv4 service continuity prefix"),
    v4(192, 0, 0, 8, 32, "IPv4 dummy address"),
    v4(192, 0, 0, 9, 32, "port control protocol anycast"),
    v4(192, 0, 0, 10, 32, "traversal using relays around NAT anycast"),
    v4(192, 0, 0, 170, 32, "NAT64/DNS64 discovery"),
    v4(192, 0, 0, 171, 32, "NAT64/DNS64 discovery"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)"),
    v4(192, 31, 196, 0, 24, "AS112-v4"),
    v4(192, 52, 193, 0, 24, "AMT"),
    v4(192, 88, 99, 0, 24, "deprecated (6to4 relay anycast)"),
    v4(192, 168, 0, 0, 16, "private-use"),
    v4(192, 175, 48, 0, 24, "direct delegation AS112 service"),
    v4(198, 18, 0, 0, 15, "benchmarking"),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)"),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)"),
    v4(240, 0, 0, 0, 4, "reserved"),
    v4(255, 255, 255, 255, 32, "limited broadcast"),
    // Not in the special-purpose registry: the address space registry's multicast block.
    v4(224, 0, 0, 0, 4, "multicast"),
];

/// The only IPv6 space allocated for global unicast (IANA IPv6 address space registry):
/// everything outside it is refused, which covers the reserved and deprecated blocks
/// (`fec0::/10` site-local, `::/96` IPv4-compatible, `::ffff:0:0/96` IPv4-mapped,
/// `100::/64` discard-only, `5f00::/16` SRv6, `fc00::/7`, `fe80::/10`, `ff00::/8`) without
/// naming each.
const GLOBAL_UNICAST_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// NAT64's well-known prefix: globally reachable, judged by the IPv4 address it embeds.
const NAT64_WELL_KNOWN: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// The IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry, as of its
/// 2025 revision), every row; the blocks outside `2000::/3` are refused by that rule already
/// and listed so the table reads as the registry does. Every block is refused whatever its
/// "Globally Reachable" column, except NAT64's well-known prefix (above).
const SPECIAL_V6: [Special<Ipv6Net>; 24] = [
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy IPv6 prefix"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "TEREDO"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "port control protocol anycast"),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        "traversal using relays around NAT anycast",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD service registration protocol anycast",
    ),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking"),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT"),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6"),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated (ORCHID)"),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2"),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "drone remote ID protocol entity tags",
    ),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4"),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "direct delegation AS112 service",
    ),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6) SIDs"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local unicast"),
];

/// Whether `ip` is an ordinary public unicast address: in no block of the IANA special-purpose
/// registries, and for IPv6 inside global unicast `2000::/3` (or NAT64's well-known prefix
/// around a public IPv4 address).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !SPECIAL_V4.iter().any(|special| special.block.contains(&ip))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if NAT64_WELL_KNOWN.contains(&ip) {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    GLOBAL_UNICAST_V6.contains(&ip) && !SPECIAL_V6.iter().any(|special| special.block.contains(&ip))
}

/// Checks a subscriber URL: http(s), a host, no `user:password@` (credentials in a URL end up
/// in logs, listings and the console; a receiver authenticates paywarden by the signature),
/// and (unless `allow_private`) not a special-purpose address ([`is_public`]) or `localhost`.
///
/// # Errors
/// Why the URL is refused, fit for the admin who gave it.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|err| format!("not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".to_owned());
    }
    let host = parsed.host().ok_or_else(|| "the URL has no host".to_owned())?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the URL must not carry a user name or password (user:password@); receivers check the signature instead"
                .to_owned(),
        );
    }
    if allow_private {
        return Ok(());
    }
    let public = match host {
        url::Host::Ipv4(ip) => is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => is_public(IpAddr::V6(ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    };
    if public {
        Ok(())
    } else {
        Err("the URL points at a loopback, private or link-local address (set outbox.allow_private_targets to allow it)".to_owned())
    }
}

/// Resolves names like the system does, keeping public addresses only.
#[derive(Debug, Default)]
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|addr| is_public(addr.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client webhooks are sent with: no redirects, and public addresses only unless
/// `allow_private`.
///
/// # Errors
/// The TLS backend could not be set up.
pub fn webhook_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the target itself, past the public-only resolver.
        .no_proxy()
        .user_agent(concat!("paywarden/", env!("CARGO_PKG_VERSION")));
    if allow_private {
        builder.build()
    } else {
        builder.dns_resolver(Arc::new(PublicOnly)).build()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        let refused = [
            "http://127.0.0.1:8080/hook",
            "http://10.0.0.5/hook",
            "http://172.16.3.4/hook",
            "http://192.168.1.1/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/hook",
            "http://0.0.0.0/hook",
            "http://[::1]/hook",
            "http://[fd00::1]/hook",
            "http://[fe80::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[::127.0.0.1]/hook",
            "http://[64:ff9b::a9fe:a9fe]/latest/",
            "http://[2002:7f00:1::]/hook",
            "http://[2001:0:4136:e378::1]/hook",
            "http://192.0.0.8/hook",
            "http://localhost:9000/hook",
            "http://api.localhost/hook",
        ];
        for url in refused {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url} when allowed");
        }
        for url in [
            "https://hooks.example.com/paywarden",
            "http://93.184.216.34/hook",
            "https://[2606:4700::1]/h",
        ] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "ftp://example.com/x",
            "not a url",
            "http://",
            "mailto:ops@example.com",
            "https://user:password@hooks.example.com/paywarden",
            "https://user@hooks.example.com/paywarden",
            "https://:password@hooks.example.com/paywarden",
        ] {
            assert!(check_url(url, true).is_err(), "{url}");
            assert!(check_url(url, false).is_err(), "{url}");
        }
        let refused = check_url("https://ops:hunter2@hooks.example.com/", false).unwrap_err();
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    /// The last address of a block.
    fn last_v4(block: &Ipv4Net) -> Ipv4Addr {
        block.broadcast()
    }

    fn last_v6(block: &Ipv6Net) -> Ipv6Addr {
        block.broadcast()
    }

    #[test]
    fn every_ipv4_special_purpose_block_is_refused_at_both_ends() {
        for special in &SPECIAL_V4 {
            for ip in [special.block.network(), last_v4(&special.block)] {
                assert!(!is_public(IpAddr::V4(ip)), "{ip} ({})", special.name);
                // Its IPv4-mapped and NAT64 forms too.
                assert!(
                    !is_public(IpAddr::V6(ip.to_ipv6_mapped())),
                    "{ip} mapped ({})",
                    special.name
                );
                let [a, b, c, d] = ip.octets();
                let nat64 = Ipv6Addr::new(
                    0x64,
                    0xff9b,
                    0,
                    0,
                    0,
                    0,
                    u16::from_be_bytes([a, b]),
                    u16::from_be_bytes([c, d]),
                );
                assert!(!is_public(IpAddr::V6(nat64)), "{nat64} ({})", special.name);
            }
        }
    }

    #[test]
    fn every_ipv6_special_purpose_block_is_refused_at_both_ends() {
        for special in &SPECIAL_V6 {
            for ip in [special.block.network(), last_v6(&special.block)] {
                assert!(!is_public(IpAddr::V6(ip)), "{ip} ({})", special.name);
            }
        }
    }

    #[test]
    fn the_ranges_the_review_found_accepted_are_refused() {
        for ip in [
            "fec0::1",              // deprecated site-local fec0::/10
            "feff:ffff::1",         // its last part
            "64:ff9b:1::a9fe:a9fe", // local-use NAT64 64:ff9b:1::/48
            "::ffff:93.184.216.34", // IPv4-mapped ::ffff:0:0/96, even of a public address
            "::93.184.216.34",      // IPv4-compatible ::/96 (deprecated)
            "100::1",               // discard-only 100::/64
            "100:0:0:1::1",         // dummy prefix 100:0:0:1::/64
            "5f00::1",              // SRv6 SIDs 5f00::/16
            "3fff::1",              // documentation 3fff::/20
            "2001:2::1",            // benchmarking 2001:2::/48
            "2001:20::1",           // ORCHIDv2 2001:20::/28
            "2620:4f:8000::1",      // AS112 direct delegation
            "ff02::1",              // multicast
            "4000::1",              // unallocated, outside 2000::/3
            "192.0.0.9",            // PCP anycast
            "192.31.196.1",         // AS112-v4
            "192.52.193.1",         // AMT
            "192.88.99.1",          // 6to4 relay anycast (deprecated)
            "192.175.48.1",         // AS112 direct delegation
            "224.0.0.1",            // multicast
            "255.255.255.255",      // limited broadcast
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1",
            "64:ff9b::5db8:d822", // NAT64 of a public address
            "2a00:1450::1",
            "1.1.1.1",
            "223.255.255.254",
            "192.0.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "198.17.255.255",
            "198.20.0.0",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip}");
        }
    }
}
