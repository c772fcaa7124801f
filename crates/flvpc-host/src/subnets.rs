//! Where namespace networks get their addresses: flvpc's own pool, not Docker's defaults.
//!
//! Docker's default address pools hold about 30 bridge networks (172.17–31.0.0/16 and
//! 192.168.0.0/16 in /20s); the 31st namespace would fail to start its first machine with "could
//! not find an available, non-overlapping IPv4 address pool". So flvpc gives each namespace network
//! a /24 of its own pool (`--network-pool`, 10.213.0.0/16 by default: 256 namespaces of 253
//! machines), skipping subnets that any Docker network or a host route already uses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    base: u32,
    prefix: u8,
}

impl Ipv4Net {
    /// The network of `addr/prefix` (host bits cleared), or None for a prefix over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self { base: u32::from(addr) & mask(prefix), prefix })
    }

    /// The first address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The first usable address, the bridge's own (`.1` of a /24).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let common = mask(self.prefix.min(other.prefix));
        self.base & common == other.base & common
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) =
            s.split_once('/').ok_or_else(|| format!("{s:?} is not an IPv4 CIDR like 10.213.0.0/16"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{prefix:?} is not a prefix length (0–32)"))?;
        Ipv4Net::new(addr, prefix).ok_or_else(|| format!("prefix length {prefix} is over 32"))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The pool namespace networks are cut from, in /24s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool(Ipv4Net);

/// The size of one namespace network: 253 machines besides the bridge and broadcast.
pub const NAMESPACE_PREFIX: u8 = 24;

impl AddressPool {
    /// The default pool: 256 namespaces, in a range few LANs and neither Docker's defaults nor
    /// Kubernetes' use.
    pub const DEFAULT: AddressPool = AddressPool(Ipv4Net { base: 0x0AD5_0000, prefix: 16 });

    /// The pool `net`, which must hold at least one /24 and be given without host bits.
    pub fn new(net: Ipv4Net) -> Result<Self, String> {
        if net.prefix > NAMESPACE_PREFIX || net.prefix < 8 {
            return Err(format!(
                "the network pool {net} must be between a /8 and a /{NAMESPACE_PREFIX} (each namespace takes a /{NAMESPACE_PREFIX})"
            ));
        }
        Ok(Self(net))
    }

    /// How many namespace networks it holds.
    pub fn size(&self) -> u32 {
        1 << (NAMESPACE_PREFIX - self.0.prefix)
    }

    /// The first /24 of the pool that overlaps nothing in `taken`.
    pub fn first_free(&self, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
        (0..self.size())
            .map(|i| Ipv4Net {
                base: self.0.base + (i << (32 - u32::from(NAMESPACE_PREFIX))),
                prefix: NAMESPACE_PREFIX,
            })
            .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
    }
}

impl Default for AddressPool {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AddressPool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net: Ipv4Net = s.parse()?;
        if net.to_string() != s {
            return Err(format!("{s:?} has host bits set: did you mean {net}?"));
        }
        AddressPool::new(net)
    }
}

/// The IPv4 routes of this host (`/proc/net/route`) other than the default route: a namespace
/// network over one of them would hide that LAN from the host and from the machines.
pub fn host_routes() -> Vec<Ipv4Net> {
    std::fs::read_to_string("/proc/net/route").map(|text| parse_routes(&text)).unwrap_or_default()
}

/// Parses `/proc/net/route`: destination and mask are little-endian hex words.
fn parse_routes(text: &str) -> Vec<Ipv4Net> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            let (destination, mask) = (destination.swap_bytes(), mask.swap_bytes());
            let prefix = u8::try_from(mask.leading_ones()).ok()?;
            (prefix > 0).then(|| Ipv4Net::new(Ipv4Addr::from(destination), prefix)).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(net("10.213.0.0/16").overlaps(&net("10.213.7.0/24")));
        assert!(net("10.213.7.0/24").overlaps(&net("10.213.0.0/16")));
        assert!(!net("10.213.7.0/24").overlaps(&net("10.213.8.0/24")));
        assert!(net("0.0.0.0/0").overlaps(&net("192.168.1.0/24")));
    }

    #[test]
    fn the_first_free_subnet_skips_whatever_is_taken() {
        let pool: AddressPool = "10.213.0.0/16".parse().expect("pool");
        assert_eq!(pool.size(), 256);
        assert_eq!(pool.first_free(&[]), Some(net("10.213.0.0/24")));
        let taken = [net("10.213.0.0/24"), net("10.213.1.0/24"), net("10.213.2.128/25")];
        assert_eq!(pool.first_free(&taken), Some(net("10.213.3.0/24")));
        // A host route over the whole pool leaves nothing.
        assert_eq!(pool.first_free(&[net("10.0.0.0/8")]), None);
        let small: AddressPool = "10.9.9.0/24".parse().expect("pool");
        assert_eq!(small.first_free(&[net("10.9.9.0/24")]), None);
    }

    #[test]
    fn bad_pools_are_refused_with_the_reason() {
        assert!("10.213.0.1/16".parse::<AddressPool>().expect_err("refused").contains("did you mean 10.213.0.0/16"));
        assert!("10.213.0.0/25".parse::<AddressPool>().expect_err("refused").contains("between a /8 and a /24"));
        assert!("0.0.0.0/4".parse::<AddressPool>().expect_err("refused").contains("between"));
        assert!("fd00::/64".parse::<AddressPool>().is_err());
        assert!("10.213.0.0".parse::<AddressPool>().expect_err("refused").contains("CIDR"));
        assert_eq!(AddressPool::default().to_string(), "10.213.0.0/16");
    }

    #[test]
    fn proc_net_route_is_read_without_the_default_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(text), vec![net("192.168.2.0/24"), net("172.17.0.0/16")]);
    }
}
