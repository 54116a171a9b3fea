//! cgroup v2 helpers: finding the mount, cgroup ids, directory fds for cgroup links, and
//! creating, removing and populating cgroups.

use std::ffi::{CString, OsString};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `f_type` of a cgroup v2 mount, as `statfs(2)` reports it.
pub const CGROUP2_SUPER_MAGIC: u32 = 0x6367_7270;

/// Undoes the octal escapes (`\040` for a space, `\011`, `\012`, `\134`) of `/proc/mounts`.
fn unescape_mount_field(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |c: u8| (b'0'..=b'7').contains(&c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|&c| octal(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// The mount point of the first `cgroup2` filesystem in `/proc/mounts`-format text.
pub fn parse_cgroup2_mount(mounts_text: &str) -> Option<PathBuf> {
    mounts_text.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_field(target)))
    })
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones).
///
/// # Errors
/// `/proc/self/mounts` can't be read, or has no cgroup2 line (`NotFound`).
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts")?;
    parse_cgroup2_mount(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 filesystem is mounted (see /proc/mounts)",
        )
    })
}

fn fs_magic(path: &Path) -> io::Result<u32> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut buf = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: c is NUL-terminated and buf is a writable statfs struct.
    if unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded and filled the (pre-zeroed) struct.
    Ok(unsafe { buf.assume_init() }.f_type as u32)
}

/// Whether `path` lies on a cgroup v2 filesystem.
///
/// # Errors
/// `statfs(2)` failed (e.g. ENOENT).
pub fn is_cgroup2(path: &Path) -> io::Result<bool> {
    Ok(fs_magic(path)? == CGROUP2_SUPER_MAGIC)
}

/// The kernel's id of a cgroup v2 directory, as `bpf_get_current_cgroup_id()` and cgroup link
/// info report it. On cgroup2 (kernfs) the directory's inode number is that id.
///
/// # Errors
/// `path` can't be stat'ed or is not a directory on cgroup v2 (`InvalidInput`).
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    if !is_cgroup2(path)? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not on cgroup v2", path.display()),
        ));
    }
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a cgroup directory", path.display()),
        ));
    }
    Ok(meta.ino())
}

/// Opens a cgroup directory (`O_RDONLY|O_DIRECTORY|O_CLOEXEC`) for `BPF_LINK_CREATE`.
///
/// # Errors
/// `open(2)` failed (ENOENT, ENOTDIR).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)?;
    Ok(f.into())
}

/// Creates a cgroup (and missing parents); an existing one is fine.
///
/// # Errors
/// `mkdir(2)` failed (EACCES, ENOENT when no cgroup fs is below).
pub fn create(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Removes an empty cgroup; a missing one is fine.
///
/// # Errors
/// `rmdir(2)` failed (EBUSY while processes or child cgroups remain).
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Moves a process (all its threads) into the cgroup by writing `cgroup.procs`.
///
/// # Errors
/// Writing failed (ESRCH for a missing pid, EBUSY/EOPNOTSUPP for cgroups that can't hold
/// processes).
pub fn add_process(path: &Path, pid: u32) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path.join("cgroup.procs"))?;
    // One write(2): the kernel parses one pid per write.
    f.write_all(format!("{pid}\n").as_bytes())
}

/// The pids in a cgroup (its `cgroup.procs`).
///
/// # Errors
/// Reading `cgroup.procs` failed.
pub fn processes(path: &Path) -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(path.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// The cgroup v2 path of a process relative to the cgroup2 mount, from `/proc/PID/cgroup`
/// text: the `0::/path` line.
pub fn parse_proc_cgroup(text: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_end()))
}

/// The absolute cgroup v2 directory a process is in (`None` pid = this process).
///
/// # Errors
/// `/proc/PID/cgroup` or `/proc/mounts` can't be read, or lack a cgroup v2 entry (`NotFound`).
pub fn process_cgroup(pid: Option<u32>) -> io::Result<PathBuf> {
    let file = match pid {
        Some(p) => format!("/proc/{p}/cgroup"),
        None => "/proc/self/cgroup".to_string(),
    };
    let text = std::fs::read_to_string(&file)?;
    let rel = parse_proc_cgroup(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{file} has no cgroup v2 entry"),
        )
    })?;
    let rel = rel.strip_prefix("/").unwrap_or(&rel).to_path_buf();
    Ok(cgroup2_mount()?.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n\
        tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n\
        cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n\
        cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
        cgroup2 /other cgroup2 rw 0 0\n";

    #[test]
    fn finds_the_first_cgroup2_line() {
        assert_eq!(
            parse_cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
        assert_eq!(parse_cgroup2_mount(""), None);
    }

    #[test]
    fn unescapes_octal() {
        let t = "none /mnt/my\\040cgroups\\134x cgroup2 rw 0 0\n";
        assert_eq!(
            parse_cgroup2_mount(t),
            Some(PathBuf::from("/mnt/my cgroups\\x"))
        );
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(
            unescape_mount_field("a\\9b\\04"),
            OsString::from("a\\9b\\04")
        );
        assert_eq!(
            unescape_mount_field("tab\\011nl\\012"),
            OsString::from("tab\tnl\n")
        );
    }

    #[test]
    fn proc_cgroup_line() {
        let t = "12:cpu,cpuacct:/user.slice\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            parse_proc_cgroup(t),
            Some(PathBuf::from("/user.slice/session-1.scope"))
        );
        assert_eq!(parse_proc_cgroup("1:name=systemd:/\n"), None);
    }
}
