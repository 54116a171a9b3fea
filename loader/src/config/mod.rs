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
//! ```
//!
//! Layers, bottom up: `lexer` (a line → words and options, with line:column spans),
//! `syntax` (words → a generic *statement*: keyword + args + options), `parse` (a table of
//! statements, shape checks, typed handlers that build the [`Config`]). Every error becomes a
//! [`Diagnostic`]; the parser reports all of them and never panics. [`render_config`] prints the
//! canonical form back.

mod diag;
mod lexer;
mod model;
mod parse;
mod render;
mod suggest;
mod syntax;
#[cfg(test)]
mod tests;

pub use diag::{ConfigError, Diagnostic, Span};
pub use model::{AttachPolicy, CgroupAttach, Config, Interface, Role, XdpMode};
pub use parse::{parse, parse_file};
pub use render::render_config;
