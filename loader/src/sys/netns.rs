//! Network namespaces: named ones under `/run/netns` (compatible with `ip netns`), and running
//! code inside one without changing the caller's own namespace.

use std::ffi::CString;
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 255
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid network namespace name {name:?}"),
        ));
    }
    Ok(())
}

/// The file of a namespace: a bare name means `/run/netns/NAME`, anything with a `/` is a path
/// (e.g. `/proc/1234/ns/net`).
pub fn path_of(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        Path::new(NETNS_RUN_DIR).join(name_or_path)
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Opens a network namespace by name (`/run/netns/NAME`) or path.
///
/// # Errors
/// The file can't be opened (`NotFound` for an unknown name).
pub fn open(name_or_path: &str) -> io::Result<OwnedFd> {
    let path = path_of(name_or_path);
    let f = OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|e| with_context(e, format!("opening network namespace {}", path.display())))?;
    Ok(f.into())
}

/// The calling thread's network namespace.
///
/// # Errors
/// `/proc/thread-self/ns/net` can't be opened (no /proc).
pub fn current() -> io::Result<OwnedFd> {
    open("/proc/thread-self/ns/net")
}

/// Moves the calling thread into a network namespace (`setns(CLONE_NEWNET)`). Other threads are
/// not affected; prefer [`run_in`], which never changes the caller's namespace.
///
/// # Errors
/// `setns(2)` failed (EINVAL when `fd` is not a network namespace, EPERM).
pub fn enter(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns only changes the calling thread's namespace; fd is a live descriptor.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(with_context(
            io::Error::last_os_error(),
            "setns(CLONE_NEWNET)".into(),
        ));
    }
    Ok(())
}

/// Creates a named network namespace like `ip netns add NAME`: an empty file
/// `/run/netns/NAME` with a new namespace bind-mounted onto it, which keeps the namespace alive
/// with no process in it. (Unlike iproute2 we don't make `/run/netns` a shared mount.)
///
/// # Errors
/// Invalid name (`InvalidInput`), the name exists (`AlreadyExists`), or `unshare(2)`/`mount(2)`
/// failed (EPERM without CAP_SYS_ADMIN).
pub fn create(name: &str) -> io::Result<()> {
    check_name(name)?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_RUN_DIR)?;
    let path = path_of(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| with_context(e, format!("creating {}", path.display())))?;
    let target = cstring(&path)?;
    // A scratch thread makes the namespace, so no thread of the caller ever changes namespace.
    let made = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: unshare only affects this scratch thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(with_context(
                    io::Error::last_os_error(),
                    "unshare(CLONE_NEWNET)".into(),
                ));
            }
            // SAFETY: both paths are NUL-terminated strings that live for the call.
            let rc = unsafe {
                libc::mount(
                    c"/proc/thread-self/ns/net".as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(with_context(
                    io::Error::last_os_error(),
                    format!("bind-mounting the new namespace on {}", path.display()),
                ));
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns creation thread panicked")))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    log::debug!("created network namespace {name}");
    Ok(())
}

/// Deletes a named network namespace like `ip netns delete NAME`: lazily unmounts and removes
/// `/run/netns/NAME`. The namespace itself goes away when nothing else (process, open fd, other
/// mount) holds it.
///
/// # Errors
/// Invalid name, `NotFound` when it doesn't exist, or unmounting/unlinking failed.
pub fn delete(name: &str) -> io::Result<()> {
    check_name(name)?;
    let path = path_of(name);
    let c = cstring(&path)?;
    // SAFETY: c is a NUL-terminated path that lives for the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (a half-created entry); still remove the file.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(with_context(e, format!("unmounting {}", path.display())));
        }
    }
    std::fs::remove_file(&path)
        .map_err(|e| with_context(e, format!("removing {}", path.display())))?;
    log::debug!("deleted network namespace {name}");
    Ok(())
}

/// Runs `f` on a scoped thread that first entered the namespace `fd`, and returns its result.
/// The caller's threads never change namespace. A panic in `f` is resumed in the caller.
///
/// # Panics
/// When the thread cannot enter `fd` (not a network namespace, no CAP_SYS_ADMIN): running `f`
/// in the wrong namespace would be worse. Use [`try_run_in`] to get that as an error.
pub fn run_in<T: Send>(fd: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> T {
    match try_run_in(fd, f) {
        Ok(v) => v,
        Err(e) => panic!(
            "netns::run_in: cannot enter the network namespace (fd {}): {e}",
            fd.as_raw_fd()
        ),
    }
}

/// Like [`run_in`], but reports a failure to enter the namespace instead of panicking.
///
/// # Errors
/// `setns(2)` failed (`f` is then not run).
pub fn try_run_in<T: Send>(fd: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        let handle = s.spawn(move || -> io::Result<T> {
            enter(fd)?;
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `SO_NETNS_COOKIE` (level `SOL_SOCKET`): the cookie of a socket's network namespace.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `fd` (what `bpf_get_netns_cookie` returns for sockets in
/// it): `getsockopt(SO_NETNS_COOKIE)` on a socket made in it by a scratch thread.
///
/// # Errors
/// Entering the namespace, `socket(2)` or `getsockopt(2)` failed.
pub fn cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    try_run_in(fd, || -> io::Result<u64> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                "socket(AF_INET)".into(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: the buffer and its length describe `cookie`, which outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&raw mut cookie).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                "getsockopt(SO_NETNS_COOKIE)".into(),
            ));
        }
        Ok(cookie)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(path_of("blue"), PathBuf::from("/run/netns/blue"));
        assert_eq!(path_of("/proc/1/ns/net"), PathBuf::from("/proc/1/ns/net"));
        assert!(check_name("weir-test-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
