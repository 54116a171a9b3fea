//! Reading back from the kernel what a loader attached in a sandbox, so that every variant is
//! checked the same way (and a competitor that silently attached less cannot look faster).

use std::os::fd::AsFd;

use weir::sandbox::Sandbox;
use weir::sys::bpf::{self, consts, LinkTarget, MapInfo};
use weir::sys::cgroup;
use weir::sys::netlink::{Netlink, TcDirection, XDP_ATTACHED_NONE};

use crate::spec::Spec;

/// How the TC programs are expected to be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcVia {
    /// TCX bpf_links (weir's default on this kernel).
    Tcx,
    /// clsact + cls_bpf direct-action filters (netlink).
    ClsBpf,
}

/// Program ids found at each hook of the sandbox.
#[derive(Debug, Default)]
struct Hooks {
    xdp_drv: Option<u32>,
    xdp_other: bool,
    ingress: Vec<(u32, TcVia, bool)>,
    egress: Vec<(u32, TcVia, bool)>,
    /// Per socket hook of the spec, in its order.
    sock: Vec<Vec<u32>>,
}

impl Hooks {
    fn is_empty(&self) -> bool {
        self.xdp_drv.is_none()
            && !self.xdp_other
            && self.ingress.is_empty()
            && self.egress.is_empty()
            && self.sock.iter().all(Vec::is_empty)
    }
}

fn read_hooks(sb: &Sandbox, spec: &Spec) -> Result<Hooks, String> {
    let veth = sb.veth_b.clone();
    let mut h = sb
        .in_b(move || -> Result<Hooks, String> {
            let mut h = Hooks::default();
            let mut nl = Netlink::open().map_err(|e| e.to_string())?;
            let idx = nl
                .link_index(&veth)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{veth} is gone"))?;
            let x = nl.xdp_query(idx).map_err(|e| e.to_string())?;
            h.xdp_drv = x.drv_prog_id.filter(|&id| id != 0);
            h.xdp_other = x.attached != XDP_ATTACHED_NONE && h.xdp_drv.is_none();
            for (dir, tcx, out) in [
                (
                    TcDirection::Ingress,
                    consts::BPF_TCX_INGRESS,
                    &mut h.ingress,
                ),
                (TcDirection::Egress, consts::BPF_TCX_EGRESS, &mut h.egress),
            ] {
                let q =
                    bpf::prog_query(LinkTarget::Ifindex(idx), tcx, 0).map_err(|e| e.to_string())?;
                out.extend(q.prog_ids.iter().map(|&id| (id, TcVia::Tcx, true)));
                for f in nl.cls_bpf_list(idx, dir).map_err(|e| e.to_string())? {
                    out.push((f.prog_id.unwrap_or(0), TcVia::ClsBpf, f.direct_action));
                }
            }
            Ok(h)
        })
        .map_err(|e| e.to_string())??;
    let cg = cgroup::open_dir(&sb.cgroup_dir)
        .map_err(|e| format!("opening {}: {e}", sb.cgroup_dir.display()))?;
    for (_, hook) in &spec.sock {
        let q = bpf::prog_query(LinkTarget::Fd(cg.as_fd()), hook.attach_type, 0)
            .map_err(|e| e.to_string())?;
        h.sock.push(q.prog_ids);
    }
    Ok(h)
}

/// Name and map ids of a program.
fn prog(id: u32) -> Result<(String, Vec<u32>), String> {
    let fd = bpf::prog_fd_by_id(id).map_err(|e| e.to_string())?;
    let info = bpf::prog_info(fd.as_fd()).map_err(|e| e.to_string())?;
    Ok((info.name, info.map_ids))
}

fn map_name(id: u32) -> Result<String, String> {
    let fd = bpf::map_fd_by_id(id).map_err(|e| e.to_string())?;
    Ok(bpf::map_info(fd.as_fd()).map_err(|e| e.to_string())?.name)
}

/// `name` as the kernel stores it: object names hold at most 15 bytes (`BPF_OBJ_NAME_LEN` is 16
/// with the NUL), so `sock_getpeername4` reads back as `sock_getpeernam`.
fn kernel_name(name: &str) -> &str {
    const MAX: usize = 15;
    let mut end = name.len().min(MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Checks that exactly the spec's programs are attached in the sandbox: the XDP program native
/// on veth_b, the TC programs at ingress/egress by `tc`, one program per socket hook on the
/// cgroup, and that across all of them each map name has one map id (shared maps are shared).
/// Returns what the kernel reports about those maps, one per name.
///
/// # Errors
/// Says what is missing, extra, misnamed or not shared.
pub fn verify_attached(sb: &Sandbox, tc: TcVia, spec: &Spec) -> Result<Vec<MapInfo>, String> {
    let h = read_hooks(sb, spec)?;
    if h.xdp_other {
        return Err("xdp: attached, but not (only) in native mode".into());
    }
    let xdp = h.xdp_drv.ok_or("xdp: no program attached in native mode")?;
    let tc_one = |what: &str, v: &[(u32, TcVia, bool)]| -> Result<u32, String> {
        match v {
            [(id, via, da)] if *via == tc && *da => Ok(*id),
            _ => Err(format!(
                "tc {what}: expected one {tc:?} direct-action program, found {v:?}"
            )),
        }
    };
    let mut ids = vec![
        xdp,
        tc_one("ingress", &h.ingress)?,
        tc_one("egress", &h.egress)?,
    ];
    for ((_, hook), found) in spec.sock.iter().zip(&h.sock) {
        match found[..] {
            [id] => ids.push(id),
            _ => {
                return Err(format!(
                    "cgroup {}: expected one program, found ids {found:?}",
                    hook.bpftool
                ))
            }
        }
    }
    // map name -> ids seen, over all attached programs
    let mut maps: Vec<(String, u32)> = Vec::new();
    for (id, want) in ids.iter().zip(spec.attached()) {
        let (name, map_ids) = prog(*id)?;
        if name != kernel_name(want) {
            return Err(format!("prog id {id}: expected '{want}', found '{name}'"));
        }
        for m in map_ids {
            let n = map_name(m)?;
            match maps.iter().find(|(k, _)| *k == n) {
                Some((_, other)) if *other != m => {
                    return Err(format!(
                        "map '{n}' is not shared: ids {other} and {m} among the attached programs"
                    ))
                }
                Some(_) => {}
                None => maps.push((n, m)),
            }
        }
    }
    maps.iter()
        .map(|(_, id)| {
            let fd = bpf::map_fd_by_id(*id).map_err(|e| e.to_string())?;
            bpf::map_info(fd.as_fd()).map_err(|e| e.to_string())
        })
        .collect()
}

/// Checks that nothing is attached in the sandbox any more.
///
/// # Errors
/// Says what is still attached.
pub fn verify_clean(sb: &Sandbox, spec: &Spec) -> Result<(), String> {
    let h = read_hooks(sb, spec)?;
    if h.is_empty() {
        Ok(())
    } else {
        Err(format!("still attached after teardown: {h:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_name;

    #[test]
    fn names_are_cut_to_what_the_kernel_keeps() {
        assert_eq!(kernel_name("sock_getpeername4"), "sock_getpeernam");
        assert_eq!(kernel_name("xdp_prefilter"), "xdp_prefilter");
        assert_eq!(kernel_name("exactly_15_char"), "exactly_15_char");
    }
}
