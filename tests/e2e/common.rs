//! Helpers shared by the end-to-end tests.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use weir::sandbox::Sandbox;
use weir::status::Status;
use weir::sys::{bpf, cgroup, netns};
use weir::Dataplane;

/// Fails the test unless it runs as root: these tests load real programs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests load BPF programs and need root"
    );
}

/// A fresh sandbox for one test.
pub fn sandbox(tag: &str) -> Sandbox {
    require_root();
    Sandbox::new(tag).unwrap_or_else(|e| panic!("building the test sandbox: {e}"))
}

/// Path of the `weir` binary under test.
pub fn weir_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir"))
}

/// Runs `weir` with `args`.
pub fn weir(args: &[&str]) -> Output {
    Command::new(weir_exe())
        .args(args)
        .output()
        .expect("running weir")
}

/// Runs `weir --netns <b> --pin-dir <pin> args...` for the sandbox.
pub fn weir_in(sb: &Sandbox, args: &[&str]) -> Output {
    let pin = sb.pin_dir.to_string_lossy().into_owned();
    let mut all = vec!["--netns", sb.ns_b.as_str(), "--pin-dir", pin.as_str()];
    all.extend_from_slice(args);
    weir(&all)
}

/// Combined stdout and stderr.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Asserts success and returns the output text.
pub fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "weir failed ({}):\n{t}", o.status);
    t
}

/// A config file in a temp dir that lives as long as the value.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(sb: &Sandbox, body: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{}-{n}.conf", sb.ns_b));
        let mut f = std::fs::File::create(&path).expect("writing config");
        f.write_all(body.as_bytes()).expect("writing config");
        Self { path }
    }

    pub fn arg(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads `weir status` through the library, inside the host namespace.
pub fn status(sb: &Sandbox) -> Status {
    let dp = Dataplane::new(sb.pin_dir.clone());
    sb.in_b(|| dp.status()).expect("netns").expect("status")
}

/// Packets counted for (interface, hook).
pub fn packets(st: &Status, ifname: &str, hook: &str) -> u64 {
    st.if_counters
        .iter()
        .find(|c| c.interface == ifname && c.hook == hook)
        .map(|c| c.counter.packets)
        .unwrap_or(0)
}

/// Packets the XDP prefilter counted for `reason` (`passed`, `dropped`, `failsafe`, `unparsed`).
pub fn prefilter(st: &Status, reason: &str) -> u64 {
    st.prefilter
        .iter()
        .find(|(r, _)| r == reason)
        .map(|(_, c)| c.packets)
        .unwrap_or(0)
}

/// Sends `n` UDP datagrams from namespace `a` to `to` (nobody needs to listen).
pub fn send_udp(sb: &Sandbox, to: SocketAddr, n: u32) {
    sb.in_a(|| {
        let s = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).expect("bind");
        for i in 0..n {
            s.send_to(format!("datagram {i}").as_bytes(), to)
                .expect("send_to");
        }
    })
    .expect("netns a");
}

/// Waits until `f` is true (kernel objects are freed asynchronously after their last reference).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when a program with this id still exists in the kernel.
pub fn prog_exists(id: u32) -> bool {
    bpf::prog_fd_by_id(id).is_ok()
}

/// True when a link with this id still exists in the kernel.
pub fn link_exists(id: u32) -> bool {
    bpf::link_fd_by_id(id).is_ok()
}

/// Runs `f` inside the sandbox's host namespace with a netlink socket.
pub fn with_nl_b<T: Send>(
    sb: &Sandbox,
    f: impl FnOnce(&mut weir::sys::netlink::Netlink, u32) -> T + Send,
) -> T {
    let ifname = sb.veth_b.clone();
    sb.in_b(move || {
        let mut nl = weir::sys::netlink::Netlink::open().expect("netlink");
        let idx = nl
            .link_index(&ifname)
            .expect("link_index")
            .expect("veth exists");
        f(&mut nl, idx)
    })
    .expect("netns b")
}

/// Opens the sandbox's host namespace.
pub fn ns_b(sb: &Sandbox) -> std::os::fd::OwnedFd {
    netns::open(&sb.ns_b).expect("open netns b")
}

/// A path below the sandbox's pin dir.
pub fn pin(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.pin_dir.join(rel)
}

/// Everything weir could have left behind for this sandbox, as the kernel reports it.
pub fn residue(sb: &weir::sandbox::Sandbox) -> Vec<String> {
    let mut left = Vec::new();
    if sb.pin_dir.exists() {
        left.push(format!("pin dir {} exists", sb.pin_dir.display()));
    }
    let (xdp, tcx_in, tcx_out, clsact) = with_nl_b(sb, |nl, idx| {
        let xdp = nl
            .xdp_query(idx)
            .expect("xdp_query")
            .prog_id
            .filter(|&id| id != 0);
        let q = |t| {
            bpf::prog_query(bpf::LinkTarget::Ifindex(idx), t, 0)
                .map(|q| q.prog_ids)
                .unwrap_or_default()
        };
        (
            xdp,
            q(bpf::consts::BPF_TCX_INGRESS),
            q(bpf::consts::BPF_TCX_EGRESS),
            nl.clsact_exists(idx).expect("qdisc"),
        )
    });
    if let Some(id) = xdp {
        left.push(format!("XDP program {id} on {}", sb.veth_b));
    }
    if !tcx_in.is_empty() || !tcx_out.is_empty() {
        left.push(format!(
            "TCX programs {tcx_in:?} {tcx_out:?} on {}",
            sb.veth_b
        ));
    }
    if clsact {
        left.push(format!("clsact qdisc on {}", sb.veth_b));
    }
    // The mesh's inbound capture (sk_lookup) in the workload namespace.
    let ns = ns_b(sb);
    let ids = bpf::prog_query(
        bpf::LinkTarget::Fd(ns.as_fd()),
        bpf::consts::BPF_SK_LOOKUP,
        0,
    )
    .map(|q| q.prog_ids)
    .unwrap_or_default();
    if !ids.is_empty() {
        left.push(format!("sk_lookup programs {ids:?} in {}", sb.ns_b));
    }
    let dir = cgroup::open_dir(&sb.cgroup_dir).expect("cgroup dir");
    // Every hook weir attaches at a cgroup, from the embedded program lists (connect-time LB
    // with its sock_release, and the service mesh: sockops and getsockopt too).
    let mut hooks: Vec<u32> = weir::embedded::PROGS_SOCK
        .iter()
        .map(|(_, hook)| hook.attach_type())
        .chain([weir::object::CgroupSockHook::SockRelease.attach_type()])
        .chain(
            weir::embedded::PROGS_MESH
                .iter()
                .map(|(_, hook)| hook.attach_type()),
        )
        .collect();
    hooks.sort_unstable();
    hooks.dedup();
    for t in hooks {
        let ids = bpf::prog_query(bpf::LinkTarget::Fd(dir.as_fd()), t, 0)
            .expect("cgroup query")
            .prog_ids;
        if !ids.is_empty() {
            left.push(format!("cgroup programs {ids:?} (attach type {t})"));
        }
    }
    left
}

/// "The next version" of weir for upgrade tests: programs/tests/upgrade.o (xdp_prefilter,
/// tc_ingress and tc_egress with the same names and maps but other code) and the embedded
/// sock_addr.o, loading into `sb`'s pin dir.
pub fn next_build(sb: &Sandbox) -> Dataplane {
    Dataplane::with_objects(
        sb.pin_dir.clone(),
        vec![
            (
                "upgrade.o".into(),
                include_bytes!("../../programs/tests/upgrade.o").to_vec(),
            ),
            (
                "sock_addr.o".into(),
                include_bytes!("../../programs/sock_addr.o").to_vec(),
            ),
        ],
    )
}
