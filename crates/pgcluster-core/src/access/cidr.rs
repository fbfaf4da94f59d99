//! Address ranges: parsing CIDRs strictly and telling private ranges from public ones.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why a string is not an acceptable CIDR.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address/prefix` at all.
    #[error("`{input}` is not a CIDR (address/prefix length, e.g. 10.0.10.0/24)")]
    Malformed {
        /// the input
        input: String,
    },
    /// A bare address.
    #[error("`{input}` has no prefix length")]
    MissingPrefix {
        /// the input
        input: String,
    },
    /// A number written with a leading zero (`010.0.0.0/8`, `10.0.0.0/08`),
    /// which inet_aton, ping and many other tools read as octal.
    #[error("`{input}` has a number with a leading zero, which other tools read as octal")]
    LeadingZero {
        /// the input
        input: String,
        /// the range it means when read as decimal
        decimal: String,
    },
    /// Bits set after the prefix (`10.0.10.5/24`): probably a typo.
    #[error("`{input}` has host bits set after the prefix")]
    HostBits {
        /// the input
        input: String,
        /// the network it probably means
        network: IpNet,
    },
}

/// Parses a CIDR strictly: a prefix length is required and host bits must be zero
/// (so pg_hba, NetworkPolicy and LoadBalancer source ranges all mean the same range).
pub fn parse_cidr(input: &str) -> Result<IpNet, CidrError> {
    let s = input.trim();
    if let Some(decimal) = without_leading_zeros(s) {
        return Err(CidrError::LeadingZero {
            input: s.to_owned(),
            decimal,
        });
    }
    match s.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(CidrError::HostBits {
            input: s.to_owned(),
            network: net.trunc(),
        }),
        Err(_) if s.parse::<IpAddr>().is_ok() => Err(CidrError::MissingPrefix {
            input: s.to_owned(),
        }),
        Err(_) => Err(CidrError::Malformed {
            input: s.to_owned(),
        }),
    }
}

/// `Some(the text without leading zeros)` when a dotted-decimal number or the
/// prefix length has one (IPv6 hex groups may: they are never read as octal).
fn without_leading_zeros(s: &str) -> Option<String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let strip = |n: &str| -> (String, bool) {
        if n.len() > 1 && n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()) {
            let t = n.trim_start_matches('0');
            (if t.is_empty() { "0" } else { t }.to_owned(), true)
        } else {
            (n.to_owned(), false)
        }
    };
    let mut found = false;
    // The dotted part is the whole address (IPv4) or the tail after the last
    // `:` (an IPv4-mapped IPv6 address such as `::ffff:010.0.0.1`).
    let (head, dotted) = match addr.rfind(':') {
        Some(i) => addr.split_at(i + 1),
        None => ("", addr),
    };
    let mut fixed = head.to_owned();
    if dotted.contains('.') {
        let parts: Vec<String> = dotted
            .split('.')
            .map(|p| {
                let (t, had) = strip(p);
                found |= had;
                t
            })
            .collect();
        fixed.push_str(&parts.join("."));
    } else {
        fixed.push_str(dotted);
    }
    if let Some(p) = prefix {
        let (t, had) = strip(p);
        found |= had;
        fixed.push('/');
        fixed.push_str(&t);
    }
    found.then_some(fixed)
}

/// Ranges that are not routed on the internet: RFC 1918, RFC 6598 (carrier-grade
/// NAT, also used by Tailscale), loopback, IPv4 link-local, IPv6 ULA
/// (`fc00::/7`), IPv6 loopback and link-local.
pub const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "fc00::/7",
    "::1/128",
    "fe80::/10",
];

fn private_ranges() -> impl Iterator<Item = IpNet> {
    PRIVATE_RANGES.iter().map(|r| {
        r.parse::<IpNet>().expect(
            "PRIVATE_RANGES entries are valid CIDRs because they are constants checked by a test",
        )
    })
}

/// Whether every address of `net` lies in one private range.
pub fn is_private_net(net: &IpNet) -> bool {
    private_ranges().any(|r| r.contains(net))
}

/// Whether `addr` lies in a private range.
pub fn is_private_addr(addr: &IpAddr) -> bool {
    private_ranges().any(|r| r.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test input is a CIDR")
    }

    /// Private and public ranges are told apart, including partial overlaps.
    #[test]
    fn privacy() {
        for p in PRIVATE_RANGES {
            assert!(is_private_net(&net(p)), "{p}");
        }
        assert!(is_private_net(&net("10.0.10.0/24")));
        assert!(is_private_net(&net("100.100.0.0/16")));
        assert!(is_private_net(&net("fd00:1::/64")));
        assert!(!is_private_net(&net("8.8.8.0/24")));
        assert!(!is_private_net(&net("0.0.0.0/0")));
        assert!(!is_private_net(&net("10.0.0.0/7")));
        assert!(!is_private_net(&net("2001:db8::/32")));
        assert!(!is_private_addr(&"1.1.1.1".parse().expect("ip")));
    }

    /// CIDRs are parsed strictly.
    #[test]
    fn strict_parsing() {
        assert_eq!(parse_cidr("10.0.10.0/24"), Ok(net("10.0.10.0/24")));
        assert!(matches!(
            parse_cidr("10.0.10.5/24"),
            Err(CidrError::HostBits { .. })
        ));
        assert!(matches!(
            parse_cidr("10.0.10.5"),
            Err(CidrError::MissingPrefix { .. })
        ));
        assert!(matches!(
            parse_cidr("10.0.10/24"),
            Err(CidrError::Malformed { .. })
        ));
        assert!(matches!(
            parse_cidr("10.0.0.0/33"),
            Err(CidrError::Malformed { .. })
        ));
    }

    /// Leading zeros, which other tools read as octal, are refused with the decimal reading.
    #[test]
    fn leading_zeros_are_refused() {
        for (input, decimal) in [
            ("010.0.0.0/8", "10.0.0.0/8"),
            ("10.0.010.0/24", "10.0.10.0/24"),
            ("10.0.0.0/08", "10.0.0.0/8"),
            ("::ffff:010.0.0.0/104", "::ffff:10.0.0.0/104"),
            ("00.0.0.0/0", "0.0.0.0/0"),
        ] {
            assert_eq!(
                parse_cidr(input),
                Err(CidrError::LeadingZero {
                    input: input.to_owned(),
                    decimal: decimal.to_owned()
                }),
                "{input}"
            );
        }
        assert_eq!(parse_cidr("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
        assert_eq!(parse_cidr("fd00:0042::/64"), Ok(net("fd00:42::/64")));
        assert_eq!(
            parse_cidr("10.0.0.0/0"),
            Err(CidrError::HostBits {
                input: "10.0.0.0/0".into(),
                network: net("0.0.0.0/0")
            })
        );
    }
}
