//! What "everything" is: the embedded objects with their programs and maps, and which program
//! weir attaches where, read from the `weir` library so that the competitors load and attach
//! exactly what `weir load` does, also after the dataplane changes.

use weir::embedded;
use weir::object::{self, CgroupSockHook};

/// bpftool's name for `BPF_CGROUP_INET_SOCK_RELEASE`.
const BPFTOOL_SOCK_RELEASE: &str = "cgroup_inet_sock_release";

/// Where on a cgroup a program attaches.
#[derive(Debug, Clone, Copy)]
pub struct CgroupHook {
    /// bpftool's name of the attach type (its short names for the sock_addr hooks are weir's:
    /// `connect4`, `recvmsg6`, …).
    pub bpftool: &'static str,
    /// The kernel's `enum bpf_attach_type`.
    pub attach_type: u32,
}

/// One embedded object.
#[derive(Debug, Clone)]
pub struct ObjSpec {
    /// File name, e.g. `tc.o`.
    pub file: &'static str,
    /// File name without `.o`.
    pub stem: String,
    pub bytes: &'static [u8],
    pub programs: Vec<String>,
    pub maps: Vec<String>,
}

/// The dataplane `weir load` builds for one interface and one cgroup.
#[derive(Debug, Clone)]
pub struct Spec {
    /// In weir's load order.
    pub objects: Vec<ObjSpec>,
    pub xdp: String,
    pub tc_ingress: String,
    pub tc_egress: String,
    /// The cgroup programs, in weir's attach order (`sock_release` first, then the sock_addr
    /// hooks).
    pub sock: Vec<(String, CgroupHook)>,
}

impl Spec {
    /// Reads the embedded objects (parsed and verified by weir's own code, no syscalls).
    ///
    /// # Errors
    /// An object does not verify, or an attached program is in no object.
    pub fn embedded() -> Result<Self, String> {
        let objects = embedded::OBJECTS
            .iter()
            .map(|o| {
                let v = object::parse_and_verify(o.name, o.bytes).map_err(|e| e.to_string())?;
                Ok(ObjSpec {
                    file: o.name,
                    stem: o.name.trim_end_matches(".o").to_owned(),
                    bytes: o.bytes,
                    programs: v.programs.iter().map(|p| p.name.clone()).collect(),
                    maps: v.maps.iter().map(|m| m.name.to_owned()).collect(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let spec = Self {
            objects,
            xdp: embedded::PROG_XDP.to_owned(),
            tc_ingress: embedded::PROG_TC_INGRESS.to_owned(),
            tc_egress: embedded::PROG_TC_EGRESS.to_owned(),
            sock: std::iter::once((
                embedded::PROG_SOCK_RELEASE.to_owned(),
                CgroupHook {
                    bpftool: BPFTOOL_SOCK_RELEASE,
                    attach_type: CgroupSockHook::SockRelease.attach_type(),
                },
            ))
            .chain(embedded::PROGS_SOCK.iter().map(|(n, h)| {
                (
                    (*n).to_owned(),
                    CgroupHook {
                        bpftool: h.name(),
                        attach_type: h.attach_type(),
                    },
                )
            }))
            .collect(),
        };
        for p in spec.attached() {
            spec.object_of(p)?;
        }
        Ok(spec)
    }

    /// Names of the attached programs: XDP, TC ingress, TC egress, then the socket hooks.
    pub fn attached(&self) -> Vec<&str> {
        let mut v = vec![
            self.xdp.as_str(),
            self.tc_ingress.as_str(),
            self.tc_egress.as_str(),
        ];
        v.extend(self.sock.iter().map(|(n, _)| n.as_str()));
        v
    }

    /// The object holding program `prog`.
    ///
    /// # Errors
    /// No object has it.
    pub fn object_of(&self, prog: &str) -> Result<&ObjSpec, String> {
        self.objects
            .iter()
            .find(|o| o.programs.iter().any(|p| p == prog))
            .ok_or_else(|| format!("no embedded object has program '{prog}'"))
    }

    /// Number of distinct maps over all objects (a map of the same name is one shared map).
    pub fn distinct_maps(&self) -> usize {
        let mut names: Vec<&str> = self
            .objects
            .iter()
            .flat_map(|o| o.maps.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    /// Maps used by more than one object, with the object that defines them first.
    pub fn shared_maps(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, o) in self.objects.iter().enumerate() {
            for m in &o.maps {
                let earlier = self.objects[..i].iter().find(|e| e.maps.contains(m));
                if let Some(e) = earlier {
                    if !out.iter().any(|(n, _)| n == m) {
                        out.push((m.clone(), e.stem.clone()));
                    }
                }
            }
        }
        out
    }

    /// One line for the report: objects, programs, maps.
    pub fn describe(&self) -> String {
        let progs: usize = self.objects.iter().map(|o| o.programs.len()).sum();
        let attached = self.attached().len();
        let shared = self.shared_maps();
        format!(
            "{} objects, {progs} programs ({}), {} maps{}",
            self.objects.len(),
            if attached == progs {
                "all attached".to_owned()
            } else {
                format!("{attached} of them attached")
            },
            self.distinct_maps(),
            if shared.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} shared across objects)",
                    shared
                        .iter()
                        .map(|(m, _)| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )
    }
}
