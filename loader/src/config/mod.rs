//! weir's config language.
//!
//! Line-oriented: one statement per line, `#` starts a comment (outside quotes), blank lines are
//! ignored. A statement is a keyword followed by positional words and `key=value` options; a
//! double-quoted segment (escapes `\"` and `\\`) may hold spaces, `#` and `=`.
//!
//! ```text
//! pin-dir /sys/fs/bpf/weir
//! interface eth0 role=host xdp=native      # uplink
//! interface veth-demo role=workload xdp=generic attach=legacy
//! cgroup weir/demo
//! prefilter deny 192.0.2.0/24 2001:db8::/32
//! prefilter deny-file drop.txt               # relative to this file's directory
//! failsafe in tcp/22 udp/68
//! ```
//!
//! Layers, bottom up: `lexer` (a line → words and options, with line:column spans),
//! `syntax` (words → a generic *statement*: keyword + args + options), `parse` (a table of
//! statements, shape checks, typed handlers that build the [`Config`]; `prefilter` holds the
//! `prefilter …` and `failsafe in` handlers and the deny-list file reader). Every error becomes a
//! [`Diagnostic`]; the parser reports all of them and never panics. [`render_config`] prints the
//! canonical form back.

mod diag;
mod lexer;
mod model;
mod parse;
mod prefilter;
mod render;
mod suggest;
mod syntax;
#[cfg(test)]
mod tests;

pub use diag::{ConfigError, Diagnostic, Span};
pub use model::{
    AttachPolicy, CgroupAttach, Cidr, CidrError, Config, Interface, L4Proto, Origin, PortRange,
    Prefilter, Role, XdpMode, DEFAULT_FAILSAFE_IN,
};
pub use parse::{parse, parse_file};
pub use render::render_config;
