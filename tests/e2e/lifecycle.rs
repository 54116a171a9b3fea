//! Lifecycle: weir as a minimal OS image runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir::sandbox::ADDR_B4;

use crate::common::*;

/// The static (musl) release binary of this source tree (cargo rebuilds it if it is stale; CI
/// has built it before the tests). Needs the `x86_64-unknown-linux-musl` Rust target.
fn static_weir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = root.join("target/x86_64-unknown-linux-musl/release/weir");
    {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "x86_64-unknown-linux-musl",
                "-p",
                "weir",
            ])
            .status()
            .expect("running cargo to build the static binary");
        assert!(
            st.success(),
            "building the static weir failed (is the target installed? \
             `rustup target add x86_64-unknown-linux-musl`)"
        );
    }
    exe
}

/// A directory that is the whole root file system of the chroot: the binary, its config, and
/// mount points for /proc and /sys. Removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(tag: &str, exe: &Path, config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weir-root-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["proc", "sys"] {
            std::fs::create_dir_all(dir.join(sub)).expect("chroot dirs");
        }
        std::fs::copy(exe, dir.join("weir")).expect("copying weir into the chroot");
        std::fs::write(dir.join("weir.conf"), config).expect("chroot config");
        Self(dir)
    }

    /// Runs `/weir args...` chrooted into this root, in namespace `netns` (a private mount
    /// namespace holds the /proc and /sys mounts, so nothing leaks to the host).
    fn weir(&self, netns: &str, args: &[&str]) -> Output {
        let root = self.0.display().to_string();
        let script = format!(
            "mount -t proc proc {root}/proc && mount --rbind /sys {root}/sys && \
             exec chroot {root} /weir \"$@\""
        );
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-c", &script, "weir-in-chroot"])
            .args(args)
            .output()
            .expect("running nsenter/unshare/chroot (util-linux, coreutils)")
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Needs util-linux (`nsenter`, `unshare`, `mount`), coreutils `chroot` and the musl target.
#[test]
fn the_static_binary_loads_from_a_root_with_nothing_else() {
    let sb = sandbox("chr");
    let exe = static_weir();
    let config = format!(
        "interface {} role=host xdp=native tc=on\ncgroup {}\nprefilter deny 192.0.2.0/24\n\
         service web 10.96.0.1:80/tcp backends={ADDR_B4}:7001\n",
        sb.veth_b, sb.cgroup
    );
    let root = Root::new("chr", &exe, &config);
    // Nothing in the root but the binary and its config: no libc, no loader, no /etc.
    let mut names: Vec<String> = std::fs::read_dir(&root.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["proc", "sys", "weir", "weir.conf"]);

    let pin = sb.pin_dir.display().to_string();
    let out = ok(root.weir(
        &sb.ns_b,
        &["--pin-dir", &pin, "load", "--config", "/weir.conf"],
    ));
    assert!(out.contains("xdp"), "{out}");
    // Seen from outside the chroot: everything attached and filled.
    let st = status(&sb);
    assert!(!st.attachments.is_empty(), "{st}");
    assert_eq!(
        st.deny_hits
            .iter()
            .map(|(c, _)| c.as_str())
            .collect::<Vec<_>>(),
        ["192.0.2.0/24"]
    );
    assert_eq!(st.services.len(), 1, "{st}");
    let out = ok(root.weir(&sb.ns_b, &["--pin-dir", &pin, "status"]));
    assert!(out.contains("deny list: 1 entries"), "{out}");
    ok(root.weir(&sb.ns_b, &["--pin-dir", &pin, "unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}
