//! Multicast groups joined in a network namespace: `/proc/<pid>/net/igmp`
//! and `/proc/<pid>/net/igmp6` (net/ipv4/igmp.c, net/ipv6/mcast.c).
//!
//! igmp: a header line, then per interface a line `Idx Device : Count
//! Querier` followed by tab-indented lines, one per group, whose first word
//! is the group in hex as the kernel holds it (network order read as a
//! native u32). igmp6: one line per group, `ifindex device group(32 hex
//! digits) users flags timer`.

use crate::sys::Pid;

/// The groups joined on any interface of `pid`'s network namespace (none
/// if the files cannot be read).
pub fn joined_groups(pid: Pid) -> (Vec<(u32, u32)>, Vec<Group6>) {
    let read = |f: &str| std::fs::read_to_string(super::pid_path(pid, &format!("net/{f}"))).unwrap_or_default();
    parse_joined_groups(&read("igmp"), &read("igmp6"))
}

/// An IPv6 group joined on an interface: (ifindex, group).
pub type Group6 = (u32, [u8; 16]);

/// The groups of `/proc/net/igmp` (ifindex, IPv4 group as s_addr) and
/// `/proc/net/igmp6` (ifindex, IPv6 group). Lines that do not parse are
/// skipped.
pub fn parse_joined_groups(igmp: &str, igmp6: &str) -> (Vec<(u32, u32)>, Vec<Group6>) {
    let mut v4 = Vec::new();
    let mut idx = None;
    for line in igmp.lines().skip(1) {
        if !line.starts_with('\t') {
            idx = line.split_whitespace().next().and_then(|i| i.parse::<u32>().ok());
        } else if let (Some(i), Some(g)) = (idx, line.split_whitespace().next()) {
            if let Ok(g) = u32::from_str_radix(g, 16) {
                v4.push((i, g));
            }
        }
    }
    let mut v6 = Vec::new();
    for line in igmp6.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 3 || w[2].len() != 32 || !w[2].is_ascii() {
            continue;
        }
        let (Ok(i), mut g) = (w[0].parse::<u32>(), [0u8; 16]) else { continue };
        if (0..16).all(|k| u8::from_str_radix(&w[2][2 * k..2 * k + 2], 16).map(|b| g[k] = b).is_ok()) {
            v6.push((i, g));
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::parse_joined_groups as joined_groups;

    #[test]
    fn joined_groups_reads_both_proc_files() {
        let igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    4\teth0      :     2      V3\n\
                    \t\t\t\tFB0000E0     1 0:00000000\t\t0\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        let igmp6 = "1    lo              ff020000000000000000000000000001     1 0000000C 0\n\
                     4    eth0            ff0200000000000000000001ff000002     1 00000004 0\n\
                     garbage\n";
        let (v4, v6) = joined_groups(igmp, igmp6);
        assert_eq!(v4, vec![(1, 0x010000E0), (4, 0xFB0000E0), (4, 0x010000E0)]);
        assert_eq!(v6.len(), 2);
        assert_eq!(v6[1].0, 4);
        assert_eq!(v6[1].1[0], 0xff);
        assert_eq!(v6[1].1[11..], [1, 0xff, 0, 0, 2]);
        assert_eq!(joined_groups("", ""), (vec![], vec![]));
        // Garbage never panics: non-ASCII group text of the right length.
        let odd = format!("1 lo {} 1 0 0\n", "é".repeat(16));
        assert_eq!(joined_groups("", &odd), (vec![], vec![]));
    }
}
