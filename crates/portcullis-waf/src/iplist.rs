//! Allow/deny lists of client addresses with longest-prefix match. Prefixes are kept in one
//! hash map per prefix length, so a lookup costs one probe per distinct length in use (a
//! handful in practice), whatever the number of entries.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAction {
    Allow,
    Deny,
}

#[derive(Debug, Default)]
pub struct IpList {
    /// (prefix length, map from masked address to action), longest first; v4 and v6 apart.
    v4: Vec<(u8, HashMap<u32, IpAction>)>,
    v6: Vec<(u8, HashMap<u128, IpAction>)>,
    len: usize,
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len))) }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { addr & (u128::MAX << (128 - u32::from(len))) }
}

fn insert<K: std::hash::Hash + Eq>(levels: &mut Vec<(u8, HashMap<K, IpAction>)>, len: u8, key: K, action: IpAction) {
    let at = match levels.iter().position(|(l, _)| *l == len) {
        Some(i) => i,
        None => {
            levels.push((len, HashMap::new()));
            levels.sort_by_key(|l| std::cmp::Reverse(l.0));
            levels.iter().position(|(l, _)| *l == len).unwrap_or(0)
        }
    };
    if let Some((_, map)) = levels.get_mut(at) {
        // Deny wins over allow for the very same prefix.
        let slot = map.entry(key).or_insert(action);
        if action == IpAction::Deny {
            *slot = IpAction::Deny;
        }
    }
}

/// Parses one entry: a CIDR or a bare address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("not an IP address or CIDR: {s}"))
}

/// Entries of a list file: one address or CIDR per line; `#` starts a comment. Errors name
/// the line.
pub fn parse_file(text: &str) -> Result<Vec<IpNet>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        out.push(parse_net(entry).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

impl IpList {
    pub fn add(&mut self, net: IpNet, action: IpAction) {
        let len = net.prefix_len();
        match net {
            IpNet::V4(n) => insert(&mut self.v4, len, mask4(u32::from(n.network()), len), action),
            IpNet::V6(n) => insert(&mut self.v6, len, mask6(u128::from(n.network()), len), action),
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The action of the longest prefix containing `ip` (IPv4-mapped IPv6 is looked up as
    /// IPv4).
    pub fn lookup(&self, ip: IpAddr) -> Option<IpAction> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(len, map)| map.get(&mask4(a, *len)).copied())
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(len, map)| map.get(&mask6(a, *len)).copied())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut l = IpList::default();
        l.add(parse_net("10.0.0.0/8").unwrap(), IpAction::Deny);
        l.add(parse_net("10.1.2.3").unwrap(), IpAction::Allow);
        l.add(parse_net("2001:db8::/32").unwrap(), IpAction::Deny);
        l.add(parse_net("2001:db8:1::/48").unwrap(), IpAction::Allow);
        assert_eq!(l.lookup(ip("10.9.9.9")), Some(IpAction::Deny));
        assert_eq!(l.lookup(ip("10.1.2.3")), Some(IpAction::Allow));
        assert_eq!(l.lookup(ip("::ffff:10.9.9.9")), Some(IpAction::Deny));
        assert_eq!(l.lookup(ip("11.0.0.1")), None);
        assert_eq!(l.lookup(ip("2001:db8:1::5")), Some(IpAction::Allow));
        assert_eq!(l.lookup(ip("2001:db8:2::5")), Some(IpAction::Deny));
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn files_and_many_entries() {
        let nets = parse_file("# bad hosts\n192.0.2.1\n198.51.100.0/24  # range\n\n").unwrap();
        assert_eq!(nets.len(), 2);
        assert_eq!(parse_file("1.2.3.4\nnope\n").unwrap_err().0, 2);
        let mut l = IpList::default();
        for i in 0..100_000u32 {
            l.add(IpNet::from(IpAddr::from((0x0a00_0000 + i * 4).to_be_bytes())), IpAction::Deny);
        }
        assert_eq!(l.len(), 100_000);
        assert_eq!(l.lookup(ip("10.0.0.4")), Some(IpAction::Deny));
        assert_eq!(l.lookup(ip("10.0.0.5")), None);
    }
}
