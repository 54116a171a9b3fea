//! The BPF filesystem (bpffs), where maps, programs and links are pinned.

use std::ffi::CString;
use std::fs::{DirBuilder, File};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `f_type` of a bpffs mount, as `statfs(2)` reports it.
pub const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: path contains a NUL byte", path.display()),
        )
    })
}

/// The filesystem magic (`f_type`) of the filesystem holding `path`.
///
/// # Errors
/// `statfs(2)` failed (e.g. ENOENT).
pub fn fs_magic(path: &Path) -> io::Result<u32> {
    let c = cstring(path)?;
    let mut buf = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: c is NUL-terminated and buf is a writable statfs struct.
    if unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded, so it filled the struct (and it was zeroed before anyway).
    let st = unsafe { buf.assume_init() };
    // f_type is a signed word on some targets; the magic is a 32-bit value.
    Ok(st.f_type as u32)
}

/// Whether `path` lies on a bpffs mount.
///
/// # Errors
/// `statfs(2)` failed (e.g. ENOENT when `path` does not exist).
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    Ok(fs_magic(path)? == BPF_FS_MAGIC)
}

/// Mounts bpffs on `root` (normally `/sys/fs/bpf`) unless it already is one. Returns whether it
/// mounted now. Concurrent callers (weir processes, parallel tests) are serialised with an
/// `flock` on the directory so they don't stack two mounts.
///
/// # Errors
/// `root` can't be created or opened, or `mount(2)` failed (EPERM without CAP_SYS_ADMIN).
pub fn ensure_mounted(root: &Path) -> io::Result<bool> {
    if is_bpffs(root).unwrap_or(false) {
        return Ok(false);
    }
    DirBuilder::new().recursive(true).mode(0o755).create(root)?;
    let dir = File::open(root)?;
    // SAFETY: flock on an fd we own; the lock is released when `dir` is closed.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Someone may have mounted it while we waited for the lock.
    if is_bpffs(root)? {
        return Ok(false);
    }
    let target = cstring(root)?;
    // SAFETY: all strings are NUL-terminated and live for the call.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mounting bpffs on {}: {e}", root.display()),
        ));
    }
    log::debug!("mounted bpffs on {}", root.display());
    Ok(true)
}

/// Creates `dir` (and its parents) with mode 0700, checks that it lies on bpffs and makes sure
/// its mode is 0700 even if it existed before.
///
/// # Errors
/// Creating or chmod-ing failed, or `dir` is not on bpffs (`InvalidInput`).
pub fn ensure_pin_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if !is_bpffs(dir)? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not on a bpf filesystem (is bpffs mounted?)",
                dir.display()
            ),
        ));
    }
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Removes one pin; `Ok(false)` when it did not exist. The object lives on while fds or other
/// pins refer to it.
///
/// # Errors
/// `unlink(2)` failed with anything but ENOENT.
pub fn remove_pin(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The entries of a pin directory, sorted; empty when the directory does not exist.
///
/// # Errors
/// Reading the directory failed with anything but ENOENT.
pub fn list_pins(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// Removes a pin directory and everything under it; `Ok(false)` when it did not exist. Refuses
/// to touch anything that is not on bpffs, and the bpffs mount root itself (it holds other
/// programs' pins).
///
/// # Errors
/// `dir` is not below a bpffs mount root (`InvalidInput`), or removing failed.
pub fn remove_pin_dir(dir: &Path) -> io::Result<bool> {
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to remove {}: {why}", dir.display()),
        ))
    };
    match is_bpffs(dir) {
        Ok(true) => {}
        Ok(false) => return refuse("not on a bpf filesystem"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let parent_on_bpffs = match dir.canonicalize()?.parent() {
        Some(p) => is_bpffs(p)?,
        None => false,
    };
    if !parent_on_bpffs {
        return refuse("it is the root of a bpf filesystem");
    }
    std::fs::remove_dir_all(dir)?;
    Ok(true)
}
