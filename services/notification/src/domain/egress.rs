//! Where notification may send: the rule that keeps a tenant's webhook (or
//! a misconfigured gateway) from reaching inside the vendor's network.
//!
//! Outbound HTTP goes only to public unicast addresses. Loopback, private
//! (RFC 1918), link-local (the cloud metadata address `169.254.169.254`),
//! CGNAT, multicast, broadcast, reserved, documentation and benchmarking
//! ranges, IPv6 unique-local, link-local and site-local, and every IPv6 form
//! that embeds an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are
//! refused, the embedded IPv4 address judged where there is one. An
//! operator's allow-list names the internal hosts that may be reached
//! anyway (a gateway inside the hospital, the tests' local receivers).
//!
//! The rule is checked when an endpoint is registered and again against
//! the very addresses the connection is made to (`channels::egress`), so a
//! name that later resolves inside (DNS rebinding) is refused at send time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ErrorClass;

/// Why an address is not sent to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address (or one the name resolves to) is not public.
    #[error("must be a public address ({0} is not)")]
    NotPublic(IpAddr),
    /// The name resolves to no address at all.
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

/// The operator's allow-list (`NOTIFICATION_EGRESS_ALLOW_HOSTS`): host names
/// (exact, case-insensitive) and IP addresses that may be reached although
/// they are not public. An address entry allows URLs that name that address
/// literally; a name entry allows that name whatever it resolves to. Allowing
/// `127.0.0.1` does not allow a name that resolves to it: that is what a
/// rebinding attacker's name would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    names: Vec<String>,
    addrs: Vec<IpAddr>,
}

impl Policy {
    /// A policy allowing `hosts` (names or IP literals; IPv6 with or
    /// without brackets). Empty entries are ignored.
    pub fn allowing<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut policy = Self::default();
        for h in hosts {
            let h = h
                .as_ref()
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if h.is_empty() {
                continue;
            }
            match h.parse::<IpAddr>() {
                Ok(ip) => policy.addrs.push(ip),
                Err(_) => policy
                    .names
                    .push(h.trim_end_matches('.').to_ascii_lowercase()),
            }
        }
        policy
    }

    /// True when `name` is on the allow-list: every address it resolves to
    /// may be reached.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Whether a URL naming `ip` literally may be connected to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if is_public(ip) || self.addrs.contains(&ip) {
            Ok(())
        } else {
            Err(Refusal::NotPublic(ip))
        }
    }

    /// Whether the addresses `name` resolved to may be connected to: all of
    /// them must be (a name mixing public and internal addresses is a
    /// rebinding trick, not a reason to pick the public one).
    pub fn check_resolved(&self, name: &str, ips: &[IpAddr]) -> Result<(), Refusal> {
        if ips.is_empty() {
            return Err(Refusal::NoAddress(name.to_owned()));
        }
        if self.allows_name(name) {
            return Ok(());
        }
        match ips.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(Refusal::NotPublic(*ip)),
            None => Ok(()),
        }
    }
}

/// The error class a tenant sees for a webhook attempt: everything that
/// would tell a reachable port from a closed one, or TLS from plaintext, is
/// one coarse "unreachable"; HTTP-level answers keep their class.
pub fn tenant_view(class: ErrorClass) -> ErrorClass {
    match class {
        ErrorClass::Timeout
        | ErrorClass::Connection
        | ErrorClass::Tls
        | ErrorClass::InvalidAddress => ErrorClass::Unreachable,
        other => other,
    }
}

/// True for a public unicast address: one a tenant's webhook may point at.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const NOT_PUBLIC: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !NOT_PUBLIC.iter().any(|(net, p)| in_v4(ip, *net, *p))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address: judge the IPv4 address, and refuse
    // the translation forms outright when what they embed is not public.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded_low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        return false;
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_low); // NAT64
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in segments 1 and 2.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_public_v4(v4);
    }
    let first = s[0];
    !(first & 0xfe00 == 0xfc00 // unique local fc00::/7
        || first & 0xffc0 == 0xfe80 // link-local fe80::/10
        || first & 0xffc0 == 0xfec0 // site-local fec0::/10 (deprecated)
        || first & 0xff00 == 0xff00 // multicast
        || (first == 0x2001 && s[1] == 0) // Teredo 2001::/32
        || (first == 0x2001 && s[1] == 0x0db8) // documentation
        || (first == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (first == 0x64 && s[1] == 0xff9b && s[2] == 1)) // local NAT64 64:ff9b:1::/48
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.10",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::",
            "fd00::1",
            "fc12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
        ] {
            assert!(!is_public(ip(a)), "{a} must not be public");
        }
    }

    #[test]
    fn public_addresses_are() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "93.184.216.34",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert!(is_public(ip(a)), "{a} must be public");
        }
    }

    #[test]
    fn the_allow_list_names_hosts_and_addresses() {
        let p = Policy::allowing(["127.0.0.1", "[::1]", "Gateway.Hospital.Internal.", " "]);
        assert!(p.check_ip(ip("127.0.0.1")).is_ok());
        assert!(p.check_ip(ip("::1")).is_ok());
        assert_eq!(
            p.check_ip(ip("127.0.0.2")),
            Err(Refusal::NotPublic(ip("127.0.0.2")))
        );
        assert!(p.allows_name("gateway.hospital.internal"));
        assert!(
            p.check_resolved("gateway.hospital.internal", &[ip("10.1.1.1")])
                .is_ok()
        );
        assert!(
            p.check_resolved("other.internal", &[ip("10.1.1.1")])
                .is_err()
        );
        // An allowed address does not allow the names that resolve to it.
        assert_eq!(
            p.check_resolved("localhost", &[ip("127.0.0.1")]),
            Err(Refusal::NotPublic(ip("127.0.0.1")))
        );
    }

    #[test]
    fn a_name_mixing_public_and_internal_addresses_is_refused() {
        let p = Policy::default();
        assert_eq!(
            p.check_resolved("rebind.example", &[ip("8.8.8.8"), ip("127.0.0.1")]),
            Err(Refusal::NotPublic(ip("127.0.0.1")))
        );
        assert_eq!(
            p.check_resolved("nothing.example", &[]),
            Err(Refusal::NoAddress("nothing.example".into()))
        );
        assert!(p.check_resolved("ok.example", &[ip("8.8.8.8")]).is_ok());
    }
}
