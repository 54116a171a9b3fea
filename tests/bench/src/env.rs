//! The environment of a benchmark run: tools, the weir binary under test, and the facts a
//! result is recorded with (date, kernel, commit).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc::output_of;

/// The workspace root (this crate lives in `tests/bench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Installs the Debian packages of the tools that are missing (`tool`, `package`).
///
/// # Errors
/// apt-get failed, or a tool is still missing afterwards.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<(), String> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(t, _)| !in_path(t))
        .map(|(_, p)| *p)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    let install = |pkgs: &[&str]| {
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(&missing) {
        // A fresh image may have no package lists yet.
        let _ = Command::new("apt-get").arg("update").status();
        if !install(&missing) {
            return Err(format!("apt-get install -y {} failed", missing.join(" ")));
        }
    }
    match tools.iter().find(|(t, _)| !in_path(t)) {
        Some((t, p)) => Err(format!("{t} still missing after installing {p}")),
        None => Ok(()),
    }
}

/// Builds the static musl release binary of weir, as the README says, and returns its path.
///
/// # Errors
/// rustup or cargo failed.
pub fn build_weir() -> Result<PathBuf, String> {
    const TARGET: &str = "x86_64-unknown-linux-musl";
    let root = workspace_root();
    if in_path("rustup") {
        let installed = output_of(&["rustup", "target", "list", "--installed"]).unwrap_or_default();
        if !installed.lines().any(|l| l.trim() == TARGET) {
            eprintln!("rustup target add {TARGET}");
            output_of(&["rustup", "target", "add", TARGET])?;
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("cargo build --release --target {TARGET} -p weir");
    let ok = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "-p", "weir"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("running {cargo}: {e}"))?
        .success();
    if !ok {
        return Err(format!(
            "cargo build --release --target {TARGET} -p weir failed (or pass --weir PATH)"
        ));
    }
    let bin = root.join(format!("target/{TARGET}/release/weir"));
    bin.canonicalize()
        .map_err(|e| format!("{}: {e}", bin.display()))
}

/// Size and linkage of an ELF binary.
#[derive(Debug, Clone)]
pub struct BinaryInfo {
    pub size: u64,
    /// Size after `strip --strip-all` (equal to `size` when it already was stripped).
    pub stripped_size: u64,
    pub was_stripped: bool,
    /// No `PT_INTERP`: nothing to load before it runs.
    pub is_static: bool,
}

/// Reads an ELF64 little-endian binary's program and section headers.
///
/// # Errors
/// The file cannot be read, is not ELF64, or strip failed.
pub fn binary_info(path: &Path, scratch: &Path) -> Result<BinaryInfo, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Err(format!("{} is not an ELF64 LE binary", path.display()));
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let table = |off: usize, ent: usize, num: usize| -> Result<Vec<usize>, String> {
        (0..num)
            .map(|i| off + i * ent)
            .map(|o| {
                if o + ent <= b.len() {
                    Ok(o)
                } else {
                    Err(format!("{}: truncated ELF headers", path.display()))
                }
            })
            .collect()
    };
    const PT_INTERP: u32 = 3;
    const SHT_SYMTAB: u32 = 2;
    let phdrs = table(u64_at(0x20), u16_at(0x36), u16_at(0x38))?;
    let shdrs = table(u64_at(0x28), u16_at(0x3a), u16_at(0x3c))?;
    let is_static = !phdrs.iter().any(|&o| u32_at(o) == PT_INTERP);
    let was_stripped = !shdrs.iter().any(|&o| u32_at(o + 4) == SHT_SYMTAB);
    let size = b.len() as u64;
    let stripped_size = if was_stripped {
        size
    } else {
        let copy = scratch.join("weir.stripped");
        std::fs::write(&copy, &b).map_err(|e| format!("{}: {e}", copy.display()))?;
        output_of(&["strip", "--strip-all", &copy.to_string_lossy()])?;
        std::fs::metadata(&copy)
            .map_err(|e| format!("{}: {e}", copy.display()))?
            .len()
    };
    Ok(BinaryInfo {
        size,
        stripped_size,
        was_stripped,
        is_static,
    })
}

/// The facts a result is recorded with.
#[derive(Debug, Clone)]
pub struct Facts {
    pub date: String,
    pub kernel: String,
    pub commit: String,
    pub cpus: usize,
    pub tools: Vec<String>,
}

/// Collects date, kernel, commit and the competitor's tool versions.
/// A benchmark run's scratch directory (rule files, configs, reports), removed on drop, also
/// when the run fails.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates `weir-bench-<bench>-<pid>` in the temp directory.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(bench: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("weir-bench-{bench}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every benchmark does first: refuse to run without root, install the competitors' tools
/// that are missing, mount bpffs, and read the machine's facts for the report.
///
/// # Errors
/// Not root, a tool that cannot be installed, or bpffs that cannot be mounted.
pub fn prelude(bench: &str, tools: &[(&str, &str)]) -> Result<Facts, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "{bench} builds namespaces and loads BPF programs: run it as root"
        ));
    }
    ensure_tools(tools)?;
    weir::sys::bpffs::ensure_mounted(Path::new("/sys/fs/bpf"))
        .map_err(|e| format!("mounting bpffs at /sys/fs/bpf: {e}"))?;
    Ok(facts())
}

pub fn facts() -> Facts {
    let first_line = |argv: &[&str]| {
        output_of(argv)
            .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| e)
    };
    let root = workspace_root();
    let root = root.to_string_lossy();
    let commit = output_of(&["git", "-C", &root, "rev-parse", "--short", "HEAD"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown (not a git checkout)".into());
    let dirty = output_of(&[
        "git",
        "-C",
        &root,
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])
    .is_ok_and(|s| !s.trim().is_empty());
    let bpftool = output_of(&["bpftool", "version"])
        .map(|s| s.lines().take(2).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|e| e);
    Facts {
        date: first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| e.to_string()),
        commit: if dirty {
            format!("{commit} (with uncommitted changes)")
        } else {
            commit
        },
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        tools: vec![
            bpftool,
            first_line(&["ip", "-V"]),
            first_line(&["tc", "-V"]),
        ],
    }
}
