//! Typed wrappers around the `bpf(2)` system call.
//!
//! Every command gets its own `#[repr(C)]` attribute struct that covers only the fields weir uses,
//! with explicit padding fields so no byte handed to the kernel is left uninitialised: the kernel
//! accepts an attribute shorter than its own `union bpf_attr` and rejects one whose bytes after the
//! command's last known field are not zero. The layouts follow the kernel's uapi `linux/bpf.h`;
//! compile-time assertions below pin every offset we rely on.
//!
//! Element operations check the caller's buffers against the map's real key and value sizes (one
//! `BPF_OBJ_GET_INFO_BY_FD` per call) because the kernel reads and writes exactly that many bytes
//! through the pointers we pass: a short buffer would otherwise be memory corruption.
//!
//! Every command goes through one function, `sys_bpf`; in unit tests a fake installed with
//! `sys::fake::install` answers there instead of the kernel, so the logic here (log retries,
//! size checks, attr encoding) is tested without one.

use std::ffi::{c_long, c_uint, c_void, CStr, CString};
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// Numbers from the kernel's uapi `linux/bpf.h` (checked against the header, kernel 6.18).
pub mod consts {
    // enum bpf_prog_type
    pub const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    pub const BPF_PROG_TYPE_SCHED_ACT: u32 = 4;
    pub const BPF_PROG_TYPE_XDP: u32 = 6;
    pub const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
    pub const BPF_PROG_TYPE_CGROUP_SOCK: u32 = 9;
    pub const BPF_PROG_TYPE_SOCK_OPS: u32 = 13;
    pub const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
    pub const BPF_PROG_TYPE_CGROUP_SOCKOPT: u32 = 25;
    pub const BPF_PROG_TYPE_SK_LOOKUP: u32 = 30;
    pub const BPF_PROG_TYPE_SYSCALL: u32 = 31;
    pub const BPF_PROG_TYPE_NETFILTER: u32 = 32;

    // enum bpf_attach_type
    pub const BPF_CGROUP_INET_INGRESS: u32 = 0;
    pub const BPF_CGROUP_INET_EGRESS: u32 = 1;
    pub const BPF_CGROUP_INET_SOCK_CREATE: u32 = 2;
    pub const BPF_CGROUP_SOCK_OPS: u32 = 3;
    pub const BPF_CGROUP_INET4_BIND: u32 = 8;
    pub const BPF_CGROUP_INET6_BIND: u32 = 9;
    pub const BPF_CGROUP_INET4_CONNECT: u32 = 10;
    pub const BPF_CGROUP_INET6_CONNECT: u32 = 11;
    pub const BPF_CGROUP_INET4_POST_BIND: u32 = 12;
    pub const BPF_CGROUP_INET6_POST_BIND: u32 = 13;
    pub const BPF_CGROUP_UDP4_SENDMSG: u32 = 14;
    pub const BPF_CGROUP_UDP6_SENDMSG: u32 = 15;
    pub const BPF_CGROUP_UDP4_RECVMSG: u32 = 19;
    pub const BPF_CGROUP_UDP6_RECVMSG: u32 = 20;
    pub const BPF_CGROUP_INET4_GETPEERNAME: u32 = 29;
    pub const BPF_CGROUP_GETSOCKOPT: u32 = 21;
    pub const BPF_CGROUP_INET6_GETPEERNAME: u32 = 30;
    pub const BPF_CGROUP_INET4_GETSOCKNAME: u32 = 31;
    pub const BPF_CGROUP_INET6_GETSOCKNAME: u32 = 32;
    pub const BPF_CGROUP_INET_SOCK_RELEASE: u32 = 34;
    pub const BPF_SK_LOOKUP: u32 = 36;
    pub const BPF_XDP: u32 = 37;
    pub const BPF_NETFILTER: u32 = 45;
    pub const BPF_TCX_INGRESS: u32 = 46;
    pub const BPF_TCX_EGRESS: u32 = 47;
    pub const BPF_NETKIT_PRIMARY: u32 = 54;
    pub const BPF_NETKIT_PEER: u32 = 55;

    // enum bpf_link_type
    pub const BPF_LINK_TYPE_CGROUP: u32 = 3;
    pub const BPF_LINK_TYPE_NETNS: u32 = 5;
    pub const BPF_LINK_TYPE_XDP: u32 = 6;
    pub const BPF_LINK_TYPE_NETFILTER: u32 = 10;
    pub const BPF_LINK_TYPE_TCX: u32 = 11;
    pub const BPF_LINK_TYPE_NETKIT: u32 = 13;

    // enum bpf_map_type
    pub const BPF_MAP_TYPE_HASH: u32 = 1;
    pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
    pub const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
    pub const BPF_MAP_TYPE_PERF_EVENT_ARRAY: u32 = 4;
    pub const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
    pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
    pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
    pub const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
    pub const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
    pub const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
    pub const BPF_MAP_TYPE_HASH_OF_MAPS: u32 = 13;
    pub const BPF_MAP_TYPE_DEVMAP: u32 = 14;
    pub const BPF_MAP_TYPE_CPUMAP: u32 = 16;
    pub const BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: u32 = 21;
    pub const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;
    pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;

    // map_flags at BPF_MAP_CREATE
    pub const BPF_F_NO_PREALLOC: u32 = 1;
    pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
    pub const BPF_F_NUMA_NODE: u32 = 1 << 2;
    pub const BPF_F_RDONLY: u32 = 1 << 3;
    pub const BPF_F_WRONLY: u32 = 1 << 4;
    pub const BPF_F_ZERO_SEED: u32 = 1 << 6;
    pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
    pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
    pub const BPF_F_MMAPABLE: u32 = 1 << 10;

    // flags of BPF_MAP_UPDATE_ELEM (and elem_flags of the batch commands)
    pub const BPF_ANY: u64 = 0;
    pub const BPF_NOEXIST: u64 = 1;
    pub const BPF_EXIST: u64 = 2;
    pub const BPF_F_LOCK: u64 = 4;

    // prog_flags at BPF_PROG_LOAD
    pub const BPF_F_STRICT_ALIGNMENT: u32 = 1;
    pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

    // attach flags (BPF_PROG_ATTACH, BPF_LINK_CREATE, BPF_LINK_UPDATE, BPF_PROG_QUERY results)
    pub const BPF_F_ALLOW_OVERRIDE: u32 = 1;
    pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
    pub const BPF_F_REPLACE: u32 = 1 << 2;
    pub const BPF_F_BEFORE: u32 = 1 << 3;
    pub const BPF_F_AFTER: u32 = 1 << 4;
    pub const BPF_F_ID: u32 = 1 << 5;
    pub const BPF_F_LINK: u32 = 1 << 13;

    // query_flags of BPF_PROG_QUERY
    pub const BPF_F_QUERY_EFFECTIVE: u32 = 1;

    // flags of BPF_PROG_TEST_RUN
    pub const BPF_F_TEST_RUN_ON_CPU: u32 = 1;
    pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

    // enum bpf_stats_type
    pub const BPF_STATS_RUN_TIME: u32 = 0;

    // XDP and TC verdicts
    pub const XDP_ABORTED: u32 = 0;
    pub const XDP_DROP: u32 = 1;
    pub const XDP_PASS: u32 = 2;
    pub const XDP_TX: u32 = 3;
    pub const XDP_REDIRECT: u32 = 4;
    pub const TC_ACT_UNSPEC: i32 = -1;
    pub const TC_ACT_OK: i32 = 0;
    pub const TC_ACT_SHOT: i32 = 2;

    /// Length of the kernel's object name fields, including the terminating NUL.
    pub const BPF_OBJ_NAME_LEN: usize = 16;
}

use consts::*;

// enum bpf_cmd (crate-visible for the fake syscall layer in tests)
pub(crate) const BPF_MAP_CREATE: u32 = 0;
pub(crate) const BPF_MAP_LOOKUP_ELEM: u32 = 1;
pub(crate) const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub(crate) const BPF_MAP_DELETE_ELEM: u32 = 3;
pub(crate) const BPF_MAP_GET_NEXT_KEY: u32 = 4;
pub(crate) const BPF_PROG_LOAD: u32 = 5;
pub(crate) const BPF_OBJ_PIN: u32 = 6;
pub(crate) const BPF_OBJ_GET: u32 = 7;
pub(crate) const BPF_PROG_TEST_RUN: u32 = 10;
pub(crate) const BPF_PROG_GET_NEXT_ID: u32 = 11;
pub(crate) const BPF_MAP_GET_NEXT_ID: u32 = 12;
pub(crate) const BPF_PROG_GET_FD_BY_ID: u32 = 13;
pub(crate) const BPF_MAP_GET_FD_BY_ID: u32 = 14;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
pub(crate) const BPF_PROG_QUERY: u32 = 16;
pub(crate) const BPF_BTF_LOAD: u32 = 18;
pub(crate) const BPF_BTF_GET_FD_BY_ID: u32 = 19;
pub(crate) const BPF_MAP_FREEZE: u32 = 22;
pub(crate) const BPF_MAP_LOOKUP_BATCH: u32 = 24;
pub(crate) const BPF_MAP_UPDATE_BATCH: u32 = 26;
pub(crate) const BPF_MAP_DELETE_BATCH: u32 = 27;
pub(crate) const BPF_LINK_CREATE: u32 = 28;
pub(crate) const BPF_LINK_UPDATE: u32 = 29;
pub(crate) const BPF_LINK_GET_FD_BY_ID: u32 = 30;
pub(crate) const BPF_LINK_GET_NEXT_ID: u32 = 31;
pub(crate) const BPF_ENABLE_STATS: u32 = 32;
pub(crate) const BPF_LINK_DETACH: u32 = 34;

/// A failed `bpf(2)` call: which command, about what, the OS error and, for loads, the verifier's
/// (or BTF checker's) log.
#[derive(Debug)]
pub struct BpfError {
    /// The command, e.g. `"BPF_MAP_CREATE"`.
    pub call: &'static str,
    /// What the call was about, e.g. `"map 'if_counters'"`; may be empty.
    pub subject: String,
    /// The OS error (or an `InvalidInput` error when weir refused the arguments itself).
    pub source: io::Error,
    /// The kernel's log for `BPF_PROG_LOAD` / `BPF_BTF_LOAD` failures.
    pub verifier_log: Option<String>,
}

impl BpfError {
    fn new(call: &'static str, subject: impl Into<String>, source: io::Error) -> Self {
        Self {
            call,
            subject: subject.into(),
            source,
            verifier_log: None,
        }
    }

    fn invalid(call: &'static str, subject: impl Into<String>, msg: String) -> Self {
        Self::new(
            call,
            subject,
            io::Error::new(io::ErrorKind::InvalidInput, msg),
        )
    }

    /// The OS error number, if the kernel reported one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.subject.is_empty() {
            write!(f, "{}: ", self.subject)?;
        }
        write!(f, "{}: {}", self.call, self.source)?;
        if let Some(log) = &self.verifier_log {
            write!(f, "\nverifier log:\n{log}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BpfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<BpfError> for io::Error {
    fn from(e: BpfError) -> Self {
        let kind = e.source.kind();
        io::Error::new(kind, e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute structs (parts of `union bpf_attr`), explicit padding, no implicit holes.

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; BPF_OBJ_NAME_LEN],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}

#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `start_id` / `prog_id` / `map_id` / `link_id` / `btf_id` share offset 0.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    count: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target: u32,
    attach_type: u32,
    flags: u32,
    /// `tcx.relative_fd` / `relative_id`; other link kinds use these bytes for other things and
    /// want them zero.
    relative: u32,
    _pad: u32,
    expected_revision: u64,
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct SingleU32Attr {
    value: u32,
}

// Offsets from the uapi header; a wrong one would silently send garbage to the kernel.
const _: () = {
    assert!(offset_of!(MapCreateAttr, map_name) == 28);
    assert!(offset_of!(MapCreateAttr, btf_fd) == 48);
    assert!(offset_of!(MapCreateAttr, map_extra) == 64);
    assert!(size_of::<MapCreateAttr>() == 72);
    assert!(offset_of!(ElemAttr, key) == 8 && offset_of!(ElemAttr, flags) == 24);
    assert!(offset_of!(BatchAttr, count) == 32 && offset_of!(BatchAttr, flags) == 48);
    assert!(size_of::<BatchAttr>() == 56);
    assert!(offset_of!(ProgLoadAttr, log_buf) == 32);
    assert!(offset_of!(ProgLoadAttr, prog_name) == 48);
    assert!(offset_of!(ProgLoadAttr, expected_attach_type) == 68);
    assert!(offset_of!(ProgLoadAttr, func_info) == 80);
    assert!(offset_of!(ProgLoadAttr, line_info) == 96);
    assert!(offset_of!(ProgLoadAttr, fd_array) == 120);
    assert!(offset_of!(ProgLoadAttr, log_true_size) == 140);
    assert!(size_of::<ProgLoadAttr>() == 144);
    assert!(size_of::<ObjAttr>() == 16);
    assert!(offset_of!(TestRunAttr, data_in) == 16 && offset_of!(TestRunAttr, ctx_in) == 48);
    assert!(offset_of!(TestRunAttr, batch_size) == 72 && size_of::<TestRunAttr>() == 80);
    assert!(offset_of!(QueryAttr, prog_ids) == 16 && offset_of!(QueryAttr, count) == 24);
    assert!(offset_of!(QueryAttr, link_ids) == 40 && offset_of!(QueryAttr, revision) == 56);
    assert!(offset_of!(BtfLoadAttr, btf_size) == 16 && size_of::<BtfLoadAttr>() == 32);
    assert!(offset_of!(LinkCreateAttr, relative) == 16);
    assert!(offset_of!(LinkCreateAttr, expected_revision) == 24);
    assert!(offset_of!(LinkUpdateAttr, old_prog_fd) == 12);
};

/// Issues one `bpf(2)` command. In unit tests a fake installed with `sys::fake::install`
/// answers instead of the kernel.
///
/// # Safety
/// `attr` must be the attribute struct for `cmd` (a `repr(C)` struct of integers with explicit
/// padding, so all its bytes are initialised), and every pointer stored in it must be valid
/// for the access the kernel makes through it for `cmd` (reads of the given lengths, writes of
/// the lengths the kernel documents) for the duration of the call.
unsafe fn sys_bpf<T>(cmd: u32, attr: &mut T) -> io::Result<c_long> {
    #[cfg(test)]
    if super::fake::active() {
        // SAFETY: per the contract, all size_of::<T>() bytes of `attr` are initialised integer
        // fields, so viewing them as bytes, and any bytes a fake writes back, are valid.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(attr as *mut T as *mut u8, size_of::<T>()) };
        let mem = fake_mem(cmd, bytes);
        if let Some(ret) = super::fake::dispatch(cmd, bytes, mem) {
            return ret
                .map(|v| v as c_long)
                .map_err(io::Error::from_raw_os_error);
        }
    }
    // SAFETY: forwarded from the caller; `attr` itself is a live, fully initialised struct of
    // `size_of::<T>()` bytes, which is the size we pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as c_long,
            attr as *mut T as *mut c_void,
            size_of::<T>() as c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wraps a file descriptor the kernel just returned.
fn owned_fd(ret: c_long) -> OwnedFd {
    // SAFETY: a successful fd-returning bpf(2) command hands us a fresh descriptor nobody else
    // owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn raw(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// The kernel's fixed-size name field: at most 15 bytes, NUL-terminated, cut on a UTF-8 boundary.
fn obj_name(name: &str) -> [u8; BPF_OBJ_NAME_LEN] {
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    let mut end = name.len().min(BPF_OBJ_NAME_LEN - 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}

fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn path_cstring(call: &'static str, path: &Path) -> Result<CString, BpfError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        BpfError::invalid(
            call,
            format!("path {}", path.display()),
            "path contains a NUL byte".into(),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Maps

/// Arguments of `BPF_MAP_CREATE`.
#[derive(Debug, Clone, Copy)]
pub struct MapCreate<'a> {
    /// Name shown by the kernel; cut to 15 bytes. The kernel accepts only `[A-Za-z0-9_.]`.
    pub name: &'a str,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub btf_fd: Option<BorrowedFd<'a>>,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub map_extra: u64,
}

/// Creates a map.
///
/// # Errors
/// `BPF_MAP_CREATE` failed (bad type/sizes/flags/name, BTF mismatch, memory).
pub fn map_create(a: &MapCreate<'_>) -> Result<OwnedFd, BpfError> {
    let mut attr = MapCreateAttr {
        map_type: a.map_type,
        key_size: a.key_size,
        value_size: a.value_size,
        max_entries: a.max_entries,
        map_flags: a.flags,
        map_name: obj_name(a.name),
        btf_fd: a.btf_fd.map_or(0, raw),
        btf_key_type_id: a.btf_key_type_id,
        btf_value_type_id: a.btf_value_type_id,
        map_extra: a.map_extra,
        ..Default::default()
    };
    // SAFETY: the attr holds no pointers.
    let ret = unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr) };
    ret.map(owned_fd)
        .map_err(|e| BpfError::new("BPF_MAP_CREATE", format!("map '{}'", a.name), e))
}

/// Whether values of this map type are stored once per possible CPU.
pub fn is_percpu_map(map_type: u32) -> bool {
    matches!(
        map_type,
        BPF_MAP_TYPE_PERCPU_HASH
            | BPF_MAP_TYPE_PERCPU_ARRAY
            | BPF_MAP_TYPE_LRU_PERCPU_HASH
            | BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
    )
}

/// Bytes one value occupies in user space for lookups and updates: `value_size`, or for per-CPU
/// maps `value_size` rounded up to 8 times the number of possible CPUs.
///
/// # Errors
/// Reading `/sys/devices/system/cpu/possible` failed (per-CPU maps only).
pub fn value_len(map_type: u32, value_size: u32) -> io::Result<usize> {
    if is_percpu_map(map_type) {
        Ok((value_size as usize).next_multiple_of(8) * possible_cpus()? as usize)
    } else {
        Ok(value_size as usize)
    }
}

/// The sizes the kernel will use for a map's keys and values, learnt from the map itself.
struct Layout {
    key_size: usize,
    value_len: usize,
    subject: String,
}

fn layout(fd: BorrowedFd<'_>, call: &'static str) -> Result<Layout, BpfError> {
    let info = map_info(fd)?;
    let subject = format!("map '{}'", info.name);
    let value_len =
        value_len(info.map_type, info.value_size).map_err(|e| BpfError::new(call, &subject, e))?;
    // Tell the fake `bpf(2)` the sizes the wrapper's buffers are about to be checked against.
    #[cfg(test)]
    CHECKED_LAYOUT.with(|c| c.set(Some((raw(fd), info.key_size as usize, value_len))));
    Ok(Layout {
        key_size: info.key_size as usize,
        value_len,
        subject,
    })
}

impl Layout {
    fn check(
        &self,
        call: &'static str,
        what: &str,
        got: usize,
        want: usize,
    ) -> Result<(), BpfError> {
        if got == want {
            Ok(())
        } else {
            Err(BpfError::invalid(
                call,
                &self.subject,
                format!("{what} buffer is {got} bytes, the map needs {want}"),
            ))
        }
    }

    fn check_min(
        &self,
        call: &'static str,
        what: &str,
        got: usize,
        want: usize,
    ) -> Result<(), BpfError> {
        if got >= want {
            Ok(())
        } else {
            Err(BpfError::invalid(
                call,
                &self.subject,
                format!("{what} buffer is {got} bytes, the map needs {want}"),
            ))
        }
    }

    /// A key pointer: NULL for maps without keys (queue, stack), which the kernel insists on.
    fn key_ptr(&self, key: &[u8]) -> u64 {
        if self.key_size == 0 {
            0
        } else {
            ptr(key.as_ptr())
        }
    }

    /// Batch tokens: the kernel uses a u32 bucket index for hash maps and a key otherwise.
    fn batch_len(&self) -> usize {
        self.key_size.max(4)
    }
}

/// Looks a key up; `value` must be exactly the map's value length (see [`value_len`]).
/// Returns `Ok(false)` when the key is absent.
///
/// # Errors
/// Wrong buffer sizes, or `BPF_MAP_LOOKUP_ELEM` failed with anything but ENOENT.
pub fn map_lookup(fd: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> Result<bool, BpfError> {
    const CALL: &str = "BPF_MAP_LOOKUP_ELEM";
    let l = layout(fd, CALL)?;
    l.check(CALL, "key", key.len(), l.key_size)?;
    l.check(CALL, "value", value.len(), l.value_len)?;
    let mut attr = ElemAttr {
        map_fd: raw(fd),
        key: l.key_ptr(key),
        value_or_next_key: ptr(value.as_mut_ptr()),
        ..Default::default()
    };
    // SAFETY: key and value are live buffers of exactly key_size and value_len bytes, the amounts
    // the kernel reads and writes for this map.
    match unsafe { sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(BpfError::new(CALL, l.subject, e)),
    }
}

/// Inserts or replaces an element (`flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
///
/// # Errors
/// Wrong buffer sizes, or `BPF_MAP_UPDATE_ELEM` failed (E2BIG when full, EEXIST/ENOENT per flags).
pub fn map_update(
    fd: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> Result<(), BpfError> {
    const CALL: &str = "BPF_MAP_UPDATE_ELEM";
    let l = layout(fd, CALL)?;
    l.check(CALL, "key", key.len(), l.key_size)?;
    l.check(CALL, "value", value.len(), l.value_len)?;
    let mut attr = ElemAttr {
        map_fd: raw(fd),
        key: l.key_ptr(key),
        value_or_next_key: ptr(value.as_ptr()),
        flags,
        ..Default::default()
    };
    // SAFETY: key and value are live buffers of the sizes the kernel reads for this map.
    unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }
        .map(drop)
        .map_err(|e| BpfError::new(CALL, l.subject, e))
}

/// Deletes a key; `Ok(false)` when it was absent.
///
/// # Errors
/// Wrong key size, or `BPF_MAP_DELETE_ELEM` failed with anything but ENOENT.
pub fn map_delete(fd: BorrowedFd<'_>, key: &[u8]) -> Result<bool, BpfError> {
    const CALL: &str = "BPF_MAP_DELETE_ELEM";
    let l = layout(fd, CALL)?;
    l.check(CALL, "key", key.len(), l.key_size)?;
    let mut attr = ElemAttr {
        map_fd: raw(fd),
        key: l.key_ptr(key),
        ..Default::default()
    };
    // SAFETY: key is a live buffer of key_size bytes.
    match unsafe { sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(BpfError::new(CALL, l.subject, e)),
    }
}

/// Writes the key after `key` (the first key for `None`) into `next`; `Ok(false)` at the end.
///
/// # Errors
/// Wrong buffer sizes, or `BPF_MAP_GET_NEXT_KEY` failed with anything but ENOENT.
pub fn map_next_key(
    fd: BorrowedFd<'_>,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> Result<bool, BpfError> {
    const CALL: &str = "BPF_MAP_GET_NEXT_KEY";
    let l = layout(fd, CALL)?;
    if let Some(k) = key {
        l.check(CALL, "key", k.len(), l.key_size)?;
    }
    l.check(CALL, "next key", next.len(), l.key_size)?;
    let mut attr = ElemAttr {
        map_fd: raw(fd),
        key: key.map_or(0, |k| ptr(k.as_ptr())),
        value_or_next_key: ptr(next.as_mut_ptr()),
        ..Default::default()
    };
    // SAFETY: key (if any) and next are live buffers of key_size bytes.
    match unsafe { sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(BpfError::new(CALL, l.subject, e)),
    }
}

/// Freezes a map: user space can no longer change it (used for `.rodata`).
///
/// # Errors
/// `BPF_MAP_FREEZE` failed (EBUSY when already frozen or writably mmapped).
pub fn map_freeze(fd: BorrowedFd<'_>) -> Result<(), BpfError> {
    let mut attr = SingleU32Attr { value: raw(fd) };
    // SAFETY: the attr holds no pointers.
    unsafe { sys_bpf(BPF_MAP_FREEZE, &mut attr) }
        .map(drop)
        .map_err(|e| BpfError::new("BPF_MAP_FREEZE", "", e))
}

/// Updates `count` elements: `keys` holds `count` keys back to back, `values` `count` values.
/// Returns how many were done.
///
/// # Errors
/// Short buffers, or `BPF_MAP_UPDATE_BATCH` failed (elements before the failing one are done).
pub fn map_update_batch(
    fd: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    count: u32,
    elem_flags: u64,
) -> Result<u32, BpfError> {
    const CALL: &str = "BPF_MAP_UPDATE_BATCH";
    let l = layout(fd, CALL)?;
    l.check_min(CALL, "keys", keys.len(), l.key_size * count as usize)?;
    l.check_min(CALL, "values", values.len(), l.value_len * count as usize)?;
    let mut attr = BatchAttr {
        keys: ptr(keys.as_ptr()),
        values: ptr(values.as_ptr()),
        count,
        map_fd: raw(fd),
        elem_flags,
        ..Default::default()
    };
    // SAFETY: keys and values hold at least `count` keys and values of the map's sizes.
    unsafe { sys_bpf(BPF_MAP_UPDATE_BATCH, &mut attr) }
        .map(|_| attr.count)
        .map_err(|e| BpfError::new(CALL, l.subject, e))
}

/// Deletes `count` keys stored back to back in `keys`; returns how many were deleted.
///
/// # Errors
/// Short buffer, or `BPF_MAP_DELETE_BATCH` failed (ENOENT when a key is absent).
pub fn map_delete_batch(fd: BorrowedFd<'_>, keys: &[u8], count: u32) -> Result<u32, BpfError> {
    const CALL: &str = "BPF_MAP_DELETE_BATCH";
    let l = layout(fd, CALL)?;
    l.check_min(CALL, "keys", keys.len(), l.key_size * count as usize)?;
    let mut attr = BatchAttr {
        keys: ptr(keys.as_ptr()),
        count,
        map_fd: raw(fd),
        ..Default::default()
    };
    // SAFETY: keys holds at least `count` keys of the map's key size.
    unsafe { sys_bpf(BPF_MAP_DELETE_BATCH, &mut attr) }
        .map(|_| attr.count)
        .map_err(|e| BpfError::new(CALL, l.subject, e))
}

/// Reads up to `count` elements, continuing after `in_batch` (`None` = from the start) and
/// writing the position to resume from into `out_batch` (both at least `max(key_size, 4)` bytes).
/// Returns how many elements were copied and whether more may follow.
///
/// # Errors
/// Short buffers, or `BPF_MAP_LOOKUP_BATCH` failed (ENOSPC: a hash bucket holds more than
/// `count` elements; retry with a larger count).
pub fn map_lookup_batch(
    fd: BorrowedFd<'_>,
    in_batch: Option<&[u8]>,
    out_batch: &mut [u8],
    keys: &mut [u8],
    values: &mut [u8],
    count: u32,
) -> Result<(u32, bool), BpfError> {
    const CALL: &str = "BPF_MAP_LOOKUP_BATCH";
    let l = layout(fd, CALL)?;
    if let Some(b) = in_batch {
        l.check_min(CALL, "in_batch", b.len(), l.batch_len())?;
    }
    l.check_min(CALL, "out_batch", out_batch.len(), l.batch_len())?;
    l.check_min(CALL, "keys", keys.len(), l.key_size * count as usize)?;
    l.check_min(CALL, "values", values.len(), l.value_len * count as usize)?;
    let mut attr = BatchAttr {
        in_batch: in_batch.map_or(0, |b| ptr(b.as_ptr())),
        out_batch: ptr(out_batch.as_mut_ptr()),
        keys: ptr(keys.as_mut_ptr()),
        values: ptr(values.as_mut_ptr()),
        count,
        map_fd: raw(fd),
        ..Default::default()
    };
    // SAFETY: the batch tokens hold at least max(key_size, 4) bytes (the kernel uses a u32 bucket
    // index or a key), keys and values room for `count` elements.
    match unsafe { sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
        Ok(_) => Ok((attr.count, true)),
        // ENOENT: the walk reached the end; `count` still says how many were copied.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((attr.count, false)),
        Err(e) => Err(BpfError::new(CALL, l.subject, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Programs and BTF

/// Arguments of `BPF_PROG_LOAD`.
#[derive(Debug, Clone, Copy)]
pub struct ProgLoad<'a> {
    /// Name shown by the kernel; cut to 15 bytes. The kernel accepts only `[A-Za-z0-9_.]`.
    pub name: &'a str,
    pub prog_type: u32,
    pub expected_attach_type: Option<u32>,
    /// Instructions, 8 bytes each.
    pub insns: &'a [u8],
    pub license: &'a CStr,
    pub kern_version: u32,
    pub btf_fd: Option<BorrowedFd<'a>>,
    /// `func_info_rec_size`-byte records (only with `btf_fd`).
    pub func_info: &'a [u8],
    pub func_info_rec_size: u32,
    /// `line_info_rec_size`-byte records (only with `btf_fd`).
    pub line_info: &'a [u8],
    pub line_info_rec_size: u32,
    pub prog_flags: u32,
}

/// First log buffer for a failed load; grows ×4 on ENOSPC up to [`LOG_MAX`].
const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = 16 * 1024 * 1024;

/// The kernel NUL-terminates the log but may leave stale text after the NUL when it rewinds.
fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim_end().to_string()
}

/// Runs a load without a log and, when that fails, again with a growing log buffer, so the
/// common case costs no log formatting and failures come with the kernel's explanation.
/// `attempt(None)` loads without a log; `attempt(Some(buf))` with level 1 into `buf`, returning
/// the result and the size the kernel said it needed (0 if unknown).
fn load_with_log(
    call: &'static str,
    subject: String,
    mut attempt: impl FnMut(Option<&mut [u8]>) -> (io::Result<c_long>, u32),
) -> Result<OwnedFd, BpfError> {
    let first = match attempt(None).0 {
        Ok(ret) => return Ok(owned_fd(ret)),
        Err(e) => e,
    };
    let mut size = LOG_START;
    loop {
        let mut buf = vec![0u8; size];
        let (res, true_size) = attempt(Some(&mut buf));
        match res {
            Ok(ret) => {
                log::debug!(
                    "{subject}: {call} failed without a log ({first}) but succeeded with one"
                );
                return Ok(owned_fd(ret));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && size < LOG_MAX => {
                size = (size * 4).max(true_size as usize + 1).min(LOG_MAX);
            }
            Err(_) => {
                let mut err = BpfError::new(call, subject, first);
                err.verifier_log = Some(log_text(&buf));
                return Err(err);
            }
        }
    }
}

/// Loads a program. On failure the error carries the original errno and the verifier log.
///
/// # Errors
/// Bad arguments (instructions not a multiple of 8 bytes, records not matching their size), or
/// `BPF_PROG_LOAD` failed (EACCES/EINVAL from the verifier, EPERM, E2BIG, ...).
pub fn prog_load(p: &ProgLoad<'_>) -> Result<OwnedFd, BpfError> {
    const CALL: &str = "BPF_PROG_LOAD";
    let subject = format!("program '{}'", p.name);
    if p.insns.is_empty() || !p.insns.len().is_multiple_of(8) {
        return Err(BpfError::invalid(
            CALL,
            subject,
            format!(
                "{} bytes of instructions is not a positive multiple of 8",
                p.insns.len()
            ),
        ));
    }
    let records = |what: &str, bytes: &[u8], rec: u32| -> Result<u32, BpfError> {
        if bytes.is_empty() {
            return Ok(0);
        }
        if rec == 0 || !bytes.len().is_multiple_of(rec as usize) {
            return Err(BpfError::invalid(
                CALL,
                &subject,
                format!(
                    "{what}: {} bytes is not a multiple of the record size {rec}",
                    bytes.len()
                ),
            ));
        }
        Ok((bytes.len() / rec as usize) as u32)
    };
    let func_info_cnt = records("func_info", p.func_info, p.func_info_rec_size)?;
    let line_info_cnt = records("line_info", p.line_info, p.line_info_rec_size)?;
    let base = ProgLoadAttr {
        prog_type: p.prog_type,
        insn_cnt: (p.insns.len() / 8) as u32,
        insns: ptr(p.insns.as_ptr()),
        license: ptr(p.license.as_ptr()),
        kern_version: p.kern_version,
        prog_flags: p.prog_flags,
        prog_name: obj_name(p.name),
        expected_attach_type: p.expected_attach_type.unwrap_or(0),
        prog_btf_fd: p.btf_fd.map_or(0, raw),
        func_info_rec_size: if func_info_cnt > 0 {
            p.func_info_rec_size
        } else {
            0
        },
        func_info: if func_info_cnt > 0 {
            ptr(p.func_info.as_ptr())
        } else {
            0
        },
        func_info_cnt,
        line_info_rec_size: if line_info_cnt > 0 {
            p.line_info_rec_size
        } else {
            0
        },
        line_info: if line_info_cnt > 0 {
            ptr(p.line_info.as_ptr())
        } else {
            0
        },
        line_info_cnt,
        ..Default::default()
    };
    load_with_log(CALL, subject, |log| {
        let mut attr = base;
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = ptr(buf.as_mut_ptr());
        }
        // The verifier may give up with EAGAIN when interrupted; retrying is what it asks for.
        let mut tries = 0;
        loop {
            // SAFETY: insns, license (NUL-terminated), func_info and line_info are live slices
            // whose lengths match the counts in the attr; the log buffer (if any) is live and
            // log_size bytes long.
            let res = unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) };
            match res {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 5 => tries += 1,
                _ => return (res, attr.log_true_size),
            }
        }
    })
}

/// Loads raw BTF (already sanitised for this kernel). On failure the error carries the BTF log.
///
/// # Errors
/// `BPF_BTF_LOAD` failed (EINVAL for malformed BTF, EPERM).
pub fn btf_load(bytes: &[u8]) -> Result<OwnedFd, BpfError> {
    load_with_log("BPF_BTF_LOAD", "BTF".to_string(), |log| {
        let mut attr = BtfLoadAttr {
            btf: ptr(bytes.as_ptr()),
            btf_size: bytes.len() as u32,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.btf_log_level = 1;
            attr.btf_log_size = buf.len() as u32;
            attr.btf_log_buf = ptr(buf.as_mut_ptr());
        }
        // SAFETY: bytes is a live buffer of btf_size bytes; the log buffer (if any) is live and
        // btf_log_size bytes long.
        let res = unsafe { sys_bpf(BPF_BTF_LOAD, &mut attr) };
        (res, attr.btf_log_true_size)
    })
}

// ---------------------------------------------------------------------------------------------
// bpffs pins

/// Pins a map, program or link at `path` (on bpffs).
///
/// # Errors
/// `BPF_OBJ_PIN` failed (EEXIST when the path exists, EPERM when not on bpffs, ENOENT for a
/// missing parent).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), BpfError> {
    const CALL: &str = "BPF_OBJ_PIN";
    let c = path_cstring(CALL, path)?;
    let mut attr = ObjAttr {
        pathname: ptr(c.as_ptr()),
        bpf_fd: raw(fd),
        ..Default::default()
    };
    // SAFETY: pathname points to a live NUL-terminated string.
    unsafe { sys_bpf(BPF_OBJ_PIN, &mut attr) }
        .map(drop)
        .map_err(|e| BpfError::new(CALL, format!("pin {}", path.display()), e))
}

/// Opens a pinned object. A missing pin keeps ENOENT in [`BpfError::errno`].
///
/// # Errors
/// `BPF_OBJ_GET` failed (ENOENT, EACCES, EPERM when the path is not on bpffs).
pub fn obj_get(path: &Path) -> Result<OwnedFd, BpfError> {
    const CALL: &str = "BPF_OBJ_GET";
    let c = path_cstring(CALL, path)?;
    let mut attr = ObjAttr {
        pathname: ptr(c.as_ptr()),
        ..Default::default()
    };
    // SAFETY: pathname points to a live NUL-terminated string.
    unsafe { sys_bpf(BPF_OBJ_GET, &mut attr) }
        .map(owned_fd)
        .map_err(|e| BpfError::new(CALL, format!("pin {}", path.display()), e))
}

// ---------------------------------------------------------------------------------------------
// Links and queries

/// What a link or query is about.
#[derive(Debug, Clone, Copy)]
pub enum LinkTarget<'a> {
    /// A cgroup directory (cgroup links) or another target file descriptor.
    Fd(BorrowedFd<'a>),
    /// A network interface in the calling thread's namespace (XDP, TCX).
    Ifindex(u32),
}

impl LinkTarget<'_> {
    fn raw(&self) -> u32 {
        match self {
            LinkTarget::Fd(fd) => raw(*fd),
            LinkTarget::Ifindex(i) => *i,
        }
    }

    fn describe(&self) -> String {
        match self {
            LinkTarget::Fd(fd) => format!("target fd {}", fd.as_raw_fd()),
            LinkTarget::Ifindex(i) => format!("ifindex {i}"),
        }
    }
}

/// Creates a link (XDP, TCX, cgroup, ...). For TCX, `flags` may hold `BPF_F_BEFORE`/`BPF_F_AFTER`
/// relative to nothing (= first/last); the relative fd/id and expected revision are 0.
///
/// # Errors
/// `BPF_LINK_CREATE` failed (EINVAL for a wrong attach type or missing XDP device, ENODEV for a
/// missing TCX device, EBUSY when XDP is already attached, EBADF for a non-cgroup fd).
pub fn link_create(
    prog_fd: BorrowedFd<'_>,
    target: LinkTarget<'_>,
    attach_type: u32,
    flags: u32,
) -> Result<OwnedFd, BpfError> {
    let mut attr = LinkCreateAttr {
        prog_fd: raw(prog_fd),
        target: target.raw(),
        attach_type,
        flags,
        ..Default::default()
    };
    // SAFETY: the attr holds no pointers.
    unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) }
        .map(owned_fd)
        .map_err(|e| {
            BpfError::new(
                "BPF_LINK_CREATE",
                format!("{} attach type {attach_type}", target.describe()),
                e,
            )
        })
}

/// Swaps the program of a link atomically; with `old_prog_fd` only if that is still the one
/// attached (`BPF_F_REPLACE`).
///
/// # Errors
/// `BPF_LINK_UPDATE` failed (EPERM when `old_prog_fd` is not the attached program, ENOLINK when
/// the link was detached, EINVAL for a program of the wrong type).
pub fn link_update(
    link_fd: BorrowedFd<'_>,
    new_prog_fd: BorrowedFd<'_>,
    old_prog_fd: Option<BorrowedFd<'_>>,
) -> Result<(), BpfError> {
    let mut attr = LinkUpdateAttr {
        link_fd: raw(link_fd),
        new_prog_fd: raw(new_prog_fd),
        flags: if old_prog_fd.is_some() {
            BPF_F_REPLACE
        } else {
            0
        },
        old_prog_fd: old_prog_fd.map_or(0, raw),
    };
    // SAFETY: the attr holds no pointers.
    unsafe { sys_bpf(BPF_LINK_UPDATE, &mut attr) }
        .map(drop)
        .map_err(|e| BpfError::new("BPF_LINK_UPDATE", "", e))
}

/// Detaches a link from its target while fds and pins of it stay valid (defunct).
///
/// # Errors
/// `BPF_LINK_DETACH` failed (EOPNOTSUPP for link kinds that can't be detached).
pub fn link_detach(link_fd: BorrowedFd<'_>) -> Result<(), BpfError> {
    let mut attr = SingleU32Attr {
        value: raw(link_fd),
    };
    // SAFETY: the attr holds no pointers.
    unsafe { sys_bpf(BPF_LINK_DETACH, &mut attr) }
        .map(drop)
        .map_err(|e| BpfError::new("BPF_LINK_DETACH", "", e))
}

/// Programs attached at a hook, from `BPF_PROG_QUERY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgQuery {
    /// In run order.
    pub prog_ids: Vec<u32>,
    /// Cgroup hooks: the attach flags of the hook (e.g. `BPF_F_ALLOW_MULTI`).
    pub attach_flags: u32,
    /// TCX (and cgroups on new kernels): bumped on every change.
    pub revision: u64,
    /// Ifindex targets (TCX) only: the link id of each entry of `prog_ids` (0 = not a link);
    /// empty for other targets.
    pub link_ids: Vec<u32>,
}

/// Lists the programs attached at a hook: a cgroup fd with a cgroup attach type, or an ifindex
/// with `BPF_TCX_INGRESS`/`BPF_TCX_EGRESS` (XDP is not queryable this way: use netlink).
///
/// # Errors
/// `BPF_PROG_QUERY` failed (EINVAL for an unsupported attach type, ENODEV for a missing device).
pub fn prog_query(
    target: LinkTarget<'_>,
    attach_type: u32,
    query_flags: u32,
) -> Result<ProgQuery, BpfError> {
    const CALL: &str = "BPF_PROG_QUERY";
    let want_links = matches!(target, LinkTarget::Ifindex(_));
    let subject = || format!("{} attach type {attach_type}", target.describe());
    let mut cap: u32 = 0;
    // The count can grow between calls; retry a few times with the size the kernel reports.
    for _ in 0..8 {
        let mut ids = vec![0u32; cap as usize];
        let mut links = vec![0u32; if want_links { cap as usize } else { 0 }];
        let mut attr = QueryAttr {
            target: target.raw(),
            attach_type,
            query_flags,
            prog_ids: if cap > 0 { ptr(ids.as_mut_ptr()) } else { 0 },
            count: cap,
            link_ids: if cap > 0 && want_links {
                ptr(links.as_mut_ptr())
            } else {
                0
            },
            ..Default::default()
        };
        // SAFETY: prog_ids and link_ids (when non-NULL) are live arrays of `count` u32s.
        match unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) if attr.count <= cap => {
                ids.truncate(attr.count as usize);
                links.truncate(if want_links { attr.count as usize } else { 0 });
                return Ok(ProgQuery {
                    prog_ids: ids,
                    attach_flags: attr.attach_flags,
                    revision: attr.revision,
                    link_ids: links,
                });
            }
            Ok(_) => cap = attr.count,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                cap = attr.count.max(cap * 2).max(1)
            }
            Err(e) => return Err(BpfError::new(CALL, subject(), e)),
        }
    }
    Err(BpfError::new(
        CALL,
        subject(),
        io::Error::other("the number of attached programs kept changing"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Object info

/// Fills an info struct for `fd`.
///
/// # Safety
/// `T` must be one of the `*InfoRaw` structs, and every pointer field in `info` must be 0 or
/// point to a live array of the length its count field gives.
unsafe fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T, what: &str) -> Result<(), BpfError> {
    let mut attr = InfoAttr {
        bpf_fd: raw(fd),
        info_len: size_of::<T>() as u32,
        info: ptr(info as *mut T),
    };
    // SAFETY: info is a live repr(C) struct of info_len bytes; its own pointers are valid per the
    // caller's contract.
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }
        .map(drop)
        .map_err(|e| {
            BpfError::new(
                "BPF_OBJ_GET_INFO_BY_FD",
                format!("{what} fd {}", fd.as_raw_fd()),
                e,
            )
        })
}

/// The prefix of `struct bpf_prog_info` weir reads; unused stretches are reserved bytes.
#[repr(C)]
#[derive(Default)]
struct ProgInfoRaw {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    _insn_ptrs: [u64; 2],
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; BPF_OBJ_NAME_LEN],
    ifindex: u32,
    gpl_compatible: u32,
    _rsv1: [u64; 5],
    btf_id: u32,
    _rsv2: [u32; 15],
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
    verified_insns: u32,
    _rsv3: [u32; 3],
}

const _: () = {
    assert!(offset_of!(ProgInfoRaw, load_time) == 40);
    assert!(offset_of!(ProgInfoRaw, map_ids) == 56);
    assert!(offset_of!(ProgInfoRaw, name) == 64);
    assert!(offset_of!(ProgInfoRaw, btf_id) == 128);
    assert!(offset_of!(ProgInfoRaw, run_time_ns) == 192);
    assert!(offset_of!(ProgInfoRaw, verified_insns) == 216);
    assert!(size_of::<ProgInfoRaw>() == 232);
};

/// What the kernel says about a loaded program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgInfo {
    pub id: u32,
    pub prog_type: u32,
    /// Name as stored by the kernel (at most 15 bytes).
    pub name: String,
    /// Hash of the translated instructions (identical programs have identical tags).
    pub tag: [u8; 8],
    pub btf_id: u32,
    pub map_ids: Vec<u32>,
    /// Only counted while stats are enabled (see [`enable_stats`]).
    pub run_time_ns: u64,
    pub run_cnt: u64,
    /// Boot-time clock (ns since boot) of the load.
    pub load_time: u64,
    pub created_by_uid: u32,
    pub jited_len: u32,
    pub xlated_len: u32,
    pub verified_insns: u32,
    pub gpl_compatible: bool,
}

/// Reads a program's info, including the ids of the maps it uses.
///
/// # Errors
/// `BPF_OBJ_GET_INFO_BY_FD` failed (EINVAL when `fd` is not a bpf object).
pub fn prog_info(fd: BorrowedFd<'_>) -> Result<ProgInfo, BpfError> {
    let mut raw_info = ProgInfoRaw::default();
    // SAFETY: all pointer fields are 0.
    unsafe { obj_info(fd, &mut raw_info, "program")? };
    let mut map_ids = Vec::new();
    if raw_info.nr_map_ids > 0 {
        // Second call for the variable-length part, now that we know its size.
        map_ids = vec![0u32; raw_info.nr_map_ids as usize];
        let mut again = ProgInfoRaw {
            nr_map_ids: map_ids.len() as u32,
            map_ids: ptr(map_ids.as_mut_ptr()),
            ..Default::default()
        };
        // SAFETY: map_ids points to a live array of nr_map_ids u32s; other pointers are 0.
        unsafe { obj_info(fd, &mut again, "program")? };
        map_ids.truncate(again.nr_map_ids.min(map_ids.len() as u32) as usize);
    }
    Ok(ProgInfo {
        id: raw_info.id,
        prog_type: raw_info.prog_type,
        name: c_name(&raw_info.name),
        tag: raw_info.tag,
        btf_id: raw_info.btf_id,
        map_ids,
        run_time_ns: raw_info.run_time_ns,
        run_cnt: raw_info.run_cnt,
        load_time: raw_info.load_time,
        created_by_uid: raw_info.created_by_uid,
        jited_len: raw_info.jited_prog_len,
        xlated_len: raw_info.xlated_prog_len,
        verified_insns: raw_info.verified_insns,
        gpl_compatible: raw_info.gpl_compatible & 1 != 0,
    })
}

/// The prefix of `struct bpf_map_info` weir reads.
#[repr(C)]
#[derive(Default)]
struct MapInfoRaw {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; BPF_OBJ_NAME_LEN],
    ifindex: u32,
    btf_vmlinux_value_type_id: u32,
    netns_dev: u64,
    netns_ino: u64,
    btf_id: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_id: u32,
    map_extra: u64,
}

const _: () = {
    assert!(offset_of!(MapInfoRaw, name) == 24);
    assert!(offset_of!(MapInfoRaw, btf_id) == 64);
    assert!(offset_of!(MapInfoRaw, map_extra) == 80);
    assert!(size_of::<MapInfoRaw>() == 88);
};

/// What the kernel says about a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapInfo {
    pub id: u32,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    /// Name as stored by the kernel (at most 15 bytes).
    pub name: String,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub map_extra: u64,
}

/// Reads a map's info.
///
/// # Errors
/// `BPF_OBJ_GET_INFO_BY_FD` failed (EINVAL when `fd` is not a bpf object).
pub fn map_info(fd: BorrowedFd<'_>) -> Result<MapInfo, BpfError> {
    let mut r = MapInfoRaw::default();
    // SAFETY: MapInfoRaw has no pointer fields.
    unsafe { obj_info(fd, &mut r, "map")? };
    Ok(MapInfo {
        id: r.id,
        map_type: r.map_type,
        key_size: r.key_size,
        value_size: r.value_size,
        max_entries: r.max_entries,
        flags: r.map_flags,
        name: c_name(&r.name),
        btf_id: r.btf_id,
        btf_key_type_id: r.btf_key_type_id,
        btf_value_type_id: r.btf_value_type_id,
        map_extra: r.map_extra,
    })
}

/// `struct bpf_link_info`: a header and a per-type union starting at offset 16.
#[repr(C)]
#[derive(Default)]
struct LinkInfoRaw {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    data: [u64; 6],
}

const _: () = assert!(size_of::<LinkInfoRaw>() == 64);

impl LinkInfoRaw {
    /// A u32 at `off` bytes into the union.
    fn u32_at(&self, off: usize) -> u32 {
        let word = self.data[off / 8].to_ne_bytes();
        let half = off % 8;
        u32::from_ne_bytes([word[half], word[half + 1], word[half + 2], word[half + 3]])
    }
}

/// What a link is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkInfoTarget {
    /// Ifindex 0 once the device is gone (the link is then defunct).
    Xdp {
        ifindex: u32,
    },
    Tcx {
        ifindex: u32,
        attach_type: u32,
    },
    Netkit {
        ifindex: u32,
        attach_type: u32,
    },
    Cgroup {
        cgroup_id: u64,
        attach_type: u32,
    },
    Netns {
        netns_ino: u32,
        attach_type: u32,
    },
    Other,
}

/// What the kernel says about a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: u32,
    /// `BPF_LINK_TYPE_*`.
    pub link_type: u32,
    pub prog_id: u32,
    pub target: LinkInfoTarget,
}

/// Reads a link's info.
///
/// # Errors
/// `BPF_OBJ_GET_INFO_BY_FD` failed (EINVAL when `fd` is not a bpf object).
pub fn link_info(fd: BorrowedFd<'_>) -> Result<LinkInfo, BpfError> {
    let mut r = LinkInfoRaw::default();
    // SAFETY: all of the union is 0, so the kernel writes through no pointer in it.
    unsafe { obj_info(fd, &mut r, "link")? };
    // Union layouts: xdp {ifindex@0}; tcx/netkit/netns {u32@0, attach_type@4};
    // cgroup {cgroup_id u64@0, attach_type@8}.
    let target = match r.link_type {
        BPF_LINK_TYPE_XDP => LinkInfoTarget::Xdp {
            ifindex: r.u32_at(0),
        },
        BPF_LINK_TYPE_TCX => LinkInfoTarget::Tcx {
            ifindex: r.u32_at(0),
            attach_type: r.u32_at(4),
        },
        BPF_LINK_TYPE_NETKIT => LinkInfoTarget::Netkit {
            ifindex: r.u32_at(0),
            attach_type: r.u32_at(4),
        },
        BPF_LINK_TYPE_CGROUP => LinkInfoTarget::Cgroup {
            cgroup_id: r.data[0],
            attach_type: r.u32_at(8),
        },
        BPF_LINK_TYPE_NETNS => LinkInfoTarget::Netns {
            netns_ino: r.u32_at(0),
            attach_type: r.u32_at(4),
        },
        _ => LinkInfoTarget::Other,
    };
    Ok(LinkInfo {
        id: r.id,
        link_type: r.link_type,
        prog_id: r.prog_id,
        target,
    })
}

// ---------------------------------------------------------------------------------------------
// Ids

fn fd_by_id(cmd: u32, call: &'static str, what: &str, id: u32) -> Result<OwnedFd, BpfError> {
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    // SAFETY: the attr holds no pointers.
    unsafe { sys_bpf(cmd, &mut attr) }
        .map(owned_fd)
        .map_err(|e| BpfError::new(call, format!("{what} id {id}"), e))
}

/// Opens a program by id.
///
/// # Errors
/// ENOENT when no such program exists.
pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd, BpfError> {
    fd_by_id(
        BPF_PROG_GET_FD_BY_ID,
        "BPF_PROG_GET_FD_BY_ID",
        "program",
        id,
    )
}

/// Opens a map by id.
///
/// # Errors
/// ENOENT when no such map exists.
pub fn map_fd_by_id(id: u32) -> Result<OwnedFd, BpfError> {
    fd_by_id(BPF_MAP_GET_FD_BY_ID, "BPF_MAP_GET_FD_BY_ID", "map", id)
}

/// Opens a link by id.
///
/// # Errors
/// ENOENT when no such link exists.
pub fn link_fd_by_id(id: u32) -> Result<OwnedFd, BpfError> {
    fd_by_id(BPF_LINK_GET_FD_BY_ID, "BPF_LINK_GET_FD_BY_ID", "link", id)
}

/// Opens a BTF object by id.
///
/// # Errors
/// ENOENT when no such BTF object exists.
pub fn btf_fd_by_id(id: u32) -> Result<OwnedFd, BpfError> {
    fd_by_id(BPF_BTF_GET_FD_BY_ID, "BPF_BTF_GET_FD_BY_ID", "BTF", id)
}

fn next_id(cmd: u32, call: &'static str, start: u32) -> Result<Option<u32>, BpfError> {
    let mut attr = IdAttr {
        id: start,
        ..Default::default()
    };
    // SAFETY: the attr holds no pointers.
    match unsafe { sys_bpf(cmd, &mut attr) } {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(BpfError::new(call, format!("after id {start}"), e)),
    }
}

/// The smallest program id above `start` (`None` when there is none).
///
/// # Errors
/// `BPF_PROG_GET_NEXT_ID` failed with anything but ENOENT (EPERM without CAP_SYS_ADMIN).
pub fn prog_next_id(start: u32) -> Result<Option<u32>, BpfError> {
    next_id(BPF_PROG_GET_NEXT_ID, "BPF_PROG_GET_NEXT_ID", start)
}

/// The smallest map id above `start` (`None` when there is none).
///
/// # Errors
/// `BPF_MAP_GET_NEXT_ID` failed with anything but ENOENT.
pub fn map_next_id(start: u32) -> Result<Option<u32>, BpfError> {
    next_id(BPF_MAP_GET_NEXT_ID, "BPF_MAP_GET_NEXT_ID", start)
}

/// The smallest link id above `start` (`None` when there is none).
///
/// # Errors
/// `BPF_LINK_GET_NEXT_ID` failed with anything but ENOENT.
pub fn link_next_id(start: u32) -> Result<Option<u32>, BpfError> {
    next_id(BPF_LINK_GET_NEXT_ID, "BPF_LINK_GET_NEXT_ID", start)
}

// ---------------------------------------------------------------------------------------------
// Test runs and stats

/// Input of `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestRun<'a> {
    /// The packet.
    pub data_in: &'a [u8],
    /// Room for the output packet (0: don't copy it out).
    pub data_out_size: u32,
    /// Context (e.g. `struct xdp_md` to choose the ingress ifindex).
    pub ctx_in: Option<&'a [u8]>,
    pub repeat: u32,
    /// `BPF_F_TEST_RUN_ON_CPU`, `BPF_F_TEST_XDP_LIVE_FRAMES`.
    pub flags: u32,
    /// Live-frames mode only.
    pub batch_size: u32,
}

/// Output of `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRunResult {
    pub retval: u32,
    /// Average per run.
    pub duration_ns: u32,
    /// The output packet (empty when `data_out_size` was 0).
    pub data_out: Vec<u8>,
}

/// Runs a program on a test packet in the kernel (XDP, SCHED_CLS, ...).
///
/// # Errors
/// `BPF_PROG_TEST_RUN` failed (ENOTSUPP/EINVAL for program types that can't be test-run, ENOSPC
/// when `data_out_size` is too small for the output packet).
pub fn prog_test_run(prog_fd: BorrowedFd<'_>, t: &TestRun<'_>) -> Result<TestRunResult, BpfError> {
    let mut out = vec![0u8; t.data_out_size as usize];
    let mut attr = TestRunAttr {
        prog_fd: raw(prog_fd),
        data_size_in: t.data_in.len() as u32,
        data_size_out: t.data_out_size,
        data_in: ptr(t.data_in.as_ptr()),
        data_out: if out.is_empty() {
            0
        } else {
            ptr(out.as_mut_ptr())
        },
        repeat: t.repeat,
        ctx_size_in: t.ctx_in.map_or(0, |c| c.len() as u32),
        ctx_in: t.ctx_in.map_or(0, |c| ptr(c.as_ptr())),
        flags: t.flags,
        batch_size: t.batch_size,
        ..Default::default()
    };
    // SAFETY: data_in and ctx_in are live buffers of the given sizes; data_out is NULL or a live
    // buffer of data_size_out bytes, which bounds what the kernel writes.
    unsafe { sys_bpf(BPF_PROG_TEST_RUN, &mut attr) }.map_err(|e| {
        BpfError::new(
            "BPF_PROG_TEST_RUN",
            format!("program fd {}", prog_fd.as_raw_fd()),
            e,
        )
    })?;
    out.truncate(attr.data_size_out as usize);
    Ok(TestRunResult {
        retval: attr.retval,
        duration_ns: attr.duration,
        data_out: out,
    })
}

/// Turns on run-time statistics (`BPF_STATS_RUN_TIME`) while the returned fd is open.
///
/// # Errors
/// `BPF_ENABLE_STATS` failed (EBUSY/EINVAL for an unknown kind, EPERM).
pub fn enable_stats(kind: u32) -> Result<OwnedFd, BpfError> {
    let mut attr = SingleU32Attr { value: kind };
    // SAFETY: the attr holds no pointers.
    unsafe { sys_bpf(BPF_ENABLE_STATS, &mut attr) }
        .map(owned_fd)
        .map_err(|e| BpfError::new("BPF_ENABLE_STATS", format!("stats kind {kind}"), e))
}

// ---------------------------------------------------------------------------------------------
// CPUs

/// Counts the CPUs in a kernel CPU list such as `"0-1"` or `"0,2-3\n"`.
/// Returns `None` for malformed text.
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let v = part.trim().parse::<u32>().ok()?;
                (v, v)
            }
        };
        if hi < lo {
            return None;
        }
        n = n.checked_add(hi - lo + 1)?;
    }
    Some(n)
}

/// Number of possible CPUs: the number of slots in a per-CPU map value. Cached after the
/// first success.
///
/// # Errors
/// `/sys/devices/system/cpu/possible` could not be read or parsed.
pub fn possible_cpus() -> Result<u32, io::Error> {
    static CACHE: OnceLock<u32> = OnceLock::new();
    if let Some(n) = CACHE.get() {
        return Ok(*n);
    }
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(PATH)?;
    let n = parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{PATH}: cannot parse {:?}", text.trim()),
        )
    })?;
    Ok(*CACHE.get_or_init(|| n))
}

// ---------------------------------------------------------------------------------------------
// Feature probes

/// What this kernel supports, probed once per process (see [`features`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `BPF_LINK_CREATE` with `BPF_XDP` (5.9+).
    pub xdp_link: bool,
    /// TCX links (6.6+).
    pub tcx: bool,
    /// Cgroup links (5.7+).
    pub cgroup_link: bool,
    /// `BPF_BTF_LOAD` accepts BTF.
    pub btf: bool,
    /// `BPF_MAP_TYPE_RINGBUF` (5.8+).
    pub ringbuf: bool,
}

/// The kernel's features, probed on first use and cached for the process.
///
/// The probes touch no real interface or cgroup:
/// - `xdp_link`: on a scratch thread that moved into a fresh, private network namespace, attach
///   a trivial XDP program by link to that namespace's own `lo` and drop it again. A missing
///   device and an unknown attach type both give EINVAL, so only a real attach tells.
///   Without the privilege for a namespace we fall back to `tcx` (TCX came after XDP links).
/// - `tcx`: `BPF_LINK_CREATE` of a SCHED_CLS program with `BPF_TCX_INGRESS` on ifindex 0: a
///   kernel with TCX looks the device up and answers ENODEV; one without rejects the attach type
///   with EINVAL.
/// - `cgroup_link`: `BPF_LINK_CREATE` of a sock_addr program on the fd of `/` (not a cgroup): a
///   kernel with cgroup links answers EBADF from its cgroup lookup; without, EINVAL.
/// - `btf`: load a BTF blob holding one `int`.
/// - `ringbuf`: create a 64 KiB ring buffer map.
pub fn features() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let f = probe_features(probe_xdp_link_in_private_netns);
        log::debug!("bpf features: {f:?}");
        f
    })
}

/// `r0 = ret; exit`.
fn return_insns(ret: i32) -> [u8; 16] {
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    insns[4..8].copy_from_slice(&ret.to_le_bytes());
    insns[8] = 0x95; // BPF_JMP | BPF_EXIT
    insns
}

/// Loads the smallest program there is, `r0 = ret; exit`, of `prog_type`: feature probes,
/// benchmark floors and tests' stand-ins for other people's programs.
///
/// # Errors
/// Returns the `BPF_PROG_LOAD` error (with the verifier log) when the kernel refuses it.
pub fn load_return_program(
    name: &str,
    prog_type: u32,
    expected_attach_type: Option<u32>,
    ret: i32,
) -> Result<OwnedFd, BpfError> {
    let insns = return_insns(ret);
    prog_load(&ProgLoad {
        name,
        prog_type,
        expected_attach_type,
        insns: &insns,
        license: c"GPL",
        kern_version: 0,
        btf_fd: None,
        func_info: &[],
        func_info_rec_size: 0,
        line_info: &[],
        line_info_rec_size: 0,
        prog_flags: 0,
    })
}

fn probe_prog(prog_type: u32, expected_attach_type: Option<u32>, ret: i32) -> Option<OwnedFd> {
    load_return_program("weir_probe", prog_type, expected_attach_type, ret)
        .map_err(|e| log::debug!("feature probe: {e}"))
        .ok()
}

/// A minimal BTF blob: header + one 32-bit signed `int`.
fn probe_btf_blob() -> Vec<u8> {
    let strings: &[u8] = b"\0int\0";
    let mut types = Vec::new();
    types.extend_from_slice(&1u32.to_le_bytes()); // name_off -> "int"
    types.extend_from_slice(&(1u32 << 24).to_le_bytes()); // info: kind INT, vlen 0
    types.extend_from_slice(&4u32.to_le_bytes()); // size
    types.extend_from_slice(&((1u32 << 24) | 32).to_le_bytes()); // encoding SIGNED, 32 bits
    let mut blob = Vec::new();
    blob.extend_from_slice(&0xeb9fu16.to_le_bytes()); // magic
    blob.push(1); // version
    blob.push(0); // flags
    blob.extend_from_slice(&24u32.to_le_bytes()); // hdr_len
    blob.extend_from_slice(&0u32.to_le_bytes()); // type_off
    blob.extend_from_slice(&(types.len() as u32).to_le_bytes()); // type_len
    blob.extend_from_slice(&(types.len() as u32).to_le_bytes()); // str_off
    blob.extend_from_slice(&(strings.len() as u32).to_le_bytes()); // str_len
    blob.extend_from_slice(&types);
    blob.extend_from_slice(strings);
    blob
}

fn probe_xdp_link_in_private_netns() -> io::Result<bool> {
    let prog = probe_prog(BPF_PROG_TYPE_XDP, Some(BPF_XDP), XDP_PASS as i32)
        .ok_or_else(|| io::Error::other("cannot load an XDP program"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare only changes the calling (scratch) thread's network namespace,
            // which dies with the thread; no memory is involved.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // Loopback is always ifindex 1 in a network namespace.
            match link_create(prog.as_fd(), LinkTarget::Ifindex(1), BPF_XDP, 0) {
                Ok(_link) => Ok(true),
                Err(e) => {
                    log::debug!("feature probe: {e}");
                    Ok(false)
                }
            }
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")))
    })
}

/// Whether a link probe's answer shows support: a link (which the bogus targets make
/// impossible, but would mean support), or `supported_errno`, which a kernel gives only after it
/// accepted the attach type; any other error means no support.
fn link_probe_verdict(
    res: Result<OwnedFd, BpfError>,
    supported_errno: i32,
    errno_name: &str,
) -> bool {
    match res {
        Ok(_) => true,
        Err(e) => {
            log::debug!("feature probe ({errno_name} = supported): {e}");
            e.errno() == Some(supported_errno)
        }
    }
}

/// The XDP link probe's answer, or, when it could not run (no private netns), the TCX answer:
/// TCX came after XDP links, so a kernel with TCX has them.
fn xdp_link_verdict(probe: io::Result<bool>, tcx: bool) -> bool {
    match probe {
        Ok(v) => v,
        Err(e) => {
            log::debug!(
                "feature probe: no private netns for the XDP link probe ({e}); inferring from TCX"
            );
            tcx
        }
    }
}

/// Runs the probes; `xdp_probe` is the XDP link probe (a parameter so unit tests can run the
/// rest against a fake `bpf(2)` without a network namespace).
fn probe_features(xdp_probe: impl FnOnce() -> io::Result<bool>) -> Features {
    let btf = btf_load(&probe_btf_blob())
        .map_err(|e| log::debug!("feature probe: {e}"))
        .is_ok();
    let ringbuf = map_create(&MapCreate {
        name: "weir_probe_rb",
        map_type: BPF_MAP_TYPE_RINGBUF,
        key_size: 0,
        value_size: 0,
        max_entries: 64 * 1024,
        flags: 0,
        btf_fd: None,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        map_extra: 0,
    })
    .map_err(|e| log::debug!("feature probe: {e}"))
    .is_ok();

    let tcx = probe_prog(BPF_PROG_TYPE_SCHED_CLS, None, TC_ACT_UNSPEC).is_some_and(|prog| {
        link_probe_verdict(
            link_create(prog.as_fd(), LinkTarget::Ifindex(0), BPF_TCX_INGRESS, 0),
            libc::ENODEV,
            "ENODEV",
        )
    });

    let cgroup_link = probe_prog(
        BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        Some(BPF_CGROUP_INET4_CONNECT),
        1,
    )
    .is_some_and(|prog| {
        let Ok(root) = std::fs::File::open("/") else {
            return false;
        };
        link_probe_verdict(
            link_create(
                prog.as_fd(),
                LinkTarget::Fd(root.as_fd()),
                BPF_CGROUP_INET4_CONNECT,
                0,
            ),
            libc::EBADF,
            "EBADF",
        )
    });

    // TCX (6.6) came years after XDP links (5.9): a kernel with TCX has them, and the only XDP
    // link probe that works (attach in a private namespace) costs tens of milliseconds of driver
    // reconfiguration and RCU waits. So it runs only on kernels without TCX.
    let xdp_link = if tcx {
        true
    } else {
        xdp_link_verdict(xdp_probe(), tcx)
    };
    Features {
        xdp_link,
        tcx,
        cgroup_link,
        btf,
        ringbuf,
    }
}

// ---------------------------------------------------------------------------------------------
// The fake syscall layer's view of the attrs (unit tests only)

/// The user memory an attr points to, read with the same layouts the wrappers fill, so the fake
/// can check every access it makes against what the wrapper handed out.
#[cfg(test)]
fn fake_mem(cmd: u32, a: &[u8]) -> super::fake::UserMem {
    use super::fake::{LogFields, UserMem};
    let u32_at = |off: usize| u32::from_ne_bytes(a[off..off + 4].try_into().expect("u32"));
    let u64_at = |off: usize| u64::from_ne_bytes(a[off..off + 8].try_into().expect("u64"));
    let len = |cnt: u32, size: u32| cnt as usize * size as usize;
    let mut m = UserMem::default();
    match cmd {
        BPF_PROG_LOAD => {
            type A = ProgLoadAttr;
            let insn_cnt = u32_at(offset_of!(A, insn_cnt));
            UserMem::add(&mut m.read, u64_at(offset_of!(A, insns)), len(insn_cnt, 8));
            for (p, cnt, rec) in [
                (
                    offset_of!(A, func_info),
                    offset_of!(A, func_info_cnt),
                    offset_of!(A, func_info_rec_size),
                ),
                (
                    offset_of!(A, line_info),
                    offset_of!(A, line_info_cnt),
                    offset_of!(A, line_info_rec_size),
                ),
            ] {
                UserMem::add(&mut m.read, u64_at(p), len(u32_at(cnt), u32_at(rec)));
            }
            let license = u64_at(offset_of!(A, license));
            if license != 0 {
                m.strings.push(license);
            }
            let log = LogFields {
                level: u32_at(offset_of!(A, log_level)),
                buf: u64_at(offset_of!(A, log_buf)),
                size: u32_at(offset_of!(A, log_size)) as usize,
                true_size_off: offset_of!(A, log_true_size),
            };
            UserMem::add(&mut m.write, log.buf, log.size);
            m.log = Some(log);
        }
        BPF_BTF_LOAD => {
            type A = BtfLoadAttr;
            let size = u32_at(offset_of!(A, btf_size));
            UserMem::add(&mut m.read, u64_at(offset_of!(A, btf)), size as usize);
            let log = LogFields {
                level: u32_at(offset_of!(A, btf_log_level)),
                buf: u64_at(offset_of!(A, btf_log_buf)),
                size: u32_at(offset_of!(A, btf_log_size)) as usize,
                true_size_off: offset_of!(A, btf_log_true_size),
            };
            UserMem::add(&mut m.write, log.buf, log.size);
            m.log = Some(log);
        }
        BPF_OBJ_PIN | BPF_OBJ_GET => {
            let path = u64_at(offset_of!(ObjAttr, pathname));
            if path != 0 {
                m.strings.push(path);
            }
        }
        BPF_OBJ_GET_INFO_BY_FD => {
            let info = u64_at(offset_of!(InfoAttr, info));
            let info_len = u32_at(offset_of!(InfoAttr, info_len)) as usize;
            UserMem::add(&mut m.write, info, info_len);
            m.info = Some((info, info_len));
        }
        BPF_PROG_QUERY => {
            type A = QueryAttr;
            let count = u32_at(offset_of!(A, count));
            UserMem::add(&mut m.write, u64_at(offset_of!(A, prog_ids)), len(count, 4));
            UserMem::add(&mut m.write, u64_at(offset_of!(A, link_ids)), len(count, 4));
        }
        BPF_PROG_TEST_RUN => {
            type A = TestRunAttr;
            let data_in = u64_at(offset_of!(A, data_in));
            UserMem::add(
                &mut m.read,
                data_in,
                u32_at(offset_of!(A, data_size_in)) as usize,
            );
            let ctx_in = u64_at(offset_of!(A, ctx_in));
            UserMem::add(
                &mut m.read,
                ctx_in,
                u32_at(offset_of!(A, ctx_size_in)) as usize,
            );
            let data_out = u64_at(offset_of!(A, data_out));
            UserMem::add(
                &mut m.write,
                data_out,
                u32_at(offset_of!(A, data_size_out)) as usize,
            );
        }
        BPF_MAP_LOOKUP_ELEM | BPF_MAP_UPDATE_ELEM | BPF_MAP_DELETE_ELEM | BPF_MAP_GET_NEXT_KEY => {
            type A = ElemAttr;
            // Element buffers are sized by the map, not by the attr: use the sizes the wrapper
            // checked them against, or leave them untouchable.
            let Some((key_size, value_len)) = checked_layout(u32_at(offset_of!(A, map_fd))) else {
                return m;
            };
            let key = u64_at(offset_of!(A, key));
            let value = u64_at(offset_of!(A, value_or_next_key));
            UserMem::add(&mut m.read, key, key_size);
            match cmd {
                BPF_MAP_LOOKUP_ELEM => UserMem::add(&mut m.write, value, value_len),
                BPF_MAP_UPDATE_ELEM => UserMem::add(&mut m.read, value, value_len),
                BPF_MAP_GET_NEXT_KEY => UserMem::add(&mut m.write, value, key_size),
                _ => {}
            }
        }
        BPF_MAP_LOOKUP_BATCH | BPF_MAP_UPDATE_BATCH | BPF_MAP_DELETE_BATCH => {
            type A = BatchAttr;
            let Some((key_size, value_len)) = checked_layout(u32_at(offset_of!(A, map_fd))) else {
                return m;
            };
            let count = u32_at(offset_of!(A, count)) as usize;
            let keys = (u64_at(offset_of!(A, keys)), count * key_size);
            let values = (u64_at(offset_of!(A, values)), count * value_len);
            match cmd {
                BPF_MAP_LOOKUP_BATCH => {
                    // Batch tokens: max(key_size, 4) bytes, as `Layout::batch_len`.
                    let token = key_size.max(4);
                    UserMem::add(&mut m.read, u64_at(offset_of!(A, in_batch)), token);
                    UserMem::add(&mut m.write, u64_at(offset_of!(A, out_batch)), token);
                    UserMem::add(&mut m.write, keys.0, keys.1);
                    UserMem::add(&mut m.write, values.0, values.1);
                }
                BPF_MAP_UPDATE_BATCH => {
                    UserMem::add(&mut m.read, keys.0, keys.1);
                    UserMem::add(&mut m.read, values.0, values.1);
                }
                _ => UserMem::add(&mut m.read, keys.0, keys.1),
            }
        }
        _ => {}
    }
    m
}

#[cfg(test)]
thread_local! {
    /// `(map fd, key size, value length)` of the last `layout()` on this thread: the sizes the
    /// element or batch wrapper about to call `sys_bpf` checked its buffers against.
    static CHECKED_LAYOUT: std::cell::Cell<Option<(u32, usize, usize)>> =
        const { std::cell::Cell::new(None) };
}

/// The checked layout for a command on `map_fd`, consumed so that it describes one call only.
#[cfg(test)]
fn checked_layout(map_fd: u32) -> Option<(usize, usize)> {
    CHECKED_LAYOUT
        .with(|c| c.take())
        .filter(|&(fd, _, _)| fd == map_fd)
        .map(|(_, k, v)| (k, v))
}

#[cfg(test)]
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

#[cfg(test)]
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// The `struct bpf_map_info` bytes the kernel would report for `i` (for fakes).
#[cfg(test)]
pub(crate) fn fake_map_info_bytes(i: &MapInfo) -> Vec<u8> {
    type R = MapInfoRaw;
    let mut b = vec![0u8; size_of::<R>()];
    put_u32(&mut b, offset_of!(R, map_type), i.map_type);
    put_u32(&mut b, offset_of!(R, id), i.id);
    put_u32(&mut b, offset_of!(R, key_size), i.key_size);
    put_u32(&mut b, offset_of!(R, value_size), i.value_size);
    put_u32(&mut b, offset_of!(R, max_entries), i.max_entries);
    put_u32(&mut b, offset_of!(R, map_flags), i.flags);
    let name = offset_of!(R, name);
    b[name..name + BPF_OBJ_NAME_LEN].copy_from_slice(&obj_name(&i.name));
    put_u32(&mut b, offset_of!(R, btf_id), i.btf_id);
    put_u32(&mut b, offset_of!(R, btf_key_type_id), i.btf_key_type_id);
    put_u32(
        &mut b,
        offset_of!(R, btf_value_type_id),
        i.btf_value_type_id,
    );
    put_u64(&mut b, offset_of!(R, map_extra), i.map_extra);
    b
}

/// The `struct bpf_prog_info` bytes the kernel would report for `i`, without map ids (for fakes).
#[cfg(test)]
pub(crate) fn fake_prog_info_bytes(i: &ProgInfo) -> Vec<u8> {
    type R = ProgInfoRaw;
    let mut b = vec![0u8; size_of::<R>()];
    put_u32(&mut b, offset_of!(R, prog_type), i.prog_type);
    put_u32(&mut b, offset_of!(R, id), i.id);
    let tag = offset_of!(R, tag);
    b[tag..tag + 8].copy_from_slice(&i.tag);
    put_u32(&mut b, offset_of!(R, jited_prog_len), i.jited_len);
    put_u32(&mut b, offset_of!(R, xlated_prog_len), i.xlated_len);
    put_u64(&mut b, offset_of!(R, load_time), i.load_time);
    put_u32(&mut b, offset_of!(R, created_by_uid), i.created_by_uid);
    let name = offset_of!(R, name);
    b[name..name + BPF_OBJ_NAME_LEN].copy_from_slice(&obj_name(&i.name));
    put_u32(
        &mut b,
        offset_of!(R, gpl_compatible),
        i.gpl_compatible.into(),
    );
    put_u32(&mut b, offset_of!(R, btf_id), i.btf_id);
    put_u64(&mut b, offset_of!(R, run_time_ns), i.run_time_ns);
    put_u64(&mut b, offset_of!(R, run_cnt), i.run_cnt);
    put_u32(&mut b, offset_of!(R, verified_insns), i.verified_insns);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0,2-3"), Some(3));
        assert_eq!(parse_cpu_list("0-127"), Some(128));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
        assert_eq!(parse_cpu_list("0,,1"), None);
    }

    #[test]
    fn names_are_cut_to_15_bytes_on_char_boundaries() {
        let n = obj_name("a_very_long_map_name_indeed");
        assert_eq!(&n[..15], b"a_very_long_map");
        assert_eq!(n[15], 0);
        let n = obj_name("short");
        assert_eq!(&n[..6], b"short\0");
        // 14 ASCII bytes + a 2-byte char straddling the limit: the char is dropped whole.
        let n = obj_name("abcdefghijklmné");
        assert_eq!(c_name(&n), "abcdefghijklmn");
    }

    #[test]
    fn log_is_cut_at_the_first_nul() {
        assert_eq!(log_text(b"0: R0 !read_ok\n\0stale text"), "0: R0 !read_ok");
        assert_eq!(log_text(b"no nul"), "no nul");
    }

    #[test]
    fn error_display_names_subject_call_and_log() {
        let mut e = BpfError::new(
            "BPF_MAP_CREATE",
            "map 'x'",
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert!(
            e.to_string().starts_with("map 'x': BPF_MAP_CREATE: "),
            "{e}"
        );
        e.verifier_log = Some("0: oops".into());
        assert!(e.to_string().ends_with("\nverifier log:\n0: oops"), "{e}");
        let e = BpfError::new(
            "BPF_LINK_DETACH",
            "",
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert!(e.to_string().starts_with("BPF_LINK_DETACH: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn link_info_union_reads() {
        let mut r = LinkInfoRaw::default();
        r.data[0] = u64::from_ne_bytes([1, 0, 0, 0, 46, 0, 0, 0]);
        assert_eq!(r.u32_at(0), 1);
        assert_eq!(r.u32_at(4), 46);
    }

    #[test]
    fn return_program_encoding() {
        let i = return_insns(2);
        assert_eq!(i, [0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}

/// The wrappers' logic against a fake `bpf(2)` (see `sys::fake`): retries, log handling, size
/// checks and the bytes of each attr at the offsets of the kernel's uapi header.
#[cfg(test)]
mod fake_tests {
    use std::cell::{Cell, RefCell};
    use std::fs::File;
    use std::rc::Rc;

    use super::*;
    use crate::sys::fake::{self, new_fd};

    fn dev_null() -> File {
        File::open("/dev/null").unwrap()
    }

    fn prog<'a>(insns: &'a [u8]) -> ProgLoad<'a> {
        ProgLoad {
            name: "t_prog",
            prog_type: BPF_PROG_TYPE_XDP,
            expected_attach_type: Some(BPF_XDP),
            insns,
            license: c"GPL",
            kern_version: 0,
            btf_fd: None,
            func_info: &[],
            func_info_rec_size: 0,
            line_info: &[],
            line_info_rec_size: 0,
            prog_flags: 0,
        }
    }

    fn errno_of(e: &BpfError) -> i32 {
        e.errno().expect("an OS error")
    }

    /// The log sizes the wrapper offered, in call order (0 = no log).
    fn log_sizes(f: &fake::Fake) -> Vec<usize> {
        f.calls().iter().map(|s| s.log.unwrap().size).collect()
    }

    #[test]
    fn prog_load_that_succeeds_needs_no_log_and_encodes_the_attr() {
        let insns_seen = Rc::new(RefCell::new(Vec::new()));
        let seen = Rc::clone(&insns_seen);
        let f = fake::install(move |c| {
            assert_eq!(c.cmd, BPF_PROG_LOAD);
            assert_eq!(c.attr.len(), 144);
            *seen.borrow_mut() = c.read_user(c.u64_at(8), c.u32_at(4) as usize * 8);
            Ok(new_fd())
        });
        let insns = return_insns(2);
        let fi = [1u8; 16];
        let li = [2u8; 32];
        let btf = dev_null();
        let p = ProgLoad {
            btf_fd: Some(btf.as_fd()),
            func_info: &fi,
            func_info_rec_size: 8,
            line_info: &li,
            line_info_rec_size: 16,
            kern_version: 7,
            prog_flags: BPF_F_XDP_HAS_FRAGS,
            ..prog(&insns)
        };
        prog_load(&p).unwrap();
        let calls = f.calls();
        assert_eq!(calls.len(), 1);
        let s = &calls[0];
        let log = s.log.unwrap();
        assert_eq!((log.level, log.buf, log.size), (0, 0, 0));
        assert_eq!(s.u32_at(0), BPF_PROG_TYPE_XDP); // prog_type
        assert_eq!(s.u32_at(4), 2); // insn_cnt
        assert_eq!(*insns_seen.borrow(), insns);
        assert_eq!(s.strings, vec!["GPL".to_string()]); // license
        assert_eq!(s.u32_at(40), 7); // kern_version
        assert_eq!(s.u32_at(44), BPF_F_XDP_HAS_FRAGS); // prog_flags
        assert_eq!(&s.attr[48..56], b"t_prog\0\0"); // prog_name
        assert_eq!(s.u32_at(68), BPF_XDP); // expected_attach_type
        assert_eq!(s.u32_at(72), btf.as_raw_fd() as u32); // prog_btf_fd
        assert_eq!(s.u32_at(76), 8); // func_info_rec_size
        assert_eq!(s.u64_at(80), fi.as_ptr() as u64); // func_info
        assert_eq!(s.u32_at(88), 2); // func_info_cnt
        assert_eq!(s.u32_at(92), 16); // line_info_rec_size
        assert_eq!(s.u64_at(96), li.as_ptr() as u64); // line_info
        assert_eq!(s.u32_at(104), 2); // line_info_cnt
        assert!(
            s.attr[108..].iter().all(|&b| b == 0),
            "unused tail not zero"
        );
    }

    #[test]
    fn prog_load_without_btf_sends_no_records() {
        let f = fake::install(|_| Ok(new_fd()));
        let insns = return_insns(0);
        prog_load(&ProgLoad {
            func_info_rec_size: 8,
            line_info_rec_size: 16,
            expected_attach_type: None,
            ..prog(&insns)
        })
        .unwrap();
        let s = &f.calls()[0];
        assert_eq!(s.u32_at(68), 0); // expected_attach_type
        for off in [72, 76, 88, 92, 104] {
            assert_eq!(s.u32_at(off), 0, "offset {off}");
        }
        assert_eq!((s.u64_at(80), s.u64_at(96)), (0, 0));
    }

    #[test]
    fn prog_load_refuses_bad_sizes_before_any_call() {
        let f = fake::install(|_| panic!("no call expected"));
        let e = prog_load(&prog(&[0u8; 12])).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("12 bytes of instructions"), "{e}");
        assert!(prog_load(&prog(&[])).is_err());
        let insns = return_insns(0);
        let e = prog_load(&ProgLoad {
            func_info: &[0; 10],
            func_info_rec_size: 8,
            ..prog(&insns)
        })
        .unwrap_err();
        assert!(e.to_string().contains("func_info: 10 bytes"), "{e}");
        let e = prog_load(&ProgLoad {
            line_info: &[0; 16],
            line_info_rec_size: 0,
            ..prog(&insns)
        })
        .unwrap_err();
        assert!(e.to_string().contains("record size 0"), "{e}");
        assert_eq!(e.errno(), None);
        assert!(f.calls().is_empty());
    }

    #[test]
    fn failed_prog_load_retries_with_a_log_and_keeps_the_first_errno() {
        let f = fake::install(|mut c| {
            if c.log().buf == 0 {
                return Err(libc::EACCES);
            }
            // The kernel rewinds the log: stale text follows the NUL.
            c.write_log(b"0: R0 !read_ok\n\0stale text from an earlier pass");
            Err(libc::EINVAL)
        });
        let insns = return_insns(0);
        let e = prog_load(&prog(&insns)).unwrap_err();
        assert_eq!(
            errno_of(&e),
            libc::EACCES,
            "the first errno is the real one"
        );
        assert_eq!(e.call, "BPF_PROG_LOAD");
        assert_eq!(e.subject, "program 't_prog'");
        assert_eq!(e.verifier_log.as_deref(), Some("0: R0 !read_ok"));
        let calls = f.calls();
        assert_eq!(calls.len(), 2);
        let retry = calls[1].log.unwrap();
        assert_eq!((retry.level, retry.size), (1, LOG_START));
        assert_eq!(calls[1].u32_at(24), 1); // log_level
        assert_eq!(calls[1].u32_at(28) as usize, LOG_START); // log_size
        assert_ne!(calls[1].u64_at(32), 0); // log_buf
                                            // Apart from the log fields, the retry sends the same attr.
        assert_eq!(calls[0].attr[..24], calls[1].attr[..24]);
        assert_eq!(calls[0].attr[40..], calls[1].attr[40..]);
    }

    #[test]
    fn enospc_grows_the_log_four_times_up_to_the_cap() {
        let f = fake::install(|mut c| {
            let log = c.log();
            if log.buf == 0 {
                return Err(libc::EPERM);
            }
            // Fill the whole buffer, no NUL: the log must come back exactly this long.
            c.write_log(&vec![b'x'; log.size]);
            Err(libc::ENOSPC)
        });
        let insns = return_insns(0);
        let e = prog_load(&prog(&insns)).unwrap_err();
        assert_eq!(
            log_sizes(&f),
            vec![
                0,
                LOG_START,
                LOG_START * 4,
                LOG_START * 16,
                LOG_START * 64,
                LOG_MAX
            ]
        );
        assert_eq!(LOG_START * 256, LOG_MAX);
        assert_eq!(errno_of(&e), libc::EPERM);
        let log = e.verifier_log.unwrap();
        assert_eq!(log.len(), LOG_MAX, "the log is the last buffer, no more");
    }

    #[test]
    fn enospc_jumps_to_the_size_the_kernel_asks_for_within_the_cap() {
        for (true_size, want) in [
            (5_000_000u32, 5_000_001usize),
            (100, LOG_START * 4),
            (u32::MAX - 1, LOG_MAX),
        ] {
            let f = fake::install(move |mut c| {
                let log = c.log();
                if log.buf == 0 {
                    return Err(libc::EINVAL);
                }
                if log.size == LOG_START {
                    c.set_log_true_size(true_size);
                    return Err(libc::ENOSPC);
                }
                c.write_log(b"the real reason\0");
                Err(libc::EINVAL)
            });
            let insns = return_insns(0);
            let e = prog_load(&prog(&insns)).unwrap_err();
            assert_eq!(
                log_sizes(&f),
                vec![0, LOG_START, want],
                "true size {true_size}"
            );
            assert_eq!(e.verifier_log.as_deref(), Some("the real reason"));
        }
    }

    #[test]
    fn a_retry_that_succeeds_returns_its_fd() {
        let given = Rc::new(Cell::new(-1i64));
        let g = Rc::clone(&given);
        let f = fake::install(move |c| {
            if c.log().buf == 0 {
                return Err(libc::EINVAL);
            }
            let fd = new_fd();
            g.set(fd);
            Ok(fd)
        });
        let insns = return_insns(0);
        let fd = prog_load(&prog(&insns)).unwrap();
        assert_eq!(i64::from(fd.as_raw_fd()), given.get());
        assert_eq!(f.calls().len(), 2);
    }

    #[test]
    fn eagain_is_retried_then_given_up() {
        let n = Rc::new(Cell::new(0));
        let n2 = Rc::clone(&n);
        let f = fake::install(move |_| {
            n2.set(n2.get() + 1);
            if n2.get() <= 3 {
                Err(libc::EAGAIN)
            } else {
                Ok(new_fd())
            }
        });
        let insns = return_insns(0);
        prog_load(&prog(&insns)).unwrap();
        assert_eq!(log_sizes(&f), vec![0; 4], "retried without a log");
        drop(f);

        let f = fake::install(|_| Err(libc::EAGAIN));
        let e = prog_load(&prog(&insns)).unwrap_err();
        assert_eq!(errno_of(&e), libc::EAGAIN);
        let mut want = vec![0; 6];
        want.extend([LOG_START; 6]);
        assert_eq!(log_sizes(&f), want, "6 tries without, 6 with a log");
    }

    #[test]
    fn btf_load_uses_the_same_log_strategy() {
        let blob = probe_btf_blob();
        let expect = blob.clone();
        let f = fake::install(move |mut c| {
            assert_eq!(c.cmd, BPF_BTF_LOAD);
            assert_eq!(c.attr.len(), 32);
            assert_eq!(c.read_user(c.u64_at(0), c.u32_at(16) as usize), expect);
            let log = c.log();
            if log.buf == 0 {
                return Err(libc::EINVAL);
            }
            if log.size < 1_000_001 {
                c.set_log_true_size(1_000_000);
                return Err(libc::ENOSPC);
            }
            c.write_log(b"[1] INT int size=4 bad\n\0[2] stale");
            Err(libc::E2BIG)
        });
        let e = btf_load(&blob).unwrap_err();
        assert_eq!(errno_of(&e), libc::EINVAL);
        assert_eq!(e.call, "BPF_BTF_LOAD");
        assert_eq!(e.verifier_log.as_deref(), Some("[1] INT int size=4 bad"));
        assert_eq!(log_sizes(&f), vec![0, LOG_START, 1_000_001]);
        let calls = f.calls();
        assert_eq!(calls[0].u32_at(24), 0); // btf_log_level
        assert_eq!(calls[1].u32_at(24), 1);
        assert_eq!(calls[2].u32_at(20), 1_000_001); // btf_log_size
        drop(f);

        let f = fake::install(|_| Ok(new_fd()));
        btf_load(&blob).unwrap();
        assert_eq!(log_sizes(&f), vec![0]);
    }

    /// A fake kernel with one map of the given shape behind every fd.
    fn fake_map(map_type: u32, key_size: u32, value_size: u32) -> fake::Fake {
        fake::install(move |mut c| match c.cmd {
            BPF_OBJ_GET_INFO_BY_FD => {
                assert_eq!(c.info_len(), 88);
                c.answer_map_info(&MapInfo {
                    id: 9,
                    map_type,
                    key_size,
                    value_size,
                    max_entries: 4,
                    name: "m".into(),
                    ..MapInfo::default()
                });
                Ok(0)
            }
            BPF_MAP_LOOKUP_ELEM | BPF_MAP_DELETE_ELEM | BPF_MAP_GET_NEXT_KEY => Err(libc::ENOENT),
            _ => Ok(0),
        })
    }

    #[test]
    fn element_ops_refuse_buffers_of_the_wrong_size() {
        let f = fake_map(BPF_MAP_TYPE_HASH, 8, 16);
        let map = dev_null();
        let fd = map.as_fd();
        let refused = |e: BpfError, call: &str, msg: &str| {
            assert_eq!(e.call, call);
            assert_eq!(e.subject, "map 'm'");
            assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(msg), "{e}");
        };
        let mut v16 = [0u8; 16];
        let mut v15 = [0u8; 15];
        let needs8 = "key buffer is 4 bytes, the map needs 8";
        refused(
            map_lookup(fd, &[0; 4], &mut v16).unwrap_err(),
            "BPF_MAP_LOOKUP_ELEM",
            needs8,
        );
        refused(
            map_lookup(fd, &[0; 8], &mut v15).unwrap_err(),
            "BPF_MAP_LOOKUP_ELEM",
            "value buffer is 15 bytes, the map needs 16",
        );
        refused(
            map_update(fd, &[0; 8], &[0; 17], BPF_ANY).unwrap_err(),
            "BPF_MAP_UPDATE_ELEM",
            "value buffer is 17 bytes",
        );
        refused(
            map_delete(fd, &[0; 4]).unwrap_err(),
            "BPF_MAP_DELETE_ELEM",
            needs8,
        );
        refused(
            map_next_key(fd, None, &mut [0; 4]).unwrap_err(),
            "BPF_MAP_GET_NEXT_KEY",
            "next key buffer is 4 bytes",
        );
        refused(
            map_update_batch(fd, &[0; 16], &[0; 16], 2, 0).unwrap_err(),
            "BPF_MAP_UPDATE_BATCH",
            "values buffer is 16 bytes, the map needs 32",
        );
        refused(
            map_lookup_batch(fd, None, &mut [0; 8], &mut [0; 8], &mut [0; 32], 2).unwrap_err(),
            "BPF_MAP_LOOKUP_BATCH",
            "keys buffer is 8 bytes, the map needs 16",
        );
        assert!(
            f.cmds().iter().all(|&c| c == BPF_OBJ_GET_INFO_BY_FD),
            "no element command may reach the kernel: {:?}",
            f.cmds()
        );

        // Right sizes: the command goes out with the buffers.
        let key = [1u8; 8];
        assert!(!map_lookup(fd, &key, &mut v16).unwrap(), "ENOENT = absent");
        map_update(fd, &key, &v16, BPF_NOEXIST).unwrap();
        assert!(!map_delete(fd, &key).unwrap());
        let up = f.calls_of(BPF_MAP_UPDATE_ELEM);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].attr.len(), 32);
        assert_eq!(up[0].u32_at(0), fd.as_raw_fd() as u32); // map_fd
        assert_eq!(up[0].u64_at(8), key.as_ptr() as u64); // key
        assert_eq!(up[0].u64_at(16), v16.as_ptr() as u64); // value
        assert_eq!(up[0].u64_at(24), BPF_NOEXIST); // flags
    }

    #[test]
    fn keyless_maps_get_a_null_key_and_percpu_values_are_per_cpu() {
        const BPF_MAP_TYPE_QUEUE: u32 = 22;
        let f = fake_map(BPF_MAP_TYPE_QUEUE, 0, 4);
        let map = dev_null();
        map_update(map.as_fd(), &[], &[0; 4], BPF_ANY).unwrap();
        assert_eq!(f.calls_of(BPF_MAP_UPDATE_ELEM)[0].u64_at(8), 0);
        drop(f);

        let _f = fake_map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 12);
        let cpus = possible_cpus().unwrap() as usize;
        let e = map_update(map.as_fd(), &[0; 4], &[0; 12], BPF_ANY).unwrap_err();
        let want = format!("the map needs {}", 16 * cpus);
        assert!(e.to_string().contains(&want), "{e}");
        map_update(map.as_fd(), &[0; 4], &vec![0; 16 * cpus], BPF_ANY).unwrap();
    }

    #[test]
    fn map_create_attr() {
        let f = fake::install(|_| Ok(new_fd()));
        let btf = dev_null();
        map_create(&MapCreate {
            name: "if_counters_with_a_long_name",
            map_type: BPF_MAP_TYPE_PERCPU_HASH,
            key_size: 8,
            value_size: 16,
            max_entries: 1024,
            flags: BPF_F_NO_PREALLOC,
            btf_fd: Some(btf.as_fd()),
            btf_key_type_id: 3,
            btf_value_type_id: 5,
            map_extra: 0x1234,
        })
        .unwrap();
        let s = &f.calls_of(BPF_MAP_CREATE)[0];
        assert_eq!(s.attr.len(), 72);
        assert_eq!(s.u32_at(0), BPF_MAP_TYPE_PERCPU_HASH);
        assert_eq!(s.u32_at(4), 8); // key_size
        assert_eq!(s.u32_at(8), 16); // value_size
        assert_eq!(s.u32_at(12), 1024); // max_entries
        assert_eq!(s.u32_at(16), BPF_F_NO_PREALLOC); // map_flags
        assert_eq!(s.u32_at(20), 0); // inner_map_fd
        assert_eq!(&s.attr[28..44], b"if_counters_wit\0"); // map_name
        assert_eq!(s.u32_at(44), 0); // map_ifindex
        assert_eq!(s.u32_at(48), btf.as_raw_fd() as u32); // btf_fd
        assert_eq!(s.u32_at(52), 3); // btf_key_type_id
        assert_eq!(s.u32_at(56), 5); // btf_value_type_id
        assert_eq!(s.u64_at(64), 0x1234); // map_extra
        drop(f);

        let _f = fake::install(|_| Err(libc::EINVAL));
        let e = map_create(&MapCreate {
            name: "x",
            map_type: BPF_MAP_TYPE_HASH,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            flags: 0,
            btf_fd: None,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            map_extra: 0,
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("map 'x': BPF_MAP_CREATE: "),
            "{e}"
        );
        assert_eq!(errno_of(&e), libc::EINVAL);
    }

    #[test]
    fn link_create_attr_for_ifindex_and_fd_targets() {
        let f = fake::install(|c| match c.u32_at(8) {
            BPF_TCX_INGRESS => Ok(new_fd()),
            _ => Err(libc::EBADF),
        });
        let prog_file = dev_null();
        let cgroup = dev_null();
        let p = prog_file.as_fd();
        link_create(p, LinkTarget::Ifindex(7), BPF_TCX_INGRESS, BPF_F_BEFORE).unwrap();
        let e = link_create(
            p,
            LinkTarget::Fd(cgroup.as_fd()),
            BPF_CGROUP_INET4_CONNECT,
            0,
        )
        .unwrap_err();
        assert_eq!(errno_of(&e), libc::EBADF);
        assert_eq!(
            e.subject,
            format!("target fd {} attach type 10", cgroup.as_raw_fd())
        );
        let calls = f.calls_of(BPF_LINK_CREATE);
        assert_eq!(calls.len(), 2);
        for (s, target, attach, flags) in [
            (&calls[0], 7, BPF_TCX_INGRESS, BPF_F_BEFORE),
            (
                &calls[1],
                cgroup.as_raw_fd() as u32,
                BPF_CGROUP_INET4_CONNECT,
                0,
            ),
        ] {
            assert_eq!(s.attr.len(), 32);
            assert_eq!(s.u32_at(0), p.as_raw_fd() as u32); // prog_fd
            assert_eq!(s.u32_at(4), target); // target_ifindex / target_fd
            assert_eq!(s.u32_at(8), attach); // attach_type
            assert_eq!(s.u32_at(12), flags); // flags
            assert!(
                s.attr[16..].iter().all(|&b| b == 0),
                "relative/revision not zero"
            );
        }
    }

    #[test]
    fn link_update_sets_replace_only_with_an_old_program() {
        let f = fake::install(|_| Ok(0));
        let (link, new, old) = (dev_null(), dev_null(), dev_null());
        link_update(link.as_fd(), new.as_fd(), None).unwrap();
        link_update(link.as_fd(), new.as_fd(), Some(old.as_fd())).unwrap();
        let calls = f.calls_of(BPF_LINK_UPDATE);
        for s in &calls {
            assert_eq!(s.attr.len(), 16);
            assert_eq!(s.u32_at(0), link.as_raw_fd() as u32); // link_fd
            assert_eq!(s.u32_at(4), new.as_raw_fd() as u32); // new_prog_fd
        }
        assert_eq!((calls[0].u32_at(8), calls[0].u32_at(12)), (0, 0));
        assert_eq!(calls[1].u32_at(8), BPF_F_REPLACE); // flags
        assert_eq!(calls[1].u32_at(12), old.as_raw_fd() as u32); // old_prog_fd
    }

    #[test]
    fn pin_and_get_pass_the_path() {
        let f = fake::install(|c| match c.cmd {
            BPF_OBJ_GET if c.read_str(c.u64_at(0)).ends_with("missing") => Err(libc::ENOENT),
            BPF_OBJ_GET => Ok(new_fd()),
            _ => Ok(0),
        });
        let obj = dev_null();
        obj_pin(obj.as_fd(), Path::new("/sys/fs/bpf/weir/maps/m@v1")).unwrap();
        obj_get(Path::new("/sys/fs/bpf/weir/maps/m@v1")).unwrap();
        let e = obj_get(Path::new("/sys/fs/bpf/missing")).unwrap_err();
        assert_eq!(errno_of(&e), libc::ENOENT);
        assert_eq!(e.subject, "pin /sys/fs/bpf/missing");
        let calls = f.calls();
        assert_eq!(calls[0].cmd, BPF_OBJ_PIN);
        assert_eq!(calls[0].attr.len(), 16);
        assert_eq!(
            calls[0].strings,
            vec!["/sys/fs/bpf/weir/maps/m@v1".to_string()]
        );
        assert_eq!(calls[0].u32_at(8), obj.as_raw_fd() as u32); // bpf_fd
        assert_eq!(calls[0].u32_at(12), 0); // file_flags
        assert_eq!(calls[1].cmd, BPF_OBJ_GET);
        assert_eq!(calls[1].u32_at(8), 0);
        drop(f);

        let f = fake::install(|_| panic!("no call expected"));
        let e = obj_get(Path::new("/sys/fs/bpf/a\0b")).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        assert!(f.calls().is_empty());
    }

    #[test]
    fn prog_query_sizes_the_arrays_from_the_kernel_count() {
        // First call with no arrays learns the count; the second fills them.
        let f = fake::install(|mut c| {
            let cap = c.u32_at(24);
            if cap == 0 {
                c.set_u32(24, 2);
                return Ok(0);
            }
            let ids: Vec<u8> = [10u32, 11].iter().flat_map(|v| v.to_ne_bytes()).collect();
            c.write_user(c.u64_at(16), &ids);
            let links = c.u64_at(40);
            if links != 0 {
                let l: Vec<u8> = [5u32, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
                c.write_user(links, &l);
            }
            c.set_u32(12, BPF_F_ALLOW_MULTI); // attach_flags
            c.set_u64(56, 7); // revision
            Ok(0)
        });
        let q = prog_query(LinkTarget::Ifindex(3), BPF_TCX_INGRESS, 0).unwrap();
        assert_eq!(q.prog_ids, vec![10, 11]);
        assert_eq!(q.link_ids, vec![5, 0]);
        assert_eq!(q.revision, 7);
        assert_eq!(q.attach_flags, BPF_F_ALLOW_MULTI);
        let calls = f.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].attr.len(), 64);
        assert_eq!(calls[0].u32_at(0), 3); // target_ifindex
        assert_eq!(calls[0].u32_at(4), BPF_TCX_INGRESS); // attach_type
        assert_eq!((calls[0].u64_at(16), calls[0].u64_at(40)), (0, 0));
        assert_eq!(calls[1].u32_at(24), 2); // count
        assert_ne!(calls[1].u64_at(40), 0, "link_ids asked for ifindex targets");
        drop(f);

        // A cgroup fd target asks for no link ids, and ENOSPC grows the arrays.
        let f = fake::install(|mut c| {
            assert_eq!(c.u64_at(40), 0, "no link_ids for fd targets");
            match c.u32_at(24) {
                0 => {
                    c.set_u32(24, 1);
                    Ok(0)
                }
                1 => {
                    c.set_u32(24, 3);
                    Err(libc::ENOSPC)
                }
                _ => {
                    let ids: Vec<u8> = [1u32, 2, 3].iter().flat_map(|v| v.to_ne_bytes()).collect();
                    c.write_user(c.u64_at(16), &ids);
                    Ok(0)
                }
            }
        });
        let cg = dev_null();
        let q = prog_query(
            LinkTarget::Fd(cg.as_fd()),
            BPF_CGROUP_INET4_CONNECT,
            BPF_F_QUERY_EFFECTIVE,
        )
        .unwrap();
        assert_eq!(q.prog_ids, vec![1, 2, 3]);
        assert!(q.link_ids.is_empty());
        let counts: Vec<u32> = f.calls().iter().map(|s| s.u32_at(24)).collect();
        assert_eq!(counts, vec![0, 1, 3]);
        assert_eq!(f.calls()[0].u32_at(8), BPF_F_QUERY_EFFECTIVE); // query_flags
        drop(f);

        // A count that never settles ends in an error, not a loop.
        let f = fake::install(|mut c| {
            let more = c.u32_at(24) + 1;
            c.set_u32(24, more);
            Ok(0)
        });
        let e = prog_query(LinkTarget::Ifindex(3), BPF_TCX_EGRESS, 0).unwrap_err();
        assert!(e.to_string().contains("kept changing"), "{e}");
        assert_eq!(f.calls().len(), 8);
    }

    #[test]
    fn test_run_reads_back_what_the_kernel_wrote() {
        let _f = fake::install(|mut c| {
            assert_eq!(c.read_user(c.u64_at(16), c.u32_at(8) as usize), [7u8; 64]);
            c.write_user(c.u64_at(24), &[9u8; 60]);
            c.set_u32(12, 60); // data_size_out
            c.set_u32(4, XDP_TX); // retval
            c.set_u32(36, 33); // duration
            Ok(0)
        });
        let prog_file = dev_null();
        let r = prog_test_run(
            prog_file.as_fd(),
            &TestRun {
                data_in: &[7; 64],
                data_out_size: 128,
                repeat: 1,
                ..TestRun::default()
            },
        )
        .unwrap();
        assert_eq!(r.retval, XDP_TX);
        assert_eq!(r.duration_ns, 33);
        assert_eq!(r.data_out, vec![9u8; 60]);
    }

    #[test]
    #[should_panic(expected = "outside the writable buffers")]
    fn a_fake_cannot_write_past_a_buffer() {
        let _f = fake::install(|mut c| {
            let log = c.log();
            if log.buf != 0 {
                c.write_user(log.buf, &vec![0; log.size + 1]);
            }
            Err(libc::EINVAL)
        });
        let insns = return_insns(0);
        let _ = prog_load(&prog(&insns));
    }

    #[test]
    fn ids_and_info() {
        let f = fake::install(|mut c| match c.cmd {
            BPF_PROG_GET_NEXT_ID if c.u32_at(0) >= 5 => Err(libc::ENOENT),
            BPF_PROG_GET_NEXT_ID => {
                c.set_u32(4, 5);
                Ok(0)
            }
            BPF_OBJ_GET_INFO_BY_FD => {
                assert_eq!(c.info_len(), 232);
                c.answer_prog_info(&ProgInfo {
                    id: 5,
                    prog_type: BPF_PROG_TYPE_SCHED_CLS,
                    name: "tc_ingress".into(),
                    tag: [1, 2, 3, 4, 5, 6, 7, 8],
                    run_cnt: 3,
                    verified_insns: 12,
                    gpl_compatible: true,
                    ..ProgInfo::default()
                });
                Ok(0)
            }
            _ => Err(libc::ENOENT),
        });
        assert_eq!(prog_next_id(0).unwrap(), Some(5));
        assert_eq!(prog_next_id(5).unwrap(), None);
        let e = prog_fd_by_id(42).unwrap_err();
        assert_eq!(e.subject, "program id 42");
        assert_eq!(errno_of(&e), libc::ENOENT);
        let file = dev_null();
        let info = prog_info(file.as_fd()).unwrap();
        assert_eq!(info.id, 5);
        assert_eq!(info.name, "tc_ingress");
        assert_eq!(info.tag, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((info.run_cnt, info.verified_insns), (3, 12));
        assert!(info.gpl_compatible && info.map_ids.is_empty());
        assert_eq!(f.calls_of(BPF_OBJ_GET_INFO_BY_FD).len(), 1);
    }

    /// A fake kernel for the feature probes: BTF, ring buffers and programs load; a link answers
    /// with `link_errno(attach_type)`.
    fn probe_kernel(ok: bool, link_errno: fn(u32) -> i32) -> fake::Fake {
        fake::install(move |c| match c.cmd {
            BPF_PROG_LOAD => Ok(new_fd()),
            BPF_BTF_LOAD | BPF_MAP_CREATE if ok => Ok(new_fd()),
            BPF_LINK_CREATE => Err(link_errno(c.u32_at(8))),
            _ => Err(libc::EINVAL),
        })
    }

    #[test]
    fn feature_probes_classify_the_kernel_answers() {
        let no_netns = || Err(io::Error::from_raw_os_error(libc::EPERM));
        let f = probe_kernel(true, |attach| match attach {
            BPF_TCX_INGRESS => libc::ENODEV,
            BPF_CGROUP_INET4_CONNECT => libc::EBADF,
            _ => libc::EINVAL,
        });
        let got = probe_features(no_netns);
        assert_eq!(
            got,
            Features {
                xdp_link: true, // inferred from TCX
                tcx: true,
                cgroup_link: true,
                btf: true,
                ringbuf: true,
            }
        );
        // The TCX probe targets ifindex 0 with a SCHED_CLS program; the ring buffer is 64 KiB.
        let links = f.calls_of(BPF_LINK_CREATE);
        let tcx = links
            .iter()
            .find(|s| s.u32_at(8) == BPF_TCX_INGRESS)
            .unwrap();
        assert_eq!(tcx.u32_at(4), 0);
        let rb = &f.calls_of(BPF_MAP_CREATE)[0];
        assert_eq!(
            (rb.u32_at(0), rb.u32_at(12)),
            (BPF_MAP_TYPE_RINGBUF, 64 * 1024)
        );
        drop(f);

        let _f = probe_kernel(false, |_| libc::EINVAL);
        let got = probe_features(|| Ok(true));
        assert_eq!(
            got,
            Features {
                xdp_link: true, // the real XDP probe's answer wins
                ..Features::default()
            }
        );
    }

    #[test]
    fn probe_verdicts() {
        let err = |errno| {
            Err(BpfError::new(
                "BPF_LINK_CREATE",
                "",
                io::Error::from_raw_os_error(errno),
            ))
        };
        let fd = OwnedFd::from(dev_null());
        assert!(link_probe_verdict(Ok(fd), libc::ENODEV, "ENODEV"));
        assert!(link_probe_verdict(
            err(libc::ENODEV),
            libc::ENODEV,
            "ENODEV"
        ));
        assert!(!link_probe_verdict(
            err(libc::EINVAL),
            libc::ENODEV,
            "ENODEV"
        ));
        assert!(!link_probe_verdict(
            err(libc::EPERM),
            libc::ENODEV,
            "ENODEV"
        ));
        assert!(!link_probe_verdict(err(libc::ENODEV), libc::EBADF, "EBADF"));
        assert!(xdp_link_verdict(Ok(true), false));
        assert!(!xdp_link_verdict(Ok(false), true));
        assert!(xdp_link_verdict(Err(io::Error::other("no netns")), true));
        assert!(!xdp_link_verdict(Err(io::Error::other("no netns")), false));
    }

    #[test]
    fn bpf_error_kinds_and_conversion() {
        let e = BpfError::invalid("BPF_MAP_LOOKUP_ELEM", "map 'm'", "too short".into());
        assert_eq!(e.errno(), None);
        assert_eq!(e.to_string(), "map 'm': BPF_MAP_LOOKUP_ELEM: too short");
        let mut e = BpfError::new(
            "BPF_PROG_LOAD",
            "program 'p'",
            io::Error::from_raw_os_error(libc::EACCES),
        );
        e.verifier_log = Some("0: bad".into());
        assert_eq!(e.errno(), Some(libc::EACCES));
        let io_err: io::Error = e.into();
        assert_eq!(io_err.kind(), io::ErrorKind::PermissionDenied);
        let text = io_err.to_string();
        assert!(text.starts_with("program 'p': BPF_PROG_LOAD: "), "{text}");
        assert!(text.ends_with("verifier log:\n0: bad"), "{text}");
    }
}
