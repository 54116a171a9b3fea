//! The desired state a config file describes.

use std::fmt;
use std::path::PathBuf;

use super::diag::Span;

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `interface` statements, in file order; names are unique.
    pub interfaces: Vec<Interface>,
    /// `cgroup` statements, in file order; paths are unique after normalisation.
    pub cgroups: Vec<CgroupAttach>,
    /// `pin-dir`, if given (the CLI's `--pin-dir` overrides it).
    pub pin_dir: Option<(PathBuf, Span)>,
    /// The file name, or the name the caller gave the text (e.g. `"<embedded>"`).
    pub source: String,
}

impl Config {
    /// True when both describe the same settings; spans and `source` are ignored.
    #[must_use]
    pub fn eq_ignoring_spans(&self, other: &Config) -> bool {
        let same_interfaces = self.interfaces.len() == other.interfaces.len()
            && self.interfaces.iter().zip(&other.interfaces).all(|(a, b)| {
                a.name == b.name
                    && a.role == b.role
                    && a.xdp == b.xdp
                    && a.tc == b.tc
                    && a.attach == b.attach
            });
        let same_cgroups = self.cgroups.len() == other.cgroups.len()
            && self
                .cgroups
                .iter()
                .zip(&other.cgroups)
                .all(|(a, b)| a.path == b.path && a.attach == b.attach);
        let same_pin_dir =
            self.pin_dir.as_ref().map(|(p, _)| p) == other.pin_dir.as_ref().map(|(p, _)| p);
        same_interfaces && same_cgroups && same_pin_dir
    }

    /// The interface called `name`, if configured.
    #[must_use]
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

/// An `interface` statement: where the XDP and TC programs attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The Linux interface name (1..=15 bytes).
    pub name: String,
    /// What sits behind the interface.
    pub role: Role,
    /// Whether and how the XDP program attaches.
    pub xdp: XdpMode,
    /// Whether the TC programs attach.
    pub tc: bool,
    /// Which kernel attach mechanism to use.
    pub attach: AttachPolicy,
    /// The interface name in the config text.
    pub span: Span,
}

/// What an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// The host's own uplink or a host-facing device (default).
    #[default]
    Host,
    /// The host side of a workload (container/VM) device, e.g. a veth.
    Workload,
}

/// How the XDP program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// No XDP program.
    Off,
    /// In the driver (default).
    #[default]
    Native,
    /// The generic (skb) hook: works everywhere, slower.
    Generic,
}

/// Which kernel mechanism attaches programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttachPolicy {
    /// `Link` when the kernel supports it, else `Legacy` (default).
    #[default]
    Auto,
    /// `bpf_link` (XDP link, TCX, cgroup link) only; fail if unsupported.
    Link,
    /// netlink `IFLA_XDP` and clsact + `cls_bpf`. Not valid for cgroups.
    Legacy,
}

/// A `cgroup` statement: where the connect-time programs attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupAttach {
    /// Relative to the cgroup2 mount, normalised: no leading, trailing or doubled `/`, no `.`
    /// components, never empty, never containing `..`.
    pub path: String,
    /// `Auto` or `Link` (cgroups have no legacy mechanism we use).
    pub attach: AttachPolicy,
    /// The path in the config text.
    pub span: Span,
}

impl Role {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Workload => "workload",
        }
    }
}

impl XdpMode {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            XdpMode::Off => "off",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

impl AttachPolicy {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            AttachPolicy::Auto => "auto",
            AttachPolicy::Link => "link",
            AttachPolicy::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for AttachPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
