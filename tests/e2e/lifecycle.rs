//! Lifecycle: weir as a minimal OS image runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir::sandbox::ADDR_B4;
use weir::Dataplane;

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

/// ICMP echo request `seq` with identifier `id`, checksummed.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"weir-hitless");
    let mut sum: u32 = m
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    m[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    m
}

/// Needs: XDP link and TCX link updates (kernel 6.6+), raw ICMP sockets (root).
#[test]
fn twenty_upgrades_under_traffic_lose_no_packet_and_keep_the_tcp_connection() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use nix::sys::socket::{
        recvfrom, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
        SockaddrIn,
    };

    const UPGRADES: usize = 20;
    let sb = sandbox("hit");
    // A policy on b's interface: the stream and the pings in, nothing out but what conntrack
    // allows (the replies), so the flows live in conntrack across the upgrades.
    let text = format!(
        "interface {} role=host xdp=native tc=on labels=app:web\ncgroup {}\n\
         prefilter deny 192.0.2.0/24\nservice web 10.96.0.1:80/tcp backends={ADDR_B4}:7001\n\
         policy web selector=\"app == 'web'\" types=ingress,egress\n\
         rule web ingress allow proto=tcp dport=7100\n\
         rule web ingress allow proto=icmp icmp-type=8\n",
        sb.veth_b, sb.cgroup
    );
    let cfg = weir::config::parse("t", &text).expect("config");
    let current = Dataplane::new(sb.pin_dir.clone());
    let next = next_build(&sb);
    sb.in_b(|| current.load(&cfg)).unwrap().expect("first load");

    // A TCP stream from a to b (about 200 MB/s), checked byte for byte by the receiver.
    let listener = sb
        .in_b(|| TcpListener::bind((ADDR_B4, 7100)))
        .unwrap()
        .expect("listen");
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let rx = {
        let received = received.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut buf = [0u8; 8192];
            let mut at: u64 = 0;
            loop {
                let n = conn.read(&mut buf).map_err(|e| format!("receiver: {e}"))?;
                if n == 0 {
                    return Ok(());
                }
                for b in &buf[..n] {
                    if *b != (at % 251) as u8 {
                        return Err(format!("byte {at} corrupted"));
                    }
                    at += 1;
                }
                received.store(at, Ordering::Relaxed);
            }
        })
    };
    let mut stream = sb
        .in_a(|| TcpStream::connect(SocketAddr::from((ADDR_B4, 7100))))
        .unwrap()
        .expect("connect");
    let tx = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<u64, String> {
            let mut sent: u64 = 0;
            let mut block = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                for b in block.iter_mut() {
                    *b = (sent % 251) as u8;
                    sent += 1;
                }
                stream
                    .write_all(&block)
                    .map_err(|e| format!("sender, after {sent} bytes: {e}"))?;
                // Steady, not flat out: the tests run in parallel on few cores.
                if sent.is_multiple_of(64 * 4096) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(sent)
        })
    };

    // A ping flood from a to b: one echo request per millisecond, every reply counted.
    let icmp = sb
        .in_a(|| {
            socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::Icmp,
            )
        })
        .unwrap()
        .expect("raw ICMP socket");
    let id = (std::process::id() & 0xffff) as u16;
    let replies = Arc::new(AtomicU64::new(0));
    let pinger = {
        let (stop, replies) = (stop.clone(), replies.clone());
        std::thread::spawn(move || -> u64 {
            use std::os::fd::AsRawFd;
            let to = SockaddrIn::from(std::net::SocketAddrV4::new(ADDR_B4, 0));
            let reader = {
                let fd = icmp.as_raw_fd();
                let replies = replies.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    let mut idle = 0;
                    while idle < 1000 {
                        // Non-blocking reads: the flood's end is seen as a second of silence.
                        match recvfrom::<SockaddrIn>(fd, &mut buf) {
                            Ok((n, _)) if n >= 28 => {
                                let ihl = usize::from(buf[0] & 0xf) * 4;
                                let icmp = &buf[ihl..n];
                                if icmp.len() >= 8
                                    && icmp[0] == 0
                                    && u16::from_be_bytes([icmp[4], icmp[5]]) == id
                                {
                                    replies.fetch_add(1, Ordering::Relaxed);
                                }
                                idle = 0;
                            }
                            _ => {
                                if stop.load(Ordering::Relaxed) {
                                    idle += 1;
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                })
            };
            nix::fcntl::fcntl(
                icmp.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .expect("non-blocking");
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = echo_request(id, sent as u16);
                if sendto(icmp.as_raw_fd(), &m, &to, MsgFlags::empty()).is_ok() {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            reader.join().expect("reader");
            sent
        })
    };

    std::thread::sleep(Duration::from_millis(300));
    let ct_id = |st: &weir::status::Status| {
        st.maps
            .iter()
            .find(|m| m.name == "pol_ct")
            .map(|m| m.id)
            .expect("pol_ct in status")
    };
    let before = status(&sb);
    assert!(before.conntrack_entries.unwrap_or(0) >= 2, "{before}");
    for i in 0..UPGRADES {
        let (dp, what) = if i % 2 == 0 {
            (&next, "the next build")
        } else {
            (&current, "the current build")
        };
        let report = sb
            .in_b(|| dp.load(&cfg))
            .unwrap()
            .unwrap_or_else(|e| panic!("upgrade {i} to {what}: {e}"));
        let replaced = report
            .attachments
            .iter()
            .filter(|(_, _, c)| *c == weir::dataplane::Change::Replaced)
            .count();
        assert_eq!(
            replaced, 3,
            "upgrade {i}: xdp and both tc hooks replaced: {report}"
        );
        assert!(report.maps_created.is_empty(), "upgrade {i}: {report}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let sent_bytes = tx
        .join()
        .unwrap()
        .expect("the TCP stream broke during the upgrades");
    rx.join().unwrap().expect("receiver");
    let pings = pinger.join().unwrap();
    let got = replies.load(Ordering::Relaxed);
    eprintln!(
        "{UPGRADES} upgrades: {sent_bytes} TCP bytes delivered in order, {got} of {pings} pings answered"
    );
    assert_eq!(received.load(Ordering::Relaxed), sent_bytes);
    assert!(pings > 500, "the flood ran: {pings}");
    assert_eq!(got, pings, "ping replies lost during the upgrades");

    // The conntrack table is the one from before the upgrades, with the flows still in it.
    let after = status(&sb);
    assert_eq!(
        ct_id(&after),
        ct_id(&before),
        "conntrack map replaced:\n{after}"
    );
    assert!(after.conntrack_entries.unwrap_or(0) >= 2, "{after}");

    sb.in_b(|| current.unload()).unwrap().expect("unload");
    assert_eq!(residue(&sb), Vec::<String>::new());
}

/// What a converged dataplane looks like, for comparing runs: attachments (pin → program name),
/// the deny list and the services.
fn shape(st: &weir::status::Status) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
    let mut attachments: Vec<(String, String)> = st
        .attachments
        .iter()
        .map(|a| (a.pin.clone(), a.prog_name.clone()))
        .collect();
    attachments.sort();
    let mut deny: Vec<String> = st.deny_hits.iter().map(|(c, _)| c.clone()).collect();
    deny.sort();
    let mut services: Vec<String> = st.services.iter().map(|s| s.to_string()).collect();
    services.sort();
    (attachments, deny, services)
}

/// `weir args...` in the sandbox, SIGKILLed after `delay` unless it finished first.
fn killed_after(sb: &weir::sandbox::Sandbox, args: &[&str], delay: std::time::Duration) -> bool {
    let pin = sb.pin_dir.to_string_lossy().into_owned();
    let mut child = Command::new(weir_exe())
        .args(["--netns", sb.ns_b.as_str(), "--pin-dir", pin.as_str()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning weir");
    std::thread::sleep(delay);
    let finished = child.try_wait().expect("wait").is_some();
    if !finished {
        let _ = child.kill(); // SIGKILL
    }
    let _ = child.wait();
    !finished
}

/// Kills `weir load`, `weir apply` and `weir unload` at spread-out points, each followed by a
/// `weir load` that must converge to exactly the configured dataplane (or an unload that must
/// leave nothing).
fn killed_commands_converge(tag: &str, attach: &str) {
    use std::time::Instant;
    const KILLS: u32 = 24;
    let sb = sandbox(tag);
    let list = |n: u32, base: u8| -> String {
        (0..n)
            .map(|i| format!("{base}.{}.{}.0/24", i / 200, i % 200))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Old and new differ in every part: deny list, and the port the host endpoint's policy allows.
    let body = |deny: &str, port: u16| {
        format!(
            "interface {} role=host xdp=native tc=on attach={attach} labels=app:web\ncgroup {}\n\
             prefilter deny {deny}\nservice web 10.96.0.1:80/tcp backends={ADDR_B4}:7001\n\
             policy web selector=\"app == 'web'\"\n\
             rule web ingress allow proto=tcp dport={port}\n",
            sb.veth_b, sb.cgroup
        )
    };
    let (old_text, new_text) = (body(&list(3000, 10), 80), body(&list(3000, 11), 81));
    let old = ConfigFile::new(&sb, &old_text);
    let new = ConfigFile::new(&sb, &new_text);
    let (old_cfg, new_cfg) = (
        weir::config::parse("old", &old_text).expect("old config"),
        weir::config::parse("new", &new_text).expect("new config"),
    );
    // With the TC program attached, the policy in force is the old one or the new one, whole.
    let policy_whole = |when: &str| {
        let st = status(&sb);
        if st.attachments.iter().any(|a| a.prog_name == "tc_ingress") {
            let dp = Dataplane::new(sb.pin_dir.clone());
            let (o, n) = sb
                .in_b(|| {
                    (
                        dp.policy_in_force(&old_cfg).expect("reading the policy"),
                        dp.policy_in_force(&new_cfg).expect("reading the policy"),
                    )
                })
                .expect("netns");
            assert!(
                o || n,
                "{when}: the policy in force is neither the old nor the new one"
            );
        }
    };
    // The reference: a clean load of each config, and how long a cold load takes.
    let t = Instant::now();
    ok(weir_in(&sb, &["load", "--config", &old.arg()]));
    let cold = t.elapsed();
    let want_old = shape(&status(&sb));
    ok(weir_in(&sb, &["apply", &new.arg()]));
    let want_new = shape(&status(&sb));
    assert_ne!(want_old, want_new);
    ok(weir_in(&sb, &["unload"]));

    let mut killed = 0;
    for i in 0..KILLS {
        // Kill points spread over a whole command, from its first instructions to its end.
        let delay = cold * (i % 12) / 11;
        let (args, want): (Vec<String>, _) = if i % 3 == 2 {
            // A killed apply on a loaded dataplane.
            ok(weir_in(&sb, &["load", "--config", &old.arg()]));
            (vec!["apply".into(), new.arg()], &want_new)
        } else {
            (vec!["load".into(), "--config".into(), new.arg()], &want_new)
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        killed += u32::from(killed_after(&sb, &args, delay));
        policy_whole(&format!("kill {i} ({args:?} after {delay:?})"));
        let out = weir_in(&sb, &["load", "--config", &new.arg()]);
        assert!(
            out.status.success(),
            "kill {i} ({args:?} after {delay:?}): the next load did not converge:\n{}",
            text(&out)
        );
        assert_eq!(
            &shape(&status(&sb)),
            want,
            "kill {i} ({args:?} after {delay:?})"
        );
        let dp = Dataplane::new(sb.pin_dir.clone());
        assert!(
            sb.in_b(|| dp.policy_in_force(&new_cfg))
                .expect("netns")
                .expect("reading the policy"),
            "kill {i}: the converged policy is not the new one"
        );
        if i % 2 == 0 {
            // Every other time an unload is killed too; the next unload must still leave nothing.
            if i % 4 == 0 {
                killed_after(&sb, &["unload"], delay / 4);
            }
            ok(weir_in(&sb, &["unload"]));
            assert_eq!(residue(&sb), Vec::<String>::new(), "kill {i}");
        }
    }
    eprintln!(
        "{tag}: {killed} of {KILLS} commands killed mid-way (cold load {cold:?}), each converged"
    );
    assert!(
        killed >= KILLS / 2,
        "too few kills landed mid-command: {killed}"
    );
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

/// Needs: XDP and TCX links, cgroup links.
#[test]
fn sigkilled_loads_and_applies_converge_through_links() {
    killed_commands_converge("kil", "link");
}

/// Needs: netlink XDP and clsact + cls_bpf.
#[test]
fn sigkilled_loads_and_applies_converge_through_netlink() {
    killed_commands_converge("kin", "legacy");
}

/// Needs: XDP link updates. A map pinned with another layout version (as an older weir leaves
/// it) is rebuilt from the config by `weir load`, and the programs move to the new map.
#[test]
fn a_map_of_another_layout_version_is_rebuilt_from_the_config() {
    use weir::sandbox::ADDR_A4;
    let sb = sandbox("lay");
    let cfg = ConfigFile::new(
        &sb,
        &format!(
            "interface {} role=host xdp=native tc=on\nprefilter deny 192.0.2.0/24 {ADDR_A4}\n",
            sb.veth_b
        ),
    );
    ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    // What an older weir would have left: the same map under another layout version.
    let maps = sb.pin_dir.join("maps");
    std::fs::rename(maps.join("prefilter_v4@v2"), maps.join("prefilter_v4@v1")).unwrap();

    let out = weir_in(&sb, &["apply", &cfg.arg()]);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "apply must not write into a map of another layout: {t}"
    );
    assert!(
        t.contains("layout version 1") && t.contains("run `weir load`"),
        "{t}"
    );

    let out = ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    assert!(
        out.contains("map prefilter_v4: layout v1 -> v2: rebuilt from the config"),
        "{out}"
    );
    assert!(
        out.contains("xdp_prefilter replaced"),
        "the program moves to the new map: {out}"
    );
    assert!(!maps.join("prefilter_v4@v1").exists());
    assert!(maps.join("prefilter_v4@v2").exists());
    // The running program counts against the rebuilt map's entries.
    send_udp(&sb, std::net::SocketAddr::from((ADDR_B4, 9)), 3);
    let st = status(&sb);
    let hits = st
        .deny_hits
        .iter()
        .find(|(c, _)| *c == format!("{ADDR_A4}/32"))
        .map(|(_, h)| *h);
    assert_eq!(hits, Some(3), "{st}");
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}
