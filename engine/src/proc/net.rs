//! Multicast groups joined in a network namespace: `/proc/<pid>/net/igmp`
//! and `/proc/<pid>/net/igmp6` (net/ipv4/igmp.c, net/ipv6/mcast.c).
//!
//! igmp: a header line, then per interface a line `Idx Device : Count
//! Querier` followed by tab-indented lines, one per group, whose first word
//! is the group in hex as the kernel holds it (network order read as a
//! native u32). igmp6: one line per group, `ifindex device group(32 hex
//! digits) users flags timer`.
//!
//! Datagram socket tables (`raw`, `raw6`, `icmp`, `icmp6`: net/ipv4/raw.c,
//! ping.c, net/ipv6/datagram.c): one line per socket, `sl local rem st
//! tx:rx tr:when retrnsmt uid timeout inode ...`, addresses in hex as the
//! kernel holds them (each 32-bit word read as a native u32) with `:port`.

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

/// A socket's row of a datagram socket table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRow {
    /// TCP_* state: 1 (connected), 7 (not).
    pub state: u8,
    /// Remote address bytes (IPv4: the first 4) and port.
    pub rem: [u8; 16],
    pub rem_port: u16,
}

/// The row of socket `ino` in `/proc/<pid>/net/<table>` (`raw`, `raw6`,
/// `icmp`, `icmp6`), if listed.
pub fn sock_row(pid: Pid, table: &str, ino: u64) -> Option<SockRow> {
    parse_sock_row(&std::fs::read_to_string(super::pid_path(pid, &format!("net/{table}"))).ok()?, ino)
}

/// The row of socket `ino` in the text of a datagram socket table.
pub fn parse_sock_row(text: &str, ino: u64) -> Option<SockRow> {
    for line in text.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 10 || w[9].parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let (addr, port) = w[2].split_once(':')?;
        if !addr.is_ascii() || (addr.len() != 8 && addr.len() != 32) {
            return None;
        }
        let mut rem = [0u8; 16];
        for (i, chunk) in addr.as_bytes().chunks(8).enumerate() {
            let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
            rem[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        return Some(SockRow {
            state: u8::from_str_radix(w[3], 16).ok()?,
            rem,
            rem_port: u16::from_str_radix(port, 16).ok()?,
        });
    }
    None
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

    #[test]
    fn datagram_socket_rows() {
        let raw = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   253: 0100007F:00FD 0200007F:0000 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n";
        let r = super::parse_sock_row(raw, 4242).unwrap();
        assert_eq!((r.state, &r.rem[..4], r.rem_port), (1, &[127, 0, 0, 2][..], 0));
        assert_eq!(super::parse_sock_row(raw, 4243), None);
        let raw6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                    253: 00000000000000000000000001000000:00FD 00000000000000000000000001000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0\n";
        let r = super::parse_sock_row(raw6, 77).unwrap();
        assert_eq!((r.state, r.rem[15], r.rem[..15].iter().all(|&b| b == 0)), (1, 1, true));
        assert_eq!(super::parse_sock_row("x\n1: zz:1 é:0 01 0 0 0 0 0 5\n", 5), None);
    }
}
