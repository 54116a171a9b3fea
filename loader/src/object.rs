//! BPF objects: parse with aya-obj, verify against weir's rules and `maps-schema`, and turn them
//! into loaded programs.
//!
//! Verification runs before any syscall, so a bad object is refused with nothing created. The
//! checks are the ones a reviewer of an object would make by hand: only the program kinds weir
//! knows how to attach, a GPL-compatible licence (the kernel would refuse GPL-only helpers
//! otherwise, with a worse message), and every map identical in kind, sizes and member layout to
//! its `maps-schema` definition, so that the loader and the programs can never disagree on bytes.
//!
//! aya-obj 0.3.0 can panic on malformed ELF. Every call into it is contained with
//! `catch_unwind`, so a corrupted object is an error, never a crash of `weir load`.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};

use aya_obj::btf::BtfFeatures;
use aya_obj::generated::bpf_insn;
use aya_obj::programs::CgroupSockAddrAttachType;
use aya_obj::{Map, ProgramSection};
use maps_schema::{Layout, MapDef};

use crate::btf::{Btf, TypeLayout};
use crate::error::Error;
use crate::sys::bpf;

/// An object compiled from `programs/*.c`, as embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedObject {
    /// File name, e.g. `xdp.o`.
    pub name: &'static str,
    /// The ELF bytes.
    pub bytes: &'static [u8],
}

/// A cgroup `sock_addr` hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SockAddrHook {
    Bind4,
    Bind6,
    Connect4,
    Connect6,
    GetPeerName4,
    GetPeerName6,
    GetSockName4,
    GetSockName6,
    SendMsg4,
    SendMsg6,
    RecvMsg4,
    RecvMsg6,
}

impl SockAddrHook {
    /// The kernel's `enum bpf_attach_type` value for this hook.
    pub fn attach_type(self) -> u32 {
        use bpf::consts::*;
        match self {
            Self::Bind4 => BPF_CGROUP_INET4_BIND,
            Self::Bind6 => BPF_CGROUP_INET6_BIND,
            Self::Connect4 => BPF_CGROUP_INET4_CONNECT,
            Self::Connect6 => BPF_CGROUP_INET6_CONNECT,
            Self::GetPeerName4 => BPF_CGROUP_INET4_GETPEERNAME,
            Self::GetPeerName6 => BPF_CGROUP_INET6_GETPEERNAME,
            Self::GetSockName4 => BPF_CGROUP_INET4_GETSOCKNAME,
            Self::GetSockName6 => BPF_CGROUP_INET6_GETSOCKNAME,
            Self::SendMsg4 => BPF_CGROUP_UDP4_SENDMSG,
            Self::SendMsg6 => BPF_CGROUP_UDP6_SENDMSG,
            Self::RecvMsg4 => BPF_CGROUP_UDP4_RECVMSG,
            Self::RecvMsg6 => BPF_CGROUP_UDP6_RECVMSG,
        }
    }

    /// The section suffix, e.g. `connect4` for `cgroup/connect4`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bind4 => "bind4",
            Self::Bind6 => "bind6",
            Self::Connect4 => "connect4",
            Self::Connect6 => "connect6",
            Self::GetPeerName4 => "getpeername4",
            Self::GetPeerName6 => "getpeername6",
            Self::GetSockName4 => "getsockname4",
            Self::GetSockName6 => "getsockname6",
            Self::SendMsg4 => "sendmsg4",
            Self::SendMsg6 => "sendmsg6",
            Self::RecvMsg4 => "recvmsg4",
            Self::RecvMsg6 => "recvmsg6",
        }
    }

    fn from_aya(t: CgroupSockAddrAttachType) -> Self {
        use CgroupSockAddrAttachType as A;
        match t {
            A::Bind4 => Self::Bind4,
            A::Bind6 => Self::Bind6,
            A::Connect4 => Self::Connect4,
            A::Connect6 => Self::Connect6,
            A::GetPeerName4 => Self::GetPeerName4,
            A::GetPeerName6 => Self::GetPeerName6,
            A::GetSockName4 => Self::GetSockName4,
            A::GetSockName6 => Self::GetSockName6,
            A::UDPSendMsg4 => Self::SendMsg4,
            A::UDPSendMsg6 => Self::SendMsg6,
            A::UDPRecvMsg4 => Self::RecvMsg4,
            A::UDPRecvMsg6 => Self::RecvMsg6,
        }
    }
}

/// A cgroup hook that is not a `sock_addr` one: the service mesh's socket-level programs and
/// the load balancer's `sock_release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CgroupSockHook {
    /// `SEC("sockops")`: TCP socket events (`BPF_CGROUP_SOCK_OPS`).
    SockOps,
    /// `SEC("cgroup/getsockopt")`: after every `getsockopt(2)` (`BPF_CGROUP_GETSOCKOPT`).
    GetSockopt,
    /// `SEC("cgroup/sock_release")`: an inet socket closes (`BPF_CGROUP_INET_SOCK_RELEASE`).
    SockRelease,
}

impl CgroupSockHook {
    /// Every such hook.
    pub const ALL: [CgroupSockHook; 3] = [Self::SockOps, Self::GetSockopt, Self::SockRelease];

    /// The kernel's `enum bpf_attach_type` value for this hook.
    pub fn attach_type(self) -> u32 {
        match self {
            Self::SockOps => bpf::consts::BPF_CGROUP_SOCK_OPS,
            Self::GetSockopt => bpf::consts::BPF_CGROUP_GETSOCKOPT,
            Self::SockRelease => bpf::consts::BPF_CGROUP_INET_SOCK_RELEASE,
        }
    }

    /// The name in pins and messages: `sockops`, `getsockopt`, `sock-release`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SockOps => "sockops",
            Self::GetSockopt => "getsockopt",
            Self::SockRelease => "sock-release",
        }
    }
}

/// The program kinds weir loads. Anything else in an object is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgKind {
    /// `SEC("xdp")`, attached to an interface.
    Xdp,
    /// `SEC("classifier")`, attached at TC ingress or egress.
    SchedCls,
    /// `SEC("cgroup/<hook>")`, attached to a cgroup v2 directory.
    SockAddr(SockAddrHook),
    /// `SEC("sockops")`, `SEC("cgroup/getsockopt")` or `SEC("cgroup/sock_release")`, attached
    /// to a cgroup v2 directory.
    CgroupSock(CgroupSockHook),
    /// `SEC("sk_lookup")`, attached to a network namespace (`BPF_SK_LOOKUP`).
    SkLookup,
}

impl ProgKind {
    /// The kernel's `enum bpf_prog_type` value.
    pub fn prog_type(self) -> u32 {
        match self {
            Self::Xdp => bpf::consts::BPF_PROG_TYPE_XDP,
            Self::SchedCls => bpf::consts::BPF_PROG_TYPE_SCHED_CLS,
            Self::SockAddr(_) => bpf::consts::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            Self::CgroupSock(CgroupSockHook::SockOps) => bpf::consts::BPF_PROG_TYPE_SOCK_OPS,
            Self::CgroupSock(CgroupSockHook::GetSockopt) => {
                bpf::consts::BPF_PROG_TYPE_CGROUP_SOCKOPT
            }
            Self::CgroupSock(CgroupSockHook::SockRelease) => bpf::consts::BPF_PROG_TYPE_CGROUP_SOCK,
            Self::SkLookup => bpf::consts::BPF_PROG_TYPE_SK_LOOKUP,
        }
    }

    /// The `expected_attach_type` the kernel wants at load time, if any.
    pub fn expected_attach_type(self) -> Option<u32> {
        match self {
            Self::Xdp => Some(bpf::consts::BPF_XDP),
            Self::SchedCls => None,
            Self::SockAddr(hook) => Some(hook.attach_type()),
            Self::CgroupSock(hook) => Some(hook.attach_type()),
            Self::SkLookup => Some(bpf::consts::BPF_SK_LOOKUP),
        }
    }
}

/// What is wrong with an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectProblem {
    /// The ELF could not be parsed.
    Malformed(String),
    /// A program section weir does not attach.
    UnsupportedSection { program: String, section: String },
    /// The licence is missing or not GPL-compatible.
    License(String),
    /// The object has no program at all.
    NoPrograms,
    /// A map that `maps-schema` does not define.
    UnknownMap { map: String },
    /// A map that differs from its `maps-schema` definition.
    MapMismatch {
        map: String,
        differences: Vec<String>,
    },
    /// BTF could not be read or prepared for the kernel.
    Btf(String),
    /// Relocation failed.
    Relocation(String),
}

impl fmt::Display for ObjectProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a valid BPF ELF object: {why}"),
            Self::UnsupportedSection { program, section } => write!(
                f,
                "prog '{program}': section '{section}' is not one weir attaches (xdp, classifier, cgroup/<sock_addr hook>, sockops, cgroup/getsockopt, sk_lookup)"
            ),
            Self::License(why) => write!(f, "licence {why}"),
            Self::NoPrograms => write!(f, "no programs in the object"),
            Self::UnknownMap { map } => write!(
                f,
                "map '{map}' is not defined in maps-schema; add it to maps-schema/src and regenerate the header (make -C programs header)"
            ),
            Self::MapMismatch { map, differences } => write!(
                f,
                "map '{map}' differs from maps-schema: {}; rebuild the programs against the generated header (make -C programs)",
                differences.join("; ")
            ),
            Self::Btf(why) => write!(f, "BTF: {why}"),
            Self::Relocation(why) => write!(f, "relocation: {why}"),
        }
    }
}

/// A program found in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    /// The function name, which is also the kernel-visible program name.
    pub name: String,
    /// How it is loaded and attached.
    pub kind: ProgKind,
}

/// A parsed and verified object, ready to load.
#[derive(Debug)]
pub struct VerifiedObject {
    /// The object's file name (for messages).
    pub name: String,
    /// Programs by name, sorted.
    pub programs: Vec<ProgramSpec>,
    /// The maps the object uses, with their schema definitions.
    pub maps: Vec<&'static MapDef>,
    obj: aya_obj::Object,
}

/// Licences the kernel treats as GPL-compatible (`license_is_gpl_compatible`).
const GPL_COMPATIBLE: &[&str] = &[
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
];

/// Runs `f`, turning a panic inside aya-obj into an error message.
fn contained<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("{what} failed inside aya-obj ({msg})")
    })
}

/// Formats an error with its whole source chain, since aya-obj's top-level messages are terse.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

fn object_err(object: &str, problem: ObjectProblem) -> Error {
    Error::Object {
        object: object.to_owned(),
        problem,
    }
}

/// Parses and verifies `bytes` without touching the kernel.
///
/// # Errors
/// Returns [`Error::Object`] naming the object and the problem: malformed ELF (also when aya-obj
/// panics), an unsupported section, a licence that is not GPL-compatible, or a map missing from or
/// differing from `maps-schema`.
pub fn parse_and_verify(name: &str, bytes: &[u8]) -> Result<VerifiedObject, Error> {
    let obj = contained("ELF parse", || aya_obj::Object::parse(bytes))
        .map_err(|why| object_err(name, ObjectProblem::Malformed(why)))?
        .map_err(|e| object_err(name, ObjectProblem::Malformed(chain(&e))))?;
    verify(name, obj)
}

fn verify(name: &str, obj: aya_obj::Object) -> Result<VerifiedObject, Error> {
    let license = obj.license.to_string_lossy().into_owned();
    if license.is_empty() {
        return Err(object_err(
            name,
            ObjectProblem::License("missing: add SEC(\"license\")".into()),
        ));
    }
    if !GPL_COMPATIBLE.contains(&license.as_str()) {
        return Err(object_err(
            name,
            ObjectProblem::License(format!(
                "'{license}' is not GPL-compatible (use one of: {})",
                GPL_COMPATIBLE.join(", ")
            )),
        ));
    }

    let mut programs = Vec::new();
    for (prog_name, prog) in &obj.programs {
        let kind = match &prog.section {
            ProgramSection::Xdp {
                frags: false,
                attach_type: aya_obj::programs::XdpAttachType::Interface,
            } => ProgKind::Xdp,
            ProgramSection::SchedClassifier => ProgKind::SchedCls,
            ProgramSection::CgroupSockAddr { attach_type } => {
                ProgKind::SockAddr(SockAddrHook::from_aya(*attach_type))
            }
            ProgramSection::SockOps => ProgKind::CgroupSock(CgroupSockHook::SockOps),
            ProgramSection::CgroupSockopt {
                attach_type: aya_obj::programs::CgroupSockoptAttachType::Get,
            } => ProgKind::CgroupSock(CgroupSockHook::GetSockopt),
            ProgramSection::CgroupSock {
                attach_type: aya_obj::programs::CgroupSockAttachType::SockRelease,
            } => ProgKind::CgroupSock(CgroupSockHook::SockRelease),
            ProgramSection::SkLookup => ProgKind::SkLookup,
            other => {
                return Err(object_err(
                    name,
                    ObjectProblem::UnsupportedSection {
                        program: prog_name.clone(),
                        section: format!("{other:?}"),
                    },
                ))
            }
        };
        if !obj.functions.contains_key(&prog.function_key()) {
            return Err(object_err(
                name,
                ObjectProblem::Malformed(format!("prog '{prog_name}' has no code")),
            ));
        }
        programs.push(ProgramSpec {
            name: prog_name.clone(),
            kind,
        });
    }
    if programs.is_empty() {
        return Err(object_err(name, ObjectProblem::NoPrograms));
    }
    programs.sort_by(|a, b| a.name.cmp(&b.name));

    let btf = match &obj.btf {
        Some(b) => Some(
            Btf::parse(&b.to_bytes())
                .map_err(|e| object_err(name, ObjectProblem::Btf(e.to_string())))?,
        ),
        None => None,
    };
    let mut maps = Vec::new();
    let mut map_names: Vec<&String> = obj.maps.keys().collect();
    map_names.sort();
    for map_name in map_names {
        let map = &obj.maps[map_name];
        let def = maps_schema::find(map_name).ok_or_else(|| {
            object_err(
                name,
                ObjectProblem::UnknownMap {
                    map: map_name.clone(),
                },
            )
        })?;
        let differences = map_differences(def, map, btf.as_ref());
        if !differences.is_empty() {
            return Err(object_err(
                name,
                ObjectProblem::MapMismatch {
                    map: map_name.clone(),
                    differences,
                },
            ));
        }
        maps.push(def);
    }
    Ok(VerifiedObject {
        name: name.to_owned(),
        programs,
        maps,
        obj,
    })
}

/// Compares one map of an object with its schema definition. Empty means identical.
fn map_differences(def: &MapDef, map: &Map, btf: Option<&Btf>) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |what: &str, object: u64, schema: u64| {
        if object != schema {
            d.push(format!(
                "{what} is {object} in the object, {schema} in maps-schema"
            ));
        }
    };
    cmp("type", map.map_type().into(), def.map_type as u64);
    cmp("key size", map.key_size().into(), def.key.size.into());
    cmp("value size", map.value_size().into(), def.value.size.into());
    cmp(
        "max_entries",
        map.max_entries().into(),
        def.max_entries.into(),
    );
    cmp("flags", map.map_flags().into(), def.flags.into());
    match (map, btf) {
        (Map::Btf(m), Some(btf)) => {
            for (what, id, layout) in [
                ("key", m.def.btf_key_type_id, &def.key),
                ("value", m.def.btf_value_type_id, &def.value),
            ] {
                // A ring buffer has no key or value type (id 0) and a size-0 schema layout.
                if layout.size == 0 && id == 0 {
                    continue;
                }
                match btf.layout(id) {
                    Ok(found) => d.extend(layout_differences(what, &found, layout)),
                    Err(e) => d.push(format!("{what} type: {e}")),
                }
            }
        }
        (Map::Btf(_), None) => {
            d.push("defined in .maps but the object has no BTF (compile with -g)".into())
        }
        (Map::Legacy(_), _) => d.push(
            "defined in the legacy 'maps' section; weir needs BTF-defined maps (.maps)".into(),
        ),
    }
    d
}

/// Compares a BTF layout with a schema layout member by member.
pub(crate) fn layout_differences(what: &str, found: &TypeLayout, schema: &Layout) -> Vec<String> {
    let mut d = Vec::new();
    if found.c_name != schema.c_name {
        d.push(format!(
            "{what} type is '{}' in BTF, '{}' in maps-schema",
            found.c_name, schema.c_name
        ));
    }
    if found.size != schema.size {
        d.push(format!(
            "{what} type size is {} in BTF, {} in maps-schema",
            found.size, schema.size
        ));
    }
    let schema_members: Vec<(String, u32, u32)> = schema
        .fields
        .iter()
        .map(|f| (f.name.to_owned(), f.offset, f.size))
        .collect();
    if found.members != schema_members {
        let show = |ms: &[(String, u32, u32)]| {
            ms.iter()
                .map(|(n, o, s)| format!("{n}@{o}:{s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        d.push(format!(
            "{what} members are [{}] in BTF, [{}] in maps-schema (name@offset:size)",
            show(&found.members),
            show(&schema_members)
        ));
    }
    d
}

/// A program loaded into the kernel, not yet attached.
#[derive(Debug)]
pub struct LoadedProgram {
    /// The program's name and kind.
    pub spec: ProgramSpec,
    /// The program fd.
    pub fd: OwnedFd,
    /// The kernel's program id.
    pub id: u32,
    /// The kernel's program tag (a hash of the instructions with map references masked):
    /// equal tags mean the same code, which is how `weir load` recognises a no-op.
    pub tag: [u8; 8],
    /// Ids of the maps it uses, sorted: the same code on other maps (a map re-created, e.g.
    /// for a new layout) is not a no-op.
    pub map_ids: Vec<u32>,
    /// What loading another copy with a 64-bit constant replaced takes (sk_lookup programs,
    /// see [`LoadedProgram::instance`]).
    reload: Option<std::sync::Arc<Reload>>,
}

/// A relocated program, kept to load copies of it.
#[derive(Debug)]
struct Reload {
    object: String,
    insns: Vec<u8>,
    license: CString,
    kern_version: u32,
    btf_fd: Option<std::sync::Arc<OwnedFd>>,
    func_info: Vec<u8>,
    func_info_rec_size: u32,
    line_info: Vec<u8>,
    line_info_rec_size: u32,
}

/// Replaces every `ld_imm64 rX, placeholder` in `insns` by `ld_imm64 rX, value`; returns how
/// many were replaced. A plain (non-map) 64-bit load has src_reg 0.
fn patch_imm64(insns: &mut [u8], placeholder: u64, value: u64) -> usize {
    const LD_IMM64: u8 = 0x18;
    let mut n = 0;
    let mut i = 0;
    while i + 16 <= insns.len() {
        if insns[i] == LD_IMM64 && insns[i + 1] >> 4 == 0 {
            let lo = u32::from_le_bytes(insns[i + 4..i + 8].try_into().unwrap_or([0; 4]));
            let hi = u32::from_le_bytes(insns[i + 12..i + 16].try_into().unwrap_or([0; 4]));
            if (u64::from(hi) << 32 | u64::from(lo)) == placeholder {
                insns[i + 4..i + 8].copy_from_slice(&(value as u32).to_le_bytes());
                insns[i + 12..i + 16].copy_from_slice(&((value >> 32) as u32).to_le_bytes());
                n += 1;
            }
            i += 16;
        } else {
            i += 8;
        }
    }
    n
}

impl LoadedProgram {
    /// Loads another copy of this program with the 64-bit constant `placeholder` replaced by
    /// `value` everywhere in its code: how one sk_lookup program serves each network namespace
    /// with that namespace's cookie (it cannot ask the kernel for it).
    ///
    /// # Errors
    /// When the program keeps no code to copy (not an sk_lookup program), its code has no
    /// `placeholder`, or the kernel refuses the copy.
    pub fn instance(&self, placeholder: u64, value: u64) -> Result<LoadedProgram, Error> {
        let r = self.reload.as_ref().ok_or_else(|| {
            Error::attach(
                format!("prog '{}'", self.spec.name),
                "no code kept to load a copy of",
            )
        })?;
        let mut insns = r.insns.clone();
        if patch_imm64(&mut insns, placeholder, value) == 0 {
            return Err(object_err(
                &r.object,
                ObjectProblem::Relocation(format!(
                    "prog '{}' has no placeholder {placeholder:#x} to replace",
                    self.spec.name
                )),
            ));
        }
        let attrs = bpf::ProgLoad {
            name: &self.spec.name,
            prog_type: self.spec.kind.prog_type(),
            expected_attach_type: self.spec.kind.expected_attach_type(),
            insns: &insns,
            license: &r.license,
            kern_version: r.kern_version,
            btf_fd: r.btf_fd.as_ref().map(|f| f.as_fd()),
            func_info: &r.func_info,
            func_info_rec_size: r.func_info_rec_size,
            line_info: &r.line_info,
            line_info_rec_size: r.line_info_rec_size,
            prog_flags: 0,
        };
        let fd = bpf::prog_load(&attrs).map_err(|e| Error::Verifier {
            program: self.spec.name.clone(),
            object: r.object.clone(),
            errno: e.errno(),
            message: e.source.to_string(),
            log: e.verifier_log.clone().unwrap_or_default(),
        })?;
        let info = bpf::prog_info(fd.as_fd())
            .map_err(|e| Error::bpf(format!("prog '{}'", self.spec.name), e))?;
        let mut map_ids = info.map_ids.clone();
        map_ids.sort_unstable();
        Ok(LoadedProgram {
            spec: self.spec.clone(),
            fd,
            id: info.id,
            tag: info.tag,
            map_ids,
            reload: None,
        })
    }
}

/// Where an object gets the fds of the maps it references.
pub trait MapProvider {
    /// Returns an fd for the map `def`, creating or reusing it as the provider sees fit.
    /// `btf` carries the object's loaded BTF and the key/value type ids for map creation.
    ///
    /// # Errors
    /// Returns an error when the map can be neither reused nor created.
    fn map_fd(
        &mut self,
        def: &'static MapDef,
        btf: Option<(BorrowedFd<'_>, u32, u32)>,
    ) -> Result<BorrowedFd<'_>, Error>;
}

/// BTF features of the running kernel, as aya-obj needs them for sanitizing.
///
/// weir needs a kernel with bpf_link, TCX and BTF-defined maps (6.6+), where every BTF kind
/// aya-obj asks about is supported, so these are not probed one by one.
fn btf_features() -> BtfFeatures {
    BtfFeatures::new(true, true, true, true, true, true, true, true)
}

fn insn_bytes(insns: &[bpf_insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * 8);
    for i in insns {
        out.push(i.code);
        out.push((i.src_reg() << 4) | (i.dst_reg() & 0x0f));
        out.extend_from_slice(&i.off.to_le_bytes());
        out.extend_from_slice(&i.imm.to_le_bytes());
    }
    out
}

impl VerifiedObject {
    /// Loads BTF, resolves maps through `maps`, relocates and loads every program.
    ///
    /// Nothing is attached. On error, whatever was loaded is closed again (fds are owned).
    ///
    /// # Errors
    /// Returns [`Error::Object`] for BTF/relocation problems, [`Error::Verifier`] with the
    /// kernel's verifier log when a program is rejected, and the provider's map errors.
    pub fn load(mut self, maps: &mut dyn MapProvider) -> Result<Vec<LoadedProgram>, Error> {
        let name = self.name.clone();
        let obj = &mut self.obj;

        let btf_fd: Option<std::sync::Arc<OwnedFd>> = match contained("BTF sanitize", || {
            obj.fixup_and_sanitize_btf(&btf_features())
                .map(|b| b.map(|b| b.to_bytes()))
        })
        .map_err(|why| object_err(&name, ObjectProblem::Btf(why)))?
        {
            Ok(Some(bytes)) => Some(std::sync::Arc::new(
                bpf::btf_load(&bytes).map_err(|e| Error::bpf(format!("object '{name}'"), e))?,
            )),
            Ok(None) => None,
            Err(e) => return Err(object_err(&name, ObjectProblem::Btf(chain(&e)))),
        };

        if obj.has_btf_relocations() {
            log::debug!("object '{name}': has CO-RE relocations, reading kernel BTF");
            let target = aya_obj::btf::Btf::from_sys_fs().map_err(|e| {
                object_err(
                    &name,
                    ObjectProblem::Btf(format!("reading /sys/kernel/btf/vmlinux: {}", chain(&e))),
                )
            })?;
            contained("CO-RE relocation", || obj.relocate_btf(&target))
                .map_err(|why| object_err(&name, ObjectProblem::Relocation(why)))?
                .map_err(|e| object_err(&name, ObjectProblem::Relocation(chain(&e))))?;
        }

        // Resolve every map to a raw fd first; the provider keeps the fds alive.
        let mut raw_fds = BTreeMap::new();
        for (map_name, map) in &obj.maps {
            let def = maps_schema::find(map_name).ok_or_else(|| {
                object_err(
                    &name,
                    ObjectProblem::UnknownMap {
                        map: map_name.clone(),
                    },
                )
            })?;
            let btf = match (map, &btf_fd) {
                (Map::Btf(m), Some(fd)) => {
                    Some((fd.as_fd(), m.def.btf_key_type_id, m.def.btf_value_type_id))
                }
                _ => None,
            };
            let fd = maps.map_fd(def, btf)?;
            raw_fds.insert(map_name.clone(), fd.as_raw_fd());
        }
        let text_sections: HashSet<usize> =
            obj.functions.keys().map(|(section, _)| *section).collect();
        let map_list: Vec<(String, i32, Map)> = obj
            .maps
            .iter()
            .map(|(n, m)| (n.clone(), raw_fds[n], m.clone()))
            .collect();
        contained("map relocation", || {
            obj.relocate_maps(
                map_list.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
                &text_sections,
            )
        })
        .map_err(|why| object_err(&name, ObjectProblem::Relocation(why)))?
        .map_err(|e| object_err(&name, ObjectProblem::Relocation(chain(&e))))?;
        contained("call relocation", || obj.relocate_calls(&text_sections))
            .map_err(|why| object_err(&name, ObjectProblem::Relocation(why)))?
            .map_err(|e| object_err(&name, ObjectProblem::Relocation(chain(&e))))?;

        let license = CString::new(obj.license.as_bytes()).unwrap_or_default();
        let mut loaded = Vec::new();
        for spec in &self.programs {
            let prog = &obj.programs[&spec.name];
            let func = &obj.functions[&prog.function_key()];
            let insns = insn_bytes(&func.instructions);
            let func_info = func.func_info.func_info_bytes();
            let line_info = func.line_info.line_info_bytes();
            let with_btf = btf_fd.is_some();
            let attrs = bpf::ProgLoad {
                name: &spec.name,
                prog_type: spec.kind.prog_type(),
                expected_attach_type: spec.kind.expected_attach_type(),
                insns: &insns,
                license: &license,
                kern_version: obj.kernel_version.unwrap_or(0),
                btf_fd: btf_fd.as_ref().map(|f| f.as_fd()),
                func_info: if with_btf { &func_info } else { &[] },
                func_info_rec_size: if with_btf {
                    func.func_info_rec_size as u32
                } else {
                    0
                },
                line_info: if with_btf { &line_info } else { &[] },
                line_info_rec_size: if with_btf {
                    func.line_info_rec_size as u32
                } else {
                    0
                },
                prog_flags: 0,
            };
            let fd = match bpf::prog_load(&attrs) {
                Ok(fd) => fd,
                Err(e) => {
                    return Err(Error::Verifier {
                        program: spec.name.clone(),
                        object: name.clone(),
                        errno: e.errno(),
                        message: e.source.to_string(),
                        log: e.verifier_log.clone().unwrap_or_default(),
                    })
                }
            };
            let info = bpf::prog_info(fd.as_fd())
                .map_err(|e| Error::bpf(format!("prog '{}'", spec.name), e))?;
            log::debug!(
                "prog '{}': loaded from '{name}' as id {}",
                spec.name,
                info.id
            );
            let mut map_ids = info.map_ids.clone();
            map_ids.sort_unstable();
            let reload = (spec.kind == ProgKind::SkLookup).then(|| {
                std::sync::Arc::new(Reload {
                    object: name.clone(),
                    insns: insns.clone(),
                    license: license.clone(),
                    kern_version: obj.kernel_version.unwrap_or(0),
                    btf_fd: btf_fd.clone(),
                    func_info: if with_btf {
                        func_info.clone()
                    } else {
                        Vec::new()
                    },
                    func_info_rec_size: if with_btf {
                        func.func_info_rec_size as u32
                    } else {
                        0
                    },
                    line_info: if with_btf {
                        line_info.clone()
                    } else {
                        Vec::new()
                    },
                    line_info_rec_size: if with_btf {
                        func.line_info_rec_size as u32
                    } else {
                        0
                    },
                })
            });
            loaded.push(LoadedProgram {
                spec: spec.clone(),
                fd,
                id: info.id,
                tag: info.tag,
                map_ids,
                reload,
            });
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [&b""[..], b"\x7fELF", &[0u8; 64], b"not an object at all"] {
            let e = parse_and_verify("junk.o", bytes).unwrap_err();
            assert!(e.to_string().contains("object 'junk.o'"), "{e}");
            assert!(e.to_string().contains("not a valid BPF ELF object"), "{e}");
        }
    }

    fn problem(bytes: &[u8]) -> ObjectProblem {
        match parse_and_verify("t.o", bytes) {
            Err(Error::Object { problem, .. }) => problem,
            Err(e) => panic!("unexpected error kind: {e}"),
            Ok(_) => panic!("the object was accepted"),
        }
    }

    #[test]
    fn embedded_objects_verify_with_their_programs_and_maps() {
        for o in crate::embedded::OBJECTS {
            let v = parse_and_verify(o.name, o.bytes).unwrap_or_else(|e| panic!("{e}"));
            assert!(!v.programs.is_empty() && !v.maps.is_empty(), "{}", o.name);
        }
        let tc = parse_and_verify("tc.o", include_bytes!("../../programs/tc.o")).unwrap();
        let names: Vec<_> = tc
            .programs
            .iter()
            .map(|p| (p.name.as_str(), p.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("tc_egress", ProgKind::SchedCls),
                ("tc_ingress", ProgKind::SchedCls)
            ]
        );
        let sock = parse_and_verify("s.o", include_bytes!("../../programs/sock_addr.o")).unwrap();
        assert_eq!(
            sock.programs[0].kind,
            ProgKind::SockAddr(SockAddrHook::Connect4)
        );
        assert!(sock.maps.iter().any(|m| m.name == "sock_counters"));
        assert!(sock.maps.iter().any(|m| m.name == "lb_services"));
    }

    #[test]
    fn a_map_whose_btf_members_drifted_from_the_schema_is_refused() {
        let p = problem(include_bytes!("../../programs/tests/bad_map.o"));
        let ObjectProblem::MapMismatch { map, differences } = &p else {
            panic!("{p}")
        };
        assert_eq!(map, "if_counters");
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(
            differences[0].contains(
                "value members are [pad@0:4, ifindex@4:4, packets@8:32, bytes@40:32] in BTF"
            ),
            "{p}"
        );
    }

    #[test]
    fn a_map_missing_from_the_schema_is_refused_by_name() {
        let p = problem(include_bytes!("../../programs/tests/unknown_map.o"));
        assert_eq!(
            p,
            ObjectProblem::UnknownMap {
                map: "not_in_schema".into()
            }
        );
        assert!(p.to_string().contains("not defined in maps-schema"));
    }

    #[test]
    fn a_licence_that_is_not_gpl_compatible_is_refused() {
        let p = problem(include_bytes!("../../programs/tests/proprietary.o"));
        assert!(
            matches!(&p, ObjectProblem::License(why) if why.contains("'Proprietary' is not GPL-compatible")),
            "{p}"
        );
    }

    #[test]
    fn a_section_weir_does_not_attach_is_refused() {
        let p = problem(include_bytes!("../../programs/tests/unsupported_section.o"));
        assert!(
            matches!(&p, ObjectProblem::UnsupportedSection { program, .. } if program == "sock_filter_prog"),
            "{p}"
        );
    }

    #[test]
    fn every_truncation_of_an_object_is_an_error_or_ok_never_a_panic() {
        let good = include_bytes!("../../programs/xdp.o");
        for cut in (0..good.len()).step_by(3) {
            let _ = parse_and_verify("cut.o", &good[..cut]);
        }
    }

    #[test]
    fn the_netns_placeholder_is_patched_in_every_64_bit_load() {
        let ph = maps_schema::mesh::NETNS_PLACEHOLDER;
        let mut insns = Vec::new();
        // ld_imm64 r2, placeholder; mov r0, 1; ld_imm64 r1 (map fd, src_reg 1), placeholder
        insns.extend_from_slice(&[0x18, 0x02, 0, 0]);
        insns.extend_from_slice(&(ph as u32).to_le_bytes());
        insns.extend_from_slice(&[0, 0, 0, 0]);
        insns.extend_from_slice(&((ph >> 32) as u32).to_le_bytes());
        insns.extend_from_slice(&[0xb7, 0, 0, 0, 1, 0, 0, 0]);
        insns.extend_from_slice(&[0x18, 0x11, 0, 0]);
        insns.extend_from_slice(&(ph as u32).to_le_bytes());
        insns.extend_from_slice(&[0, 0, 0, 0]);
        insns.extend_from_slice(&((ph >> 32) as u32).to_le_bytes());
        assert_eq!(patch_imm64(&mut insns, ph, 0x1122_3344_5566_7788), 1);
        assert_eq!(&insns[4..8], &0x5566_7788u32.to_le_bytes());
        assert_eq!(&insns[12..16], &0x1122_3344u32.to_le_bytes());
        // The map load (src_reg 1) is left alone.
        assert_eq!(&insns[28..32], &(ph as u32).to_le_bytes());
        // The shipped object carries the placeholder exactly once.
        let mesh = crate::embedded::OBJECTS
            .iter()
            .find(|o| o.name == "mesh.o")
            .unwrap();
        let needle = [&(ph as u32).to_le_bytes()[..], &[0u8; 4]].concat();
        assert!(mesh.bytes.windows(8).any(|w| w == needle.as_slice()));
    }

    #[test]
    fn layout_differences_name_each_member() {
        let found = TypeLayout {
            c_name: "struct weir_pol_ep_key".into(),
            size: 12,
            members: vec![
                ("bank".into(), 0, 4),
                ("ifindex".into(), 4, 4),
                ("hook".into(), 8, 4),
            ],
        };
        let key = maps_schema::find("pol_endpoints").unwrap().key;
        assert!(layout_differences("key", &found, &key).is_empty());
        let swapped = TypeLayout {
            members: vec![
                ("bank".into(), 0, 4),
                ("hook".into(), 4, 4),
                ("ifindex".into(), 8, 4),
            ],
            ..found
        };
        let d = layout_differences("key", &swapped, &key);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("bank@0:4, hook@4:4, ifindex@8:4"), "{d:?}");
    }
}
