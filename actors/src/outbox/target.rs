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

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b == 18 || b == 19))
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) forms reach an IPv4 address.
    let octets = ip.octets();
    let embedded_v4 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    let compatible = segments[..6].iter().all(|s| *s == 0);
    let nat64 = first == 0x0064 && segments[1] == 0xff9b && segments[2..6].iter().all(|s| *s == 0);
    if (compatible || nat64) && !ip.is_unspecified() && !ip.is_loopback() {
        return is_public_v4(embedded_v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // 6to4 2002::/16 and Teredo 2001::/32 tunnel to addresses this cannot check.
        || first == 0x2002
        || (first == 0x2001 && segments[1] == 0)
        // Unique local fc00::/7.
        || (first & 0xfe00) == 0xfc00
        // Link-local fe80::/10.
        || (first & 0xffc0) == 0xfe80
        // Documentation 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// Checks a subscriber URL: http(s), a host, and (unless `allow_private`) not a loopback,
/// private or link-local address or `localhost`.
///
/// # Errors
/// Why the URL is refused, fit for the admin who gave it.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|err| format!("not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".to_owned());
    }
    let host = parsed.host().ok_or_else(|| "the URL has no host".to_owned())?;
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
        for url in ["ftp://example.com/x", "not a url", "http://", "mailto:ops@example.com"] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
    }
}
