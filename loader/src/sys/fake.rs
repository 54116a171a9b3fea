//! A fake `bpf(2)` for unit tests, so the logic above the syscall (log retries, attribute
//! encoding, map reuse, object loading) is tested without a kernel.
//!
//! [`install`] puts a closure in place of the real syscall for the current thread until the
//! returned [`Fake`] is dropped; without one the real syscall runs, so nothing changes for the
//! e2e tests. The closure gets a [`FakeCall`]: the command and the attribute bytes the wrapper
//! built, which it may change (the kernel writes results such as `log_true_size` or `count`
//! into the attr), and the user buffers the attr points to. Writes through those pointers are
//! checked against the buffers the attr itself describes, captured before the fake runs: the same
//! bound the kernel honours, so a fake cannot write over memory the wrapper did not hand out.
//! Element and batch buffers (keys, values, batch tokens) are sized by the map rather than the
//! attr; they are bounded by the key and value sizes the wrapper checked them against, which come
//! from the map info the fake itself reported.
//! The closure answers `Ok(return value)` or `Err(errno)`.
//!
//! Returned fds must be real, since wrappers wrap them in `OwnedFd`: use [`new_fd`].

use std::cell::RefCell;
use std::ffi::CStr;
use std::fmt;
use std::os::fd::IntoRawFd;
use std::rc::Rc;

use super::bpf::{fake_map_info_bytes, fake_prog_info_bytes, MapInfo, ProgInfo};
/// The command numbers tests outside `sys` match on.
pub(crate) use super::bpf::{
    BPF_BTF_LOAD, BPF_MAP_CREATE, BPF_MAP_DELETE_BATCH, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY,
    BPF_MAP_LOOKUP_BATCH, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_BATCH, BPF_MAP_UPDATE_ELEM,
    BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD, BPF_OBJ_PIN, BPF_PROG_LOAD,
};

/// Where the log fields of a load command are (`BPF_PROG_LOAD`, `BPF_BTF_LOAD`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogFields {
    /// `log_level` as the wrapper set it.
    pub(crate) level: u32,
    /// The buffer (0 = none) and its size.
    pub(crate) buf: u64,
    pub(crate) size: usize,
    /// Offset of `log_true_size` in the attr.
    pub(crate) true_size_off: usize,
}

/// The user memory an attr points to, as the wrapper described it: `(address, length)` pairs the
/// kernel may read or write, and NUL-terminated strings. Built by `sys::bpf` from its own layouts.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserMem {
    pub(crate) read: Vec<(u64, usize)>,
    pub(crate) write: Vec<(u64, usize)>,
    pub(crate) strings: Vec<u64>,
    pub(crate) log: Option<LogFields>,
    /// `BPF_OBJ_GET_INFO_BY_FD`: the info struct and `info_len`.
    pub(crate) info: Option<(u64, usize)>,
}

impl UserMem {
    /// Adds a buffer unless it is NULL or empty (the kernel would not touch it either).
    pub(crate) fn add(list: &mut Vec<(u64, usize)>, ptr: u64, len: usize) {
        if ptr != 0 && len != 0 {
            list.push((ptr, len));
        }
    }

    fn covers(list: &[(u64, usize)], ptr: u64, len: usize) -> bool {
        let Some(end) = ptr.checked_add(len as u64) else {
            return false;
        };
        list.iter()
            .any(|&(p, n)| ptr >= p && end <= p.saturating_add(n as u64))
    }
}

/// One intercepted `bpf(2)` call, handed to the fake.
pub(crate) struct FakeCall<'a> {
    /// The `enum bpf_cmd` value.
    pub(crate) cmd: u32,
    /// The attribute bytes, exactly as many as the wrapper passed as `size`.
    pub(crate) attr: &'a mut [u8],
    mem: UserMem,
}

impl fmt::Debug for FakeCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeCall")
            .field("cmd", &self.cmd)
            .field("attr", &self.attr)
            .finish()
    }
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn ne_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

impl FakeCall<'_> {
    /// The u32 at `off` in the attr.
    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        ne_u32(self.attr, off)
    }

    /// The u64 at `off` in the attr.
    pub(crate) fn u64_at(&self, off: usize) -> u64 {
        ne_u64(self.attr, off)
    }

    /// Sets the u32 at `off` in the attr (a result the kernel reports in place).
    pub(crate) fn set_u32(&mut self, off: usize, v: u32) {
        self.attr[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the u64 at `off` in the attr.
    pub(crate) fn set_u64(&mut self, off: usize, v: u64) {
        self.attr[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }

    /// Copies `len` bytes from user memory the attr points to.
    ///
    /// # Panics
    /// When `[ptr, ptr + len)` is not inside a buffer the attr describes.
    pub(crate) fn read_user(&self, ptr: u64, len: usize) -> Vec<u8> {
        if len == 0 {
            return Vec::new();
        }
        assert!(
            UserMem::covers(&self.mem.read, ptr, len) || UserMem::covers(&self.mem.write, ptr, len),
            "fake bpf cmd {}: read of {len} bytes at {ptr:#x} is outside the buffers the attr describes ({:?})",
            self.cmd,
            self.mem
        );
        let mut out = vec![0u8; len];
        // SAFETY: the range lies inside a buffer the wrapper described in the attr before this
        // call; the wrapper's contract with `sys_bpf` keeps it live and readable for the call.
        unsafe { std::ptr::copy_nonoverlapping(ptr as usize as *const u8, out.as_mut_ptr(), len) };
        out
    }

    /// Reads a NUL-terminated string the attr points to (a path, a licence).
    ///
    /// # Panics
    /// When `ptr` is not one of the attr's string pointers.
    pub(crate) fn read_str(&self, ptr: u64) -> String {
        assert!(
            ptr != 0 && self.mem.strings.contains(&ptr),
            "fake bpf cmd {}: {ptr:#x} is not a string pointer of the attr",
            self.cmd
        );
        // SAFETY: the wrapper stored a pointer to a live NUL-terminated string (CStr/CString).
        unsafe { read_c_string(ptr) }
    }

    /// Writes `bytes` to user memory the attr points to (e.g. an info struct, a query result).
    ///
    /// # Panics
    /// When the write would leave the writable buffers the attr describes.
    pub(crate) fn write_user(&mut self, ptr: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        assert!(
            UserMem::covers(&self.mem.write, ptr, bytes.len()),
            "fake bpf cmd {}: write of {} bytes at {ptr:#x} is outside the writable buffers the attr describes ({:?})",
            self.cmd,
            bytes.len(),
            self.mem
        );
        // SAFETY: the range lies inside a buffer the wrapper handed the kernel to write into
        // (captured from the attr before the fake could change it); the wrapper's contract with
        // `sys_bpf` keeps it live and writable for the duration of the call.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr as usize as *mut u8, bytes.len())
        };
    }

    /// The log fields of a `BPF_PROG_LOAD` / `BPF_BTF_LOAD`.
    ///
    /// # Panics
    /// For other commands.
    pub(crate) fn log(&self) -> LogFields {
        self.mem
            .log
            .unwrap_or_else(|| panic!("fake bpf cmd {} has no log", self.cmd))
    }

    /// Writes `text` into the log buffer as the kernel does: at most the buffer's size. Returns
    /// how many bytes were written (0 without a buffer).
    pub(crate) fn write_log(&mut self, text: &[u8]) -> usize {
        let log = self.log();
        if log.buf == 0 {
            return 0;
        }
        let n = text.len().min(log.size);
        self.write_user(log.buf, &text[..n]);
        n
    }

    /// Reports the log size the kernel would have needed.
    pub(crate) fn set_log_true_size(&mut self, n: u32) {
        let off = self.log().true_size_off;
        self.set_u32(off, n);
    }

    /// `BPF_OBJ_GET_INFO_BY_FD`: the `info_len` the wrapper asked for.
    ///
    /// # Panics
    /// For other commands.
    pub(crate) fn info_len(&self) -> usize {
        self.mem
            .info
            .unwrap_or_else(|| panic!("fake bpf cmd {} has no info", self.cmd))
            .1
    }

    /// `BPF_OBJ_GET_INFO_BY_FD`: fills the info struct (at most `info_len` bytes, like the kernel).
    pub(crate) fn write_info(&mut self, bytes: &[u8]) {
        let (ptr, len) = self
            .mem
            .info
            .unwrap_or_else(|| panic!("fake bpf cmd {} has no info", self.cmd));
        self.write_user(ptr, &bytes[..bytes.len().min(len)]);
    }

    /// `BPF_OBJ_GET_INFO_BY_FD`: answers as the kernel would for a map with `info`.
    pub(crate) fn answer_map_info(&mut self, info: &MapInfo) {
        self.write_info(&fake_map_info_bytes(info));
    }

    /// `BPF_OBJ_GET_INFO_BY_FD`: answers as the kernel would for a program with `info`
    /// (`map_ids` are not reported: `nr_map_ids` stays 0).
    pub(crate) fn answer_prog_info(&mut self, info: &ProgInfo) {
        self.write_info(&fake_prog_info_bytes(info));
    }
}

/// # Safety
/// `ptr` must point to a live NUL-terminated string.
unsafe fn read_c_string(ptr: u64) -> String {
    // SAFETY: forwarded from the caller.
    unsafe { CStr::from_ptr(ptr as usize as *const libc::c_char) }
        .to_string_lossy()
        .into_owned()
}

/// A call the fake answered, as the wrapper built it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) cmd: u32,
    /// The attr bytes before the fake ran.
    pub(crate) attr: Vec<u8>,
    /// The attr's NUL-terminated strings (path, licence), in field order.
    pub(crate) strings: Vec<String>,
    /// The log fields, for load commands.
    pub(crate) log: Option<LogFields>,
    /// What the fake answered.
    pub(crate) ret: Result<i64, i32>,
}

impl Seen {
    /// The u32 at `off` in the attr as built.
    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        ne_u32(&self.attr, off)
    }

    /// The u64 at `off` in the attr as built.
    pub(crate) fn u64_at(&self, off: usize) -> u64 {
        ne_u64(&self.attr, off)
    }
}

type Answer = dyn Fn(FakeCall<'_>) -> Result<i64, i32>;

#[derive(Clone)]
struct Active {
    answer: Rc<Answer>,
    seen: Rc<RefCell<Vec<Seen>>>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// The installed fake of this thread; dropping it brings back whatever was there before.
#[must_use = "the fake is removed again when this guard is dropped"]
pub(crate) struct Fake {
    seen: Rc<RefCell<Vec<Seen>>>,
    prev: Option<Active>,
}

impl Fake {
    /// Every call answered so far, in order.
    pub(crate) fn calls(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    /// The commands answered so far, in order.
    pub(crate) fn cmds(&self) -> Vec<u32> {
        self.seen.borrow().iter().map(|s| s.cmd).collect()
    }

    /// The calls of one command, in order.
    pub(crate) fn calls_of(&self, cmd: u32) -> Vec<Seen> {
        self.seen
            .borrow()
            .iter()
            .filter(|s| s.cmd == cmd)
            .cloned()
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let prev = self.prev.take();
        ACTIVE.with(|a| *a.borrow_mut() = prev);
    }
}

/// Answers every `bpf(2)` call of this thread with `answer` until the guard is dropped.
pub(crate) fn install(answer: impl Fn(FakeCall<'_>) -> Result<i64, i32> + 'static) -> Fake {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let active = Active {
        answer: Rc::new(answer),
        seen: Rc::clone(&seen),
    };
    let prev = ACTIVE.with(|a| a.borrow_mut().replace(active));
    Fake { seen, prev }
}

/// Whether a fake is installed on this thread.
pub(crate) fn active() -> bool {
    ACTIVE.with(|a| a.borrow().is_some())
}

/// Hands one call to the installed fake; `None` when there is none (run the real syscall).
pub(crate) fn dispatch(cmd: u32, attr: &mut [u8], mem: UserMem) -> Option<Result<i64, i32>> {
    // Clone out of the cell so a fake may itself call wrappers (or install another fake).
    let active = ACTIVE.with(|a| a.borrow().clone())?;
    let strings = mem
        .strings
        .iter()
        // SAFETY: `strings` holds the attr's string pointers, which the wrapper keeps live.
        .map(|&p| unsafe { read_c_string(p) })
        .collect();
    let before = attr.to_vec();
    let log = mem.log;
    let ret = (active.answer)(FakeCall { cmd, attr, mem });
    active.seen.borrow_mut().push(Seen {
        cmd,
        attr: before,
        strings,
        log,
        ret,
    });
    Some(ret)
}

/// A fresh, real file descriptor (of `/dev/null`) for a fake to return as a new bpf object;
/// the wrapper owns and closes it.
pub(crate) fn new_fd() -> i64 {
    std::fs::File::open("/dev/null")
        .expect("open /dev/null")
        .into_raw_fd()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_is_bounded() {
        let list = [(0x1000u64, 16usize)];
        assert!(UserMem::covers(&list, 0x1000, 16));
        assert!(UserMem::covers(&list, 0x1008, 8));
        assert!(!UserMem::covers(&list, 0x1008, 9));
        assert!(!UserMem::covers(&list, 0xfff, 2));
        assert!(!UserMem::covers(&list, u64::MAX, 2));
    }

    #[test]
    fn guard_restores_the_previous_fake() {
        assert!(!active());
        let outer = install(|_| Ok(1));
        {
            let _inner = install(|_| Ok(2));
            assert!(active());
        }
        let mut attr = [0u8; 4];
        assert_eq!(dispatch(99, &mut attr, UserMem::default()), Some(Ok(1)));
        assert_eq!(outer.cmds(), vec![99]);
        drop(outer);
        assert!(!active());
        assert_eq!(dispatch(99, &mut attr, UserMem::default()), None);
    }
}
