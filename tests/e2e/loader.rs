//! The loader on the real kernel: load, attach, count, idempotence, zero-residue unload, and the
//! refusals (corrupted object, verifier rejection, stale pinned map, foreign program).
//! Kernel features: BTF, XDP (native on veth) with bpf_link, TCX, cgroup links, bpffs.

use std::os::fd::AsFd;

use weir::error::Error;
use weir::sandbox::{ADDR_B4, ADDR_B6};
use weir::sys::{bpf, cgroup};
use weir::Dataplane;

use crate::common::*;

fn full_config(sb: &weir::sandbox::Sandbox, extra: &str) -> String {
    format!(
        "interface {} role=host xdp=native tc=on {extra}\ncgroup {}\n",
        sb.veth_b, sb.cgroup
    )
}

#[test]
fn load_attaches_named_programs_with_btf_and_counts_packets() {
    let sb = sandbox("ld");
    let cfg = ConfigFile::new(&sb, &full_config(&sb, ""));
    let out = ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    assert!(out.contains("attached"), "{out}");

    let st = status(&sb);
    let pins: Vec<&str> = st.attachments.iter().map(|a| a.pin.as_str()).collect();
    let veth = &sb.veth_b;
    for want in [
        format!("xdp@{veth}"),
        format!("tc-ingress@{veth}"),
        format!("tc-egress@{veth}"),
    ] {
        assert!(
            pins.contains(&want.as_str()),
            "{want} missing from {pins:?}"
        );
    }
    assert!(
        pins.iter().any(|p| p.starts_with("connect4@"))
            && pins.iter().any(|p| p.starts_with("connect6@")),
        "{pins:?}"
    );
    for a in &st.attachments {
        assert_eq!(a.via, "link", "{a:?}");
        let fd = bpf::prog_fd_by_id(a.prog_id).expect("attached program exists");
        let info = bpf::prog_info(fd.as_fd()).expect("prog info");
        assert!(!info.name.is_empty(), "program {} has no name", a.prog_id);
        assert_ne!(
            info.btf_id, 0,
            "program '{}' was loaded without BTF",
            info.name
        );
    }
    let names: Vec<&str> = st
        .attachments
        .iter()
        .map(|a| a.prog_name.as_str())
        .collect();
    for want in [
        "xdp_prefilter",
        "tc_ingress",
        "tc_egress",
        "sock_connect4",
        "sock_connect6",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    // Warm up neighbour resolution, then count exactly what we send.
    send_udp(&sb, (ADDR_B4, 9).into(), 1);
    send_udp(&sb, (ADDR_B6, 9).into(), 1);
    eventually("warm-up datagrams counted", || {
        packets(&status(&sb), veth, "tc-ingress") >= 2
    });
    let before = status(&sb);
    send_udp(&sb, (ADDR_B4, 9).into(), 20);
    send_udp(&sb, (ADDR_B6, 9).into(), 20);
    let after = status(&sb);
    let deltas = [
        (
            "xdp passed",
            prefilter(&after, "passed") - prefilter(&before, "passed"),
        ),
        (
            "tc-ingress",
            packets(&after, veth, "tc-ingress") - packets(&before, veth, "tc-ingress"),
        ),
    ];
    for (hook, delta) in deltas {
        // 40 datagrams; allow for a neighbour probe or two racing with them.
        assert!(
            (40..=44).contains(&delta),
            "{hook} counted {delta} packets for 40 datagrams"
        );
    }
    assert!(
        packets(&after, veth, "tc-egress") > 0,
        "port-unreachable replies leave through tc egress"
    );

    // The connect-time hooks count connects of processes in the cgroup.
    let server = weir::demo::EchoServer::start(ns_b(&sb).as_fd()).expect("echo server");
    weir::demo::run_client(&weir_exe(), &sb, 3).expect("demo client");
    drop(server);
    let st = status(&sb);
    let sock = |h: &str| {
        st.sock_counters
            .iter()
            .find(|(n, _)| n == h)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    };
    assert_eq!(sock("connect4"), 6, "3 TCP + 3 UDP connects over IPv4");
    assert_eq!(sock("connect6"), 3, "3 TCP connects over IPv6");

    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn second_load_is_a_noop_and_unload_leaves_nothing() {
    let sb = sandbox("nop");
    let cfg = ConfigFile::new(&sb, &full_config(&sb, ""));
    ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    let first = status(&sb);
    let out = ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    assert!(
        out.contains("nothing to do"),
        "second load changed something:\n{out}"
    );
    let second = status(&sb);
    assert_eq!(
        first.attachments, second.attachments,
        "ids changed across a no-op load"
    );
    let map_ids = |s: &weir::status::Status| s.maps.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(map_ids(&first), map_ids(&second));

    let prog_ids: Vec<u32> = first.attachments.iter().map(|a| a.prog_id).collect();
    let link_ids: Vec<u32> = first.attachments.iter().filter_map(|a| a.link_id).collect();
    let out = ok(weir_in(&sb, &["unload"]));
    assert!(out.contains("removed"), "{out}");
    assert_eq!(residue(&sb), Vec::<String>::new());
    eventually("programs freed", || {
        prog_ids.iter().all(|&id| !prog_exists(id))
    });
    eventually("links freed", || {
        link_ids.iter().all(|&id| !link_exists(id))
    });
    let out = ok(weir_in(&sb, &["unload"]));
    assert!(out.contains("nothing to unload"), "{out}");
}

#[test]
fn legacy_attach_uses_netlink_and_clsact_and_unload_removes_the_qdisc() {
    let sb = sandbox("leg");
    let cfg = ConfigFile::new(
        &sb,
        &format!("interface {} xdp=generic tc=on attach=legacy\n", sb.veth_b),
    );
    ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    let st = status(&sb);
    assert_eq!(st.attachments.len(), 3, "{st}");
    assert!(st.attachments.iter().all(|a| a.via == "netlink"), "{st}");
    let (xdp, filters, clsact) = with_nl_b(&sb, |nl, idx| {
        (
            nl.xdp_query(idx).expect("xdp"),
            nl.cls_bpf_list(idx, weir::sys::netlink::TcDirection::Ingress)
                .expect("filters"),
            nl.clsact_exists(idx).expect("qdisc"),
        )
    });
    assert!(clsact);
    assert_eq!(
        xdp.skb_prog_id.filter(|&i| i != 0),
        xdp.prog_id,
        "generic mode asked for: {xdp:?}"
    );
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert!(filters[0].direct_action);

    send_udp(&sb, (ADDR_B4, 9).into(), 5);
    eventually("legacy programs count", || {
        packets(&status(&sb), &sb.veth_b, "tc-ingress") >= 5
    });
    let out = ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    assert!(out.contains("nothing to do"), "{out}");
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn removing_an_interface_from_the_config_detaches_it() {
    let sb = sandbox("rm");
    let cfg = ConfigFile::new(&sb, &full_config(&sb, ""));
    ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    let only_cgroup = ConfigFile::new(&sb, &format!("cgroup {}\n", sb.cgroup));
    let out = ok(weir_in(&sb, &["load", "--config", &only_cgroup.arg()]));
    assert!(out.contains("detached"), "{out}");
    let st = status(&sb);
    assert!(
        st.attachments.iter().all(|a| !a.pin.contains(&sb.veth_b)),
        "{st}"
    );
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

/// An interface's counters (its `if_counters` slot) stay with it: across a load that drops it
/// (`weir status` still shows them, as it shows those of any interface weir counted) and one
/// that brings it back, which counts on from there.
#[test]
fn interface_counters_stay_with_their_interface_across_loads() {
    let sb = sandbox("ctr");
    let veth = sb.veth_b.as_str();
    let with = ConfigFile::new(&sb, &format!("interface {veth} xdp=off\n"));
    ok(weir_in(&sb, &["load", "--config", &with.arg()]));
    send_udp(&sb, (ADDR_B4, 9).into(), 5);
    eventually("datagrams counted", || {
        packets(&status(&sb), veth, "tc-ingress") >= 5
    });
    let first = packets(&status(&sb), veth, "tc-ingress");

    let without = ConfigFile::new(&sb, &format!("cgroup {}\n", sb.cgroup));
    ok(weir_in(&sb, &["load", "--config", &without.arg()]));
    // The interface's own IPv6 traffic (neighbour discovery, MLD) may have been counted after
    // `first` was read, until the detach: the count read now is what must stay.
    let detached = packets(&status(&sb), veth, "tc-ingress");
    assert!(detached >= first, "{detached} < {first}");
    send_udp(&sb, (ADDR_B4, 9).into(), 5);
    let st = status(&sb);
    assert!(st.attachments.iter().all(|a| !a.pin.contains(veth)), "{st}");
    assert_eq!(packets(&st, veth, "tc-ingress"), detached, "{st}");

    ok(weir_in(&sb, &["load", "--config", &with.arg()]));
    send_udp(&sb, (ADDR_B4, 9).into(), 5);
    eventually("counted on from where it was", || {
        packets(&status(&sb), veth, "tc-ingress") >= detached + 5
    });
    // One row per interface and hook: the counters were not split over two slots.
    let st = status(&sb);
    let rows = st
        .if_counters
        .iter()
        .filter(|c| c.interface == veth && c.hook == "tc-ingress")
        .count();
    assert_eq!(rows, 1, "{st}");
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn corrupted_object_is_rejected_before_anything_is_created() {
    let sb = sandbox("cor");
    let good = include_bytes!("../../programs/xdp.o");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("zeroed header", {
            let mut b = good.to_vec();
            b[..64].fill(0);
            b
        }),
        ("garbage", b"definitely not an ELF file".to_vec()),
    ];
    for (what, bytes) in cases {
        let dp = Dataplane::with_objects(sb.pin_dir.clone(), vec![("xdp.o".into(), bytes)]);
        let cfg = weir::config::parse("t", &format!("interface {}\n", sb.veth_b)).expect("config");
        let err = sb.in_b(|| dp.load(&cfg)).expect("netns").expect_err(what);
        let msg = err.to_string();
        assert!(matches!(err, Error::Object { .. }), "{what}: {msg}");
        assert!(msg.contains("object 'xdp.o'"), "{what}: {msg}");
        assert!(
            !sb.pin_dir.exists(),
            "{what}: a rejected object left a pin dir"
        );
    }
    // Flipping bytes anywhere must give Ok or an error, never a panic or abort.
    for i in (0..good.len()).step_by(7) {
        let mut b = good.to_vec();
        b[i] ^= 0xa5;
        let _ = weir::object::parse_and_verify("flipped.o", &b);
    }
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn verifier_rejection_names_the_program_and_carries_the_log() {
    require_root();
    let invalid = include_bytes!("../../programs/tests/invalid.o").to_vec();
    let dp = Dataplane::with_objects("/sys/fs/bpf/unused", vec![("invalid.o".into(), invalid)]);
    let err = dp.verify().expect_err("the verifier must reject invalid.o");
    let Error::Verifier { program, log, .. } = &err else {
        panic!("not a verifier error: {err}")
    };
    assert_eq!(program, "xdp_invalid");
    assert!(
        log.contains("invalid access to packet") || log.contains("R"),
        "log: {log}"
    );
    assert!(!log.contains('\0'), "log must be cut at the first NUL");
    let msg = err.to_string();
    assert!(
        msg.contains("prog 'xdp_invalid'") && msg.contains("verifier log:"),
        "{msg}"
    );
}

#[test]
fn stale_pinned_map_of_another_shape_is_refused_and_of_another_layout_rebuilt() {
    let sb = sandbox("stl");
    let cfg = ConfigFile::new(&sb, &format!("interface {}\n", sb.veth_b));
    // A map pinned where weir expects if_counters (this layout), but with a different value size.
    weir::sys::bpffs::ensure_mounted(std::path::Path::new("/sys/fs/bpf")).expect("bpffs");
    std::fs::create_dir_all(pin(&sb, "maps")).expect("mkdir");
    let def = maps_schema::find("if_counters").expect("schema");
    let fd = bpf::map_create(&bpf::MapCreate {
        name: "if_counters",
        map_type: def.map_type as u32,
        key_size: def.key.size,
        value_size: def.value.size + 8,
        max_entries: def.max_entries,
        flags: 0,
        btf_fd: None,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        map_extra: 0,
    })
    .expect("map_create");
    let path = pin(&sb, &format!("maps/if_counters@v{}", def.layout_version));
    bpf::obj_pin(fd.as_fd(), &path).expect("pin");
    let out = weir_in(&sb, &["load", "--config", &cfg.arg()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("map 'if_counters'")
            && t.contains(&format!(
                "value size is {} in the pinned map, {} wanted",
                def.value.size + 8,
                def.value.size
            )),
        "{t}"
    );
    // Nothing was attached.
    with_nl_b(&sb, |nl, idx| {
        assert_eq!(
            nl.xdp_query(idx).expect("xdp").prog_id.filter(|&i| i != 0),
            None
        )
    });
    std::fs::remove_file(&path).expect("unpin");

    // A pin with another layout version is not misread: `weir load` builds the map anew (its
    // contents come from the config) and drops the old pin (see lifecycle.rs for the whole
    // story); `weir apply` refuses it.
    let other = pin(&sb, "maps/if_counters@v999");
    bpf::obj_pin(fd.as_fd(), &other).expect("pin");
    let t = ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    assert!(
        t.contains(&format!(
            "map if_counters: layout v999 -> v{}: rebuilt",
            def.layout_version
        )),
        "{t}"
    );
    assert!(!other.exists());
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn a_foreign_xdp_program_is_never_replaced_and_a_failed_load_is_undone() {
    let sb = sandbox("fgn");
    // Somebody else's XDP program (r0 = XDP_PASS; exit) attached by netlink.
    let foreign = bpf::load_return_program("foreign", bpf::consts::BPF_PROG_TYPE_XDP, None, 2)
        .expect("load foreign program");
    let foreign_id = bpf::prog_info(foreign.as_fd()).expect("info").id;
    with_nl_b(&sb, |nl, idx| {
        nl.xdp_attach(
            idx,
            foreign.as_fd(),
            weir::sys::netlink::XdpMode::Native,
            None,
        )
        .expect("attach foreign")
    });

    // The cgroup comes first in the config, so it is attached before the interface fails:
    // the failure must undo it.
    let cfg = ConfigFile::new(
        &sb,
        &format!("cgroup {}\ninterface {}\n", sb.cgroup, sb.veth_b),
    );
    let out = weir_in(&sb, &["load", "--config", &cfg.arg()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!("interface {}", sb.veth_b)) && t.contains("did not attach"),
        "{t}"
    );
    assert!(
        t.contains("'foreign'"),
        "the message names the program in the way: {t}"
    );
    let still = with_nl_b(&sb, |nl, idx| nl.xdp_query(idx).expect("xdp").prog_id);
    assert_eq!(still, Some(foreign_id), "the foreign program must stay");
    assert!(!sb.pin_dir.exists(), "a failed first load leaves no pins");
    let dir = cgroup::open_dir(&sb.cgroup_dir).expect("cgroup");
    let ids = bpf::prog_query(
        bpf::LinkTarget::Fd(dir.as_fd()),
        bpf::consts::BPF_CGROUP_INET4_CONNECT,
        0,
    )
    .expect("query");
    assert!(
        ids.prog_ids.is_empty(),
        "the cgroup attachment was not undone: {:?}",
        ids.prog_ids
    );

    with_nl_b(&sb, |nl, idx| {
        nl.xdp_detach(
            idx,
            weir::sys::netlink::XdpMode::Native,
            Some(foreign.as_fd()),
        )
        .expect("detach")
    });
}

#[test]
fn config_errors_point_at_file_line_column_and_change_nothing() {
    let sb = sandbox("cfg");
    let cfg = ConfigFile::new(
        &sb,
        &format!(
            "interface {}\ninterface {} xdp=sideways\n",
            sb.veth_b, sb.veth_a
        ),
    );
    let out = weir_in(&sb, &["load", "--config", &cfg.arg()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!("{}:2:", cfg.arg())),
        "error must name file:line: {t}"
    );
    assert!(t.contains("sideways"), "{t}");
    assert!(!sb.pin_dir.exists());
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn cli_usage_errors_exit_2_and_help_works() {
    assert_eq!(weir(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(weir(&["apply"]).status.code(), Some(2));
    assert_eq!(weir(&["load", "--nope"]).status.code(), Some(2));
    for cmd in ["load", "apply", "unload", "status", "verify", "demo"] {
        let o = weir(&[cmd, "--help"]);
        assert!(
            o.status.success() && text(&o).contains(&format!("weir [GLOBAL OPTIONS] {cmd}"))
                || text(&o).contains("Usage: weir demo"),
            "{cmd}: {}",
            text(&o)
        );
    }
}

#[test]
fn verify_command_passes_the_embedded_objects() {
    require_root();
    let t = ok(weir(&["verify"]));
    for prog in [
        "xdp_prefilter",
        "tc_ingress",
        "tc_egress",
        "sock_connect4",
        "sock_connect6",
    ] {
        assert!(t.contains(&format!("prog '{prog}': ok")), "{t}");
    }
}

#[test]
fn demo_runs_and_cleans_up() {
    require_root();
    let t = ok(weir(&["demo"]));
    assert!(!t.contains("FAILED"), "{t}");
    assert!(t.contains("[ok] connect6"), "{t}");
    assert!(t.contains("sandbox removed"), "{t}");
}

#[test]
fn a_failed_load_is_undone_and_the_previous_dataplane_stays_in_force() {
    let sb = sandbox("und");
    // lo has no native XDP: the veth's attachments made before it must be undone.
    let bad = ConfigFile::new(
        &sb,
        &format!(
            "interface {}\ncgroup {}\ninterface lo xdp=native tc=off\n",
            sb.veth_b, sb.cgroup
        ),
    );
    let out = weir_in(&sb, &["load", "--config", &bad.arg()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("interface lo") && t.contains("xdp=generic"),
        "the error names lo and the way out: {t}"
    );
    assert_eq!(
        residue(&sb),
        Vec::<String>::new(),
        "a failed first load must leave nothing"
    );

    // With a good dataplane loaded, a failing load keeps it exactly as it was.
    let good = ConfigFile::new(&sb, &full_config(&sb, ""));
    ok(weir_in(&sb, &["load", "--config", &good.arg()]));
    let before = status(&sb);
    let out = weir_in(&sb, &["load", "--config", &bad.arg()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let after = status(&sb);
    assert_eq!(before.attachments, after.attachments);
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

/// Loads the embedded dataplane, then "the next version" (programs/tests/upgrade.o: same names,
/// different code), then the embedded one again, on the link path and on the netlink path.
fn upgrade_in_place(tag: &str, attach: &str) {
    let sb = sandbox(tag);
    let cfg_text = format!(
        "interface {} xdp=native tc=on attach={attach}\ncgroup {}\n",
        sb.veth_b, sb.cgroup
    );
    let cfg = ConfigFile::new(&sb, &cfg_text);
    ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    let before = status(&sb);

    let parsed = weir::config::parse("t", &cfg_text).expect("config");
    let next = next_build(&sb);
    let report = sb
        .in_b(|| next.load(&parsed))
        .expect("netns")
        .expect("upgrade load");
    let changes: Vec<(String, weir::dataplane::Change)> = report
        .attachments
        .iter()
        .map(|(p, _, c)| (p.clone(), c.clone()))
        .collect();
    let replaced = changes
        .iter()
        .filter(|(_, c)| *c == weir::dataplane::Change::Replaced)
        .count();
    let unchanged = changes
        .iter()
        .filter(|(_, c)| *c == weir::dataplane::Change::Unchanged)
        .count();
    assert_eq!(
        (replaced, unchanged),
        (3, weir::embedded::PROGS_SOCK.len() + 1),
        "xdp + tc in/out replaced, cgroup hooks kept: {changes:?}"
    );
    assert!(
        report.maps_created.is_empty(),
        "maps are reused across the upgrade: {report}"
    );

    let after = status(&sb);
    for (b, a) in before.attachments.iter().zip(&after.attachments) {
        assert_eq!(b.pin, a.pin);
        assert_eq!(
            b.link_id, a.link_id,
            "{}: the link itself stays (no detach/attach)",
            a.pin
        );
        let cgroup_hook = matches!(
            weir::attach::AttachPoint::from_pin_name(&a.pin),
            Some(
                weir::attach::AttachPoint::Cgroup { .. }
                    | weir::attach::AttachPoint::SockRelease { .. }
            )
        );
        if cgroup_hook {
            assert_eq!(b.prog_id, a.prog_id, "{}", a.pin);
        } else {
            assert_ne!(b.prog_id, a.prog_id, "{}: the new program runs", a.pin);
        }
    }
    // The new code runs: each datagram now counts 2 bytes more than before.
    let bytes = |st: &weir::status::Status| {
        st.if_counters
            .iter()
            .find(|c| c.interface == sb.veth_b && c.hook == "tc-ingress")
            .map(|c| c.counter)
    };
    let c0 = bytes(&after).unwrap_or_default();
    send_udp(&sb, (ADDR_B4, 9).into(), 1);
    eventually("the upgraded tc_ingress counts", || {
        bytes(&status(&sb)).unwrap_or_default().packets > c0.packets
    });
    let c1 = bytes(&status(&sb)).expect("counter");
    // A 10-byte UDP payload in IPv4 over Ethernet is 52 bytes long at TC; +2 from the upgrade.
    assert_eq!((c1.bytes - c0.bytes) % 2, 0);
    assert!(c1.bytes - c0.bytes >= 54, "{c0:?} -> {c1:?}");

    // And back: the embedded programs replace the upgraded ones.
    let out = ok(weir_in(&sb, &["load", "--config", &cfg.arg()]));
    assert_eq!(out.matches("replaced").count(), 3, "{out}");
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
}

#[test]
fn a_new_build_replaces_programs_in_place_through_links() {
    upgrade_in_place("upl", "auto");
}

#[test]
fn a_new_build_replaces_programs_in_place_through_netlink() {
    upgrade_in_place("upn", "legacy");
}

/// Needs util-linux `setpriv` (to drop capabilities from the bounding set before exec).
#[test]
fn without_its_capabilities_weir_refuses_and_names_them() {
    require_root();
    for cmd in ["status", "load", "unload", "verify"] {
        let o = std::process::Command::new("setpriv")
            .args(["--bounding-set", "-net_admin,-sys_admin,-bpf"])
            .arg(weir_exe())
            .args(["--pin-dir", "/sys/fs/bpf/weir-never-created", cmd])
            .output()
            .expect("running setpriv (util-linux) to drop capabilities");
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {t}");
        assert!(
            t.contains("missing capabilities CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN"),
            "{cmd}: {t}"
        );
    }
    assert!(!std::path::Path::new("/sys/fs/bpf/weir-never-created").exists());
}
