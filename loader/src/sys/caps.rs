//! The process's effective capabilities, read from `/proc/self/status`, so weir can refuse up
//! front, naming what is missing, instead of failing half-way with a bare EPERM.

use std::io;

/// A Linux capability weir needs, with its number (`include/uapi/linux/capability.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// `CAP_*` name.
    pub name: &'static str,
    /// Bit number in the capability sets.
    pub bit: u32,
}

/// Networking configuration: XDP and TC attachment, netlink, cgroup socket hooks.
pub const CAP_NET_ADMIN: Cap = Cap {
    name: "CAP_NET_ADMIN",
    bit: 12,
};
/// Mounting bpffs, entering network namespaces, walking BPF object ids.
pub const CAP_SYS_ADMIN: Cap = Cap {
    name: "CAP_SYS_ADMIN",
    bit: 21,
};
/// Loading BPF programs and creating maps (Linux 5.8 and later; CAP_SYS_ADMIN before).
pub const CAP_BPF: Cap = Cap {
    name: "CAP_BPF",
    bit: 39,
};

/// The effective set from the text of `/proc/<pid>/status` (the `CapEff:` hex line).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// The capabilities of `wanted` that `effective` lacks. A capability the kernel does not know
/// (its bit above `last_cap`, e.g. CAP_BPF before 5.8) is not required.
pub fn missing(effective: u64, last_cap: u32, wanted: &[Cap]) -> Vec<Cap> {
    wanted
        .iter()
        .copied()
        .filter(|c| c.bit <= last_cap && c.bit < 64 && effective & (1u64 << c.bit) == 0)
        .collect()
}

/// The capabilities of `wanted` this process lacks.
///
/// # Errors
/// When `/proc/self/status` cannot be read or has no `CapEff:` line (no /proc mounted).
pub fn missing_here(wanted: &[Cap]) -> io::Result<Vec<Cap>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let effective = parse_cap_eff(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no CapEff line in /proc/self/status",
        )
    })?;
    // Absent on very old kernels: then assume every capability weir names exists.
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    Ok(missing(effective, last_cap, wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_effective_set() {
        let status = "Name:\tweir\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_feff_ffff));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn names_what_is_missing_and_ignores_caps_the_kernel_lacks() {
        let all = [CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF];
        assert!(missing(0x1ff_feff_ffff, 40, &all).is_empty());
        assert_eq!(missing(0, 40, &all), all.to_vec());
        assert_eq!(missing(1 << 12, 40, &all), vec![CAP_SYS_ADMIN, CAP_BPF]);
        // A 5.4 kernel (last cap 37) has no CAP_BPF: CAP_SYS_ADMIN covers BPF there.
        assert_eq!(missing((1 << 12) | (1 << 21), 37, &all), vec![]);
    }
}
