//! weir's error type. Every variant says what it is about (an object, a program, a map, an
//! interface, a cgroup, a config file position) and, where a syscall failed, which call.

use std::fmt;
use std::io;

use crate::config::ConfigError;
use crate::object::ObjectProblem;
use crate::sys::bpf::BpfError;
use crate::sys::netlink::NetlinkError;

/// Everything that can go wrong in weir.
#[derive(Debug)]
pub enum Error {
    /// A `bpf(2)` call failed; `subject` says for what (`map 'ct'`, `prog 'tc_ingress'`).
    Bpf { subject: String, source: BpfError },
    /// An rtnetlink request failed; `subject` names the interface.
    Netlink {
        subject: String,
        source: NetlinkError,
    },
    /// Another I/O operation failed; `context` says which and on what path.
    Io { context: String, source: io::Error },
    /// The config has errors (all of them, with file:line:column).
    Config(ConfigError),
    /// An object failed verification before anything was loaded.
    Object {
        object: String,
        problem: ObjectProblem,
    },
    /// The kernel verifier rejected a program; `log` is its level-1 log.
    Verifier {
        object: String,
        program: String,
        errno: Option<i32>,
        message: String,
        log: String,
    },
    /// A map cannot be used as asked (e.g. a pinned map with another layout).
    Map { map: String, problem: String },
    /// An attachment cannot be made or removed (e.g. a program weir did not attach is in the way).
    Attach { target: String, problem: String },
    /// The kernel lacks a feature weir needs, and there is no fallback for it.
    Feature { feature: String, problem: String },
    /// Something about the environment prevents the command (not root, no bpffs, ...).
    Environment(String),
}

impl Error {
    /// Wraps a `bpf(2)` error with what it was about.
    pub fn bpf(subject: impl Into<String>, source: BpfError) -> Self {
        Self::Bpf {
            subject: subject.into(),
            source,
        }
    }

    /// Wraps an rtnetlink error with what it was about.
    pub fn netlink(subject: impl Into<String>, source: NetlinkError) -> Self {
        Self::Netlink {
            subject: subject.into(),
            source,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A map problem.
    pub fn map(map: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Map {
            map: map.into(),
            problem: problem.into(),
        }
    }

    /// An attach problem.
    pub fn attach(target: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Attach {
            target: target.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bpf { subject, source } if subject.is_empty() => write!(f, "{source}"),
            Self::Bpf { subject, source } => write!(f, "{subject}: {source}"),
            Self::Netlink { subject, source } => write!(f, "{subject}: {source}"),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::Object { object, problem } => write!(f, "object '{object}': {problem}"),
            Self::Verifier {
                object,
                program,
                errno,
                message,
                log,
            } => {
                write!(f, "prog '{program}' (object '{object}'): the kernel verifier rejected it: BPF_PROG_LOAD: {message}")?;
                if let Some(errno) = errno {
                    write!(f, " (errno {errno})")?;
                }
                if log.trim().is_empty() {
                    write!(f, "\n(the verifier gave no log)")
                } else {
                    write!(f, "\nverifier log:\n{}", log.trim_end())
                }
            }
            Self::Map { map, problem } => write!(f, "map '{map}': {problem}"),
            Self::Attach { target, problem } => write!(f, "{target}: {problem}"),
            Self::Feature { feature, problem } => {
                write!(f, "kernel feature '{feature}': {problem}")
            }
            Self::Environment(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bpf { source, .. } => Some(source),
            Self::Netlink { source, .. } => Some(source),
            Self::Io { source, .. } => Some(source),
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}
