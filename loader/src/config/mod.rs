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
//! service web 198.51.100.10:80/tcp backends=192.0.2.1:8080@3,192.0.2.2:8080 affinity=30
//! lb exclude mesh/sidecars
//! mesh pods/web proxy-port=15001 proxy-cgroup=pods/web/envoy
//! interface veth-web role=workload addrs=10.0.0.2,fd00::2 labels=app:web,env:prod
//! ipset office 198.51.100.0/24 2001:db8:1::/48
//! policy web order=100 selector="app == 'web' && env != 'dev'"
//! rule web ingress allow proto=tcp dport=80,443 remote=!set:office
//! ```
//!
//! Layers, bottom up: `lexer` (a line → words and options, with line:column spans),
//! `syntax` (words → a generic *statement*: keyword + args + options), `parse` (a table of
//! statements, shape checks, typed handlers that build the [`Config`]; `prefilter` holds the
//! `prefilter …` and `failsafe in` handlers and the deny-list file reader, `service` the `service`
//! and `lb exclude` handlers, `mesh` the `mesh` handler, `policy` the endpoint options,
//! `ipset`, `ipset-file`, `policy` and `rule`, with `selector` the selector language). Every
//! error becomes a
//! [`Diagnostic`]; the parser reports all of them and never panics. [`render_config`] prints the
//! canonical form back.

mod diag;
mod lexer;
mod mesh;
mod model;
mod parse;
mod policy;
mod prefilter;
mod render;
mod selector;
mod service;
mod suggest;
mod syntax;
#[cfg(test)]
mod tests;

pub use diag::{ConfigError, Diagnostic, Span};
pub use model::{
    has_ports, is_icmp, proto_name, AttachPolicy, Backend, CgroupAttach, Cidr, CidrError,
    ClassifierCapacity, Config, Direction, Interface, IpSet, L4Proto, LbCapacity, LbExclude, Mesh,
    MeshInbound, Origin, Policy, PortRange, Prefilter, Remote, RemoteTarget, Role, Rule,
    RuleAction, Service, XdpMode, DEFAULT_FAILSAFE_IN, PROTO_NAMES,
};
pub use parse::{parse, parse_file};
pub use render::render_config;
pub use selector::{Selector, SelectorError, MAX_LABEL_KEY, MAX_LABEL_VALUE};
