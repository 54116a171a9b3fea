//! load / apply / unload / status as reconcile steps over what is pinned.
//!
//! There is no daemon: the pinned maps and links under the pin directory *are* the state. `load`
//! converges the kernel to the config (running it twice changes nothing the second time: programs
//! whose code is already attached are recognised by their kernel tag), and undoes its own steps if
//! any step fails, so a failed load leaves the previous dataplane in force. `unload` removes
//! everything weir pinned and attached, and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::attach::{self, AttachPoint, Desired, Outcome, LEGACY_DIR, LINKS_DIR, PENDING_DIR};
use crate::config::{Config, XdpMode};
use crate::contents::Undo;
use crate::embedded;
use crate::error::Error;
use crate::fastpath::{self, FastpathChange};
use crate::lb::{self, LbChange};
use crate::maps::{self, MapSet, MAPS_DIR};
use crate::mesh::{self, MeshChange};
use crate::object::{self, LoadedProgram, VerifiedObject};
use crate::policy_maps::{self, PolicyChange};
use crate::prefilter::{self, PrefilterChange};
use crate::sys::{bpf, bpffs};

/// Where weir pins its state unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/weir";
/// Where bpffs is (or gets) mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// One weir dataplane, identified by its pin directory.
#[derive(Debug, Clone)]
pub struct Dataplane {
    pin_dir: PathBuf,
    objects: Vec<(String, Vec<u8>)>,
}

/// What one attachment step did, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Already attached with the same code.
    Unchanged,
    /// Newly attached.
    Attached,
    /// Program replaced in place (link update / netlink replace).
    Replaced,
    /// Detached because the config no longer asks for it.
    Detached,
}

/// The result of `weir load`.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Each attachment and what happened to it.
    pub attachments: Vec<(String, String, Change)>,
    /// Maps created (new) in this run.
    pub maps_created: Vec<String>,
    /// Maps reused from pins (contents kept).
    pub maps_reused: Vec<String>,
    /// Maps whose pinned layout version differed: `(map, old version, new version)`. The new
    /// map was filled from the config and the old pin removed (counters in it restart).
    pub maps_rebuilt: Vec<(String, u32, u32)>,
    /// What changed in the prefilter's deny lists and failsafes.
    pub prefilter: PrefilterChange,
    /// What changed in the load-balancing maps (services, backends, exclusions).
    pub lb: LbChange,
    /// What changed in the fast path's endpoints and workload routes.
    pub fastpath: FastpathChange,
    /// Whether a new network policy was switched to.
    pub policy: PolicyChange,
    /// What changed in the service-mesh maps.
    pub mesh: MeshChange,
}

impl LoadReport {
    /// True when the run changed nothing in the kernel.
    pub fn is_noop(&self) -> bool {
        self.maps_created.is_empty()
            && self.prefilter.is_noop()
            && self.lb.is_noop()
            && self.fastpath.is_noop()
            && self.policy.is_noop()
            && self.mesh.is_noop()
            && self
                .attachments
                .iter()
                .all(|(_, _, c)| *c == Change::Unchanged)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (point, prog, change) in &self.attachments {
            let what = match change {
                Change::Unchanged => "unchanged",
                Change::Attached => "attached",
                Change::Replaced => "replaced",
                Change::Detached => "detached",
            };
            writeln!(f, "{point}: {prog} {what}")?;
        }
        if !self.maps_created.is_empty() {
            writeln!(f, "maps created: {}", self.maps_created.join(", "))?;
        }
        if !self.maps_reused.is_empty() {
            writeln!(f, "maps reused: {}", self.maps_reused.join(", "))?;
        }
        for (map, old, new) in &self.maps_rebuilt {
            writeln!(
                f,
                "map {map}: layout v{old} -> v{new}: rebuilt from the config (its counters restart), the v{old} map unpinned"
            )?;
        }
        if !self.prefilter.is_noop() {
            writeln!(f, "{}", self.prefilter)?;
        }
        if !self.lb.is_noop() {
            writeln!(f, "{}", self.lb)?;
        }
        if !self.fastpath.is_noop() {
            writeln!(f, "{}", self.fastpath)?;
        }
        if !self.policy.is_noop() {
            writeln!(f, "{}", self.policy)?;
        }
        if !self.mesh.is_noop() {
            writeln!(f, "{}", self.mesh)?;
        }
        if self.is_noop() {
            writeln!(f, "nothing to do: the dataplane already matches the config")?;
        }
        Ok(())
    }
}

/// The result of `weir apply`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyReport {
    /// The prefilter's deny lists and failsafes.
    pub prefilter: PrefilterChange,
    /// The load-balancing maps.
    pub lb: LbChange,
    /// The fast path's endpoints and workload routes.
    pub fastpath: FastpathChange,
    /// The network policy.
    pub policy: PolicyChange,
    /// The service-mesh maps.
    pub mesh: MeshChange,
}

impl ApplyReport {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.prefilter.is_noop()
            && self.lb.is_noop()
            && self.fastpath.is_noop()
            && self.policy.is_noop()
            && self.mesh.is_noop()
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        if !self.prefilter.is_noop() {
            lines.push(self.prefilter.to_string());
        }
        if !self.lb.is_noop() {
            lines.push(self.lb.to_string());
        }
        if !self.fastpath.is_noop() {
            lines.push(self.fastpath.to_string());
        }
        if !self.policy.is_noop() {
            lines.push(self.policy.to_string());
        }
        if !self.mesh.is_noop() {
            lines.push(self.mesh.to_string());
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Writes every map's contents for `cfg` (what `load` and `apply` share), each part as a
/// difference against what its maps hold, recording every write in `writes` so the caller can
/// roll them all back.
fn write_contents(maps: &MapSet, cfg: &Config, writes: &mut Undo) -> Result<ApplyReport, Error> {
    let prefilter = prefilter::apply(maps, cfg, writes)?;
    let lb = lb::apply(maps, cfg, writes)?;
    // The interfaces' counter slots, which the policy's and the fast path's entries carry.
    let slots = fastpath::assign_slots(maps, cfg, writes)?;
    Ok(ApplyReport {
        prefilter,
        lb,
        policy: policy_maps::apply(maps, cfg, &slots, writes)?,
        fastpath: fastpath::apply(maps, cfg, &slots, writes)?,
        mesh: mesh::apply(maps, cfg, writes)?,
    })
}

/// An exclusive lock on the pin directory, so two weir commands never interleave. Released when
/// dropped (or when the process dies: a SIGKILLed weir never leaves a stale lock behind).
struct PinDirLock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

impl PinDirLock {
    fn take(dir: &Path) -> Result<Self, Error> {
        let f = fs::File::open(dir)
            .map_err(|e| Error::io(format!("opening pin dir {}", dir.display()), e))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(format!("locking pin dir {}", dir.display()), e.into()))?;
        Ok(Self(lock))
    }
}

impl Dataplane {
    /// A dataplane with the embedded objects, pinned at `pin_dir`.
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        let objects = embedded::OBJECTS
            .iter()
            .map(|o| (o.name.to_owned(), o.bytes.to_vec()))
            .collect();
        Self {
            pin_dir: pin_dir.into(),
            objects,
        }
    }

    /// A dataplane with other objects (tests use this to load broken ones).
    pub fn with_objects(pin_dir: impl Into<PathBuf>, objects: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            pin_dir: pin_dir.into(),
            objects,
        }
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    fn verified(&self) -> Result<Vec<VerifiedObject>, Error> {
        self.objects
            .iter()
            .map(|(name, bytes)| object::parse_and_verify(name, bytes))
            .collect()
    }

    /// The attachments `cfg` asks for, with the program each runs, in the order of the config's
    /// lines (so a failure is reported, and undone, in the order the user wrote things).
    pub fn desired(cfg: &Config) -> Vec<Desired> {
        let mut out: Vec<(u32, Desired)> = Vec::new();
        for i in &cfg.interfaces {
            let line = i.span.line;
            if i.xdp != XdpMode::Off {
                out.push((
                    line,
                    Desired {
                        point: AttachPoint::Xdp {
                            ifname: i.name.clone(),
                            generic: i.xdp == XdpMode::Generic,
                        },
                        program: embedded::PROG_XDP.into(),
                        policy: i.attach,
                    },
                ));
            }
            if i.tc {
                for (egress, program) in [
                    (false, embedded::PROG_TC_INGRESS),
                    (true, embedded::PROG_TC_EGRESS),
                ] {
                    out.push((
                        line,
                        Desired {
                            point: AttachPoint::Tc {
                                ifname: i.name.clone(),
                                egress,
                            },
                            program: program.into(),
                            policy: i.attach,
                        },
                    ));
                }
            }
        }
        // Services without a cgroup statement balance the whole machine: the cgroup v2 root,
        // named "/" (pinned as `connect4@%2F`: an empty pin target would not parse back).
        // Meshes too: their programs run beside the balancer's, on the same cgroups.
        let connect_time = !cfg.services.is_empty() || !cfg.meshes.is_empty();
        let root = (cfg.cgroups.is_empty() && connect_time).then(|| {
            log::warn!(
                "services or meshes without a cgroup statement: the connect-time programs \
                 attach at the cgroup v2 root and run for every process on the machine"
            );
            let first = cfg
                .services
                .iter()
                .map(|s| s.span.line)
                .chain(cfg.meshes.iter().map(|m| m.span.line))
                .min();
            (
                "/".to_owned(),
                first.unwrap_or(0),
                crate::config::AttachPolicy::Auto,
            )
        });
        let cgroups = cfg
            .cgroups
            .iter()
            .map(|c| {
                (
                    c.path.trim_start_matches('/').to_owned(),
                    c.span.line,
                    c.attach,
                )
            })
            .chain(root);
        for (path, line, policy) in cgroups {
            // First, so that no connect remembers a socket before its close can forget it.
            out.push((
                line,
                Desired {
                    point: AttachPoint::SockRelease {
                        cgroup: path.clone(),
                    },
                    program: embedded::PROG_SOCK_RELEASE.into(),
                    policy,
                },
            ));
            for (program, hook) in embedded::PROGS_SOCK {
                out.push((
                    line,
                    Desired {
                        point: AttachPoint::Cgroup {
                            cgroup: path.clone(),
                            hook: *hook,
                        },
                        program: (*program).into(),
                        policy,
                    },
                ));
            }
            if cfg.meshes.is_empty() {
                continue;
            }
            for (program, hook) in embedded::PROGS_MESH {
                out.push((
                    line,
                    Desired {
                        point: AttachPoint::Mesh {
                            cgroup: path.clone(),
                            hook: *hook,
                        },
                        program: (*program).into(),
                        policy,
                    },
                ));
            }
        }
        // Inbound capture per network namespace, after the cgroup programs of the same line
        // (their sockops program is what files the proxy's listener).
        for m in &cfg.meshes {
            if let Some(i) = &m.inbound {
                out.push((
                    m.span.line,
                    Desired {
                        point: AttachPoint::MeshInbound {
                            netns: i.netns.clone(),
                        },
                        program: embedded::PROG_MESH_INBOUND.into(),
                        policy: crate::config::AttachPolicy::Auto,
                    },
                ));
            }
        }
        out.sort_by_key(|(line, _)| *line);
        out.into_iter().map(|(_, d)| d).collect()
    }

    fn prepare_pin_dir(&self) -> Result<bool, Error> {
        if self.pin_dir.starts_with(BPFFS_ROOT) {
            let mounted = bpffs::ensure_mounted(Path::new(BPFFS_ROOT))
                .map_err(|e| Error::io(format!("mounting bpffs at {BPFFS_ROOT}"), e))?;
            if mounted {
                log::info!("mounted bpffs at {BPFFS_ROOT}");
            }
        }
        let existed = self.pin_dir.is_dir();
        bpffs::ensure_pin_dir(&self.pin_dir)
            .map_err(|e| Error::io(format!("preparing pin dir {}", self.pin_dir.display()), e))?;
        for sub in [MAPS_DIR, LINKS_DIR, LEGACY_DIR] {
            let p = self.pin_dir.join(sub);
            if !p.is_dir() {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&p)
                    .map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
            }
        }
        Ok(!existed)
    }

    /// Converges the kernel to `cfg`: maps created or reused, programs loaded, attachments made,
    /// replaced or removed. On error, every step of this run is undone.
    ///
    /// # Errors
    /// Any verification, map, verifier or attach error, naming what it is about.
    pub fn load(&self, cfg: &Config) -> Result<LoadReport, Error> {
        let objects = self.verified()?;
        let desired = Self::desired(cfg);
        let created_dir = self.prepare_pin_dir()?;
        let _lock = PinDirLock::take(&self.pin_dir)?;
        let mut maps = MapSet::pinned(&self.pin_dir);
        prefilter::set_capacities(&mut maps, cfg);
        lb::set_capacities(&mut maps, cfg);
        policy_maps::set_capacities(&mut maps, cfg);
        let result = self.load_locked(objects, &desired, &mut maps, cfg);
        if result.is_err() {
            for pin in maps.created_pins() {
                let _ = fs::remove_file(&pin);
            }
            if created_dir {
                let _ = remove_tree(&self.pin_dir);
            }
        }
        result
    }

    fn load_locked(
        &self,
        objects: Vec<VerifiedObject>,
        desired: &[Desired],
        maps: &mut MapSet,
        cfg: &Config,
    ) -> Result<LoadReport, Error> {
        let needed: BTreeSet<&str> = desired.iter().map(|d| d.program.as_str()).collect();
        let mut programs: BTreeMap<String, LoadedProgram> = BTreeMap::new();
        for obj in objects {
            if !obj
                .programs
                .iter()
                .any(|p| needed.contains(p.name.as_str()))
            {
                continue;
            }
            for p in obj.load(maps)? {
                programs.insert(p.spec.name.clone(), p);
            }
        }
        let mut report = LoadReport::default();
        for m in maps.iter() {
            let list = if m.reused {
                &mut report.maps_reused
            } else {
                &mut report.maps_created
            };
            list.push(m.def.name.to_owned());
        }

        // Map contents before attachments, so a new program never runs on an empty deny list.
        let mut writes = Undo::default();
        let contents = match write_contents(maps, cfg, &mut writes) {
            Ok(c) => c,
            Err(e) => {
                writes.rollback(maps);
                return Err(e);
            }
        };
        report.prefilter = contents.prefilter;
        report.lb = contents.lb;
        report.policy = contents.policy;
        report.fastpath = contents.fastpath;
        report.mesh = contents.mesh;
        if maps.get(prefilter::MAP_V4).is_none() && !cfg.prefilter.deny.is_empty() {
            log::warn!("the config denies networks but no interface has xdp on: the deny list is not loaded");
        }

        let mut done: Vec<(AttachPoint, Outcome)> = Vec::new();
        let attach_all = |done: &mut Vec<(AttachPoint, Outcome)>,
                          report: &mut LoadReport|
         -> Result<(), Error> {
            for want in desired {
                let prog = programs.get(&want.program).ok_or_else(|| {
                    Error::attach(
                        want.point.describe(),
                        format!("no embedded program named '{}'", want.program),
                    )
                })?;
                let outcome = attach::attach(&self.pin_dir, want, prog)?;
                let change = match outcome {
                    Outcome::Unchanged => Change::Unchanged,
                    Outcome::Created => Change::Attached,
                    Outcome::Replaced { .. } => Change::Replaced,
                };
                report
                    .attachments
                    .push((want.point.describe(), want.program.clone(), change));
                done.push((want.point.clone(), outcome));
            }
            Ok(())
        };
        if let Err(e) = attach_all(&mut done, &mut report) {
            for (point, outcome) in done.into_iter().rev() {
                if let Err(undo) = attach::undo(&self.pin_dir, &point, outcome) {
                    log::error!("{}: undoing after a failed load: {undo}", point.describe());
                }
            }
            writes.rollback(maps);
            return Err(e);
        }

        // The new programs run on the new maps now: maps of another layout version go.
        for (name, version, pin) in maps.superseded() {
            attach::remove_pin(pin)?;
            let new = maps_schema::find(name).map_or(0, |d| d.layout_version);
            report
                .maps_rebuilt
                .push(((*name).to_owned(), *version, new));
        }

        // Attachments pinned earlier that the config no longer asks for.
        let wanted: BTreeSet<String> = desired.iter().map(|d| d.point.pin_name()).collect();
        for point in self.pinned_points()? {
            if !wanted.contains(&point.pin_name()) {
                attach::detach(&self.pin_dir, &point)?;
                report
                    .attachments
                    .push((point.describe(), String::new(), Change::Detached));
            }
        }
        Ok(report)
    }

    /// The attachment points weir has pins for.
    fn pinned_points(&self) -> Result<Vec<AttachPoint>, Error> {
        let mut seen = BTreeMap::new();
        // A pending pin stands for an attachment a killed weir may have made: detaching it
        // settles that first.
        for sub in [LINKS_DIR, LEGACY_DIR, PENDING_DIR] {
            for name in list_dir(&self.pin_dir.join(sub))? {
                if let Some(point) = AttachPoint::from_pin_name(&name) {
                    seen.insert(point.pin_name(), point);
                }
            }
        }
        Ok(seen.into_values().collect())
    }

    /// Updates map contents from `cfg` without attaching or detaching anything; returns what
    /// changed in the prefilter (see [`Dataplane::apply_report`] for everything).
    ///
    /// # Errors
    /// Returns an error when weir is not loaded at this pin dir, or a map write fails.
    pub fn apply(&self, cfg: &Config) -> Result<PrefilterChange, Error> {
        self.apply_report(cfg).map(|r| r.prefilter)
    }

    /// Whether the network policy of `cfg` is the one in force here (read only: the policy's
    /// active bank holds exactly what `cfg` compiles to).
    ///
    /// # Errors
    /// A policy that does not compile, a pinned map that cannot be opened or read.
    pub fn policy_in_force(&self, cfg: &Config) -> Result<bool, Error> {
        if !self.pin_dir.join(MAPS_DIR).is_dir() {
            return Ok(cfg.policies.is_empty());
        }
        let _lock = PinDirLock::take(&self.pin_dir)?;
        let maps = MapSet::open_pinned(&self.pin_dir, |m| policy_maps::set_capacities(m, cfg))?;
        policy_maps::in_force(&maps, cfg)
    }

    /// Updates map contents from `cfg` (prefilter, load balancing, policy, fast path, mesh)
    /// without attaching or detaching anything. A failure puts back every entry this call wrote.
    ///
    /// # Errors
    /// Returns an error when weir is not loaded at this pin dir, or a map write fails.
    pub fn apply_report(&self, cfg: &Config) -> Result<ApplyReport, Error> {
        if !self.pin_dir.join(MAPS_DIR).is_dir() {
            return Err(Error::Environment(format!(
                "weir is not loaded at {} (run `weir load` first)",
                self.pin_dir.display()
            )));
        }
        let _lock = PinDirLock::take(&self.pin_dir)?;
        let maps = MapSet::open_pinned(&self.pin_dir, |m| {
            prefilter::set_capacities(m, cfg);
            lb::set_capacities(m, cfg);
            policy_maps::set_capacities(m, cfg);
        })?;
        if !cfg.prefilter.deny.is_empty() && maps.get(prefilter::MAP_V4).is_none() {
            return Err(Error::Environment(format!(
                "the config denies networks but the XDP prefilter is not loaded at {} \
                 (no interface with xdp on): run `weir load` with an interface statement first",
                self.pin_dir.display()
            )));
        }
        if !cfg.services.is_empty() && maps.get(lb::MAP_SERVICES).is_none() {
            return Err(Error::Environment(format!(
                "the config has services but the connect-time programs are not loaded at {} \
                 (no cgroup attachment): run `weir load` first",
                self.pin_dir.display()
            )));
        }
        if !cfg.policies.is_empty() && maps.get(policy_maps::MAP_ACTIVE).is_none() {
            return Err(Error::Environment(format!(
                "the config has policies but the TC programs are not loaded at {} \
                 (no interface with tc on): run `weir load` first",
                self.pin_dir.display()
            )));
        }
        // The mesh programs attach only at `weir load`; their maps may outlive them (pinned).
        let mesh_attached = list_dir(&self.pin_dir.join(LINKS_DIR))?
            .iter()
            .any(|n| n.starts_with("mesh-"));
        if !cfg.meshes.is_empty() && (maps.get(mesh::MAP_CGROUPS).is_none() || !mesh_attached) {
            return Err(Error::Environment(format!(
                "the config meshes cgroups but the mesh programs are not loaded at {} \
                 (the loaded config had no mesh statement): run `weir load` first",
                self.pin_dir.display()
            )));
        }
        // Inbound capture needs its netns link, which only `weir load` attaches.
        let links = list_dir(&self.pin_dir.join(LINKS_DIR))?;
        for m in &cfg.meshes {
            let Some(i) = &m.inbound else { continue };
            let pin = AttachPoint::MeshInbound {
                netns: i.netns.clone(),
            }
            .pin_name();
            if !links.contains(&pin) {
                return Err(Error::Environment(format!(
                    "mesh {} (line {}): inbound capture of network namespace {} is not attached \
                     at {}: run `weir load` with this config (it attaches it; `weir apply` then \
                     turns it on and off)",
                    m.cgroup,
                    m.span.line,
                    i.netns,
                    self.pin_dir.display()
                )));
            }
        }
        let mut writes = Undo::default();
        let result = write_contents(&maps, cfg, &mut writes);
        if result.is_err() {
            writes.rollback(&maps);
        }
        result
    }

    /// Adds `cidrs` to (`SetOp::Add`) or removes them from (`SetOp::Del`) the set called `name`
    /// in the network policy in force, in place: the bank packets read is changed where the
    /// members lie, in time proportional to the change (no config, no compile, no bank switch;
    /// see [`crate::policy::incremental`]). Established flows keep going (conntrack). The
    /// config stays the truth: the next `weir apply` or `weir load` puts its members back.
    ///
    /// # Errors
    /// weir not loaded here, no policy in force (or its set index not in step: run `weir
    /// apply`), an unknown set, a `del` of a network the set does not hold, not enough free
    /// classifier chunks or bitmaps in the bank (nothing is written then), or a map error.
    pub fn set_members(
        &self,
        name: &str,
        op: crate::policy::incremental::SetOp,
        cidrs: &[crate::config::Cidr],
    ) -> Result<policy_maps::SetChange, Error> {
        if !self.pin_dir.join(MAPS_DIR).is_dir() {
            return Err(Error::Environment(format!(
                "weir is not loaded at {} (run `weir load` first)",
                self.pin_dir.display()
            )));
        }
        let _lock = PinDirLock::take(&self.pin_dir)?;
        // Without the config, the maps are taken with the capacities they were pinned with.
        let maps = MapSet::open_pinned_as_is(&self.pin_dir, policy_maps::SET_COMMAND_MAPS)?;
        policy_maps::set_members(&maps, name, op, cidrs)
    }

    /// Removes every attachment and pin weir made at this pin dir. Attachments of others stay.
    ///
    /// # Errors
    /// Returns the first detach error after trying every attachment.
    pub fn unload(&self) -> Result<Vec<String>, Error> {
        if !self.pin_dir.exists() {
            return Ok(Vec::new());
        }
        let lock = PinDirLock::take(&self.pin_dir)?;
        let mut removed = Vec::new();
        let mut first_err = None;
        for point in self.pinned_points()? {
            match attach::detach(&self.pin_dir, &point) {
                Ok(()) => removed.push(point.describe()),
                Err(e) => {
                    log::error!("{}: {e}", point.describe());
                    first_err.get_or_insert(e);
                }
            }
        }
        // clsact markers whose filters were already gone.
        for name in list_dir(&self.pin_dir.join(LEGACY_DIR))? {
            if let Some(ifname) = name.strip_prefix("clsact@") {
                let point = AttachPoint::Tc {
                    ifname: ifname.to_owned(),
                    egress: false,
                };
                if let Err(e) = attach::detach(&self.pin_dir, &point) {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for name in list_dir(&self.pin_dir.join(MAPS_DIR))? {
            removed.push(format!("map {name}"));
        }
        drop(lock);
        remove_tree(&self.pin_dir)?;
        Ok(removed)
    }

    /// Reads what is attached, the maps and their counters.
    ///
    /// # Errors
    /// Returns an error when a pin cannot be read.
    pub fn status(&self) -> Result<crate::status::Status, Error> {
        crate::status::read(&self.pin_dir)
    }

    /// Verifies every object and loads every program into the kernel's verifier with temporary
    /// maps, attaching nothing. Returns `(object, program, instruction count)` per program.
    ///
    /// # Errors
    /// The first verification or verifier error.
    pub fn verify(&self) -> Result<Vec<(String, String, u32)>, Error> {
        let mut out = Vec::new();
        for obj in self.verified()? {
            let name = obj.name.clone();
            let mut maps = MapSet::ephemeral();
            for p in obj.load(&mut maps)? {
                let info = bpf::prog_info(p.fd.as_fd())
                    .map_err(|e| Error::bpf(format!("prog '{}'", p.spec.name), e))?;
                out.push((name.clone(), p.spec.name.clone(), info.xlated_len / 8));
            }
        }
        Ok(out)
    }
}

/// Names of the entries of `dir` (empty when it does not exist).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>, Error> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect();
            names.sort();
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// Removes the pin dir: map pins, then the (now empty) directories.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    for sub in [MAPS_DIR, LINKS_DIR, LEGACY_DIR, PENDING_DIR] {
        let p = dir.join(sub);
        for name in list_dir(&p)? {
            if sub == MAPS_DIR && maps::parse_pin_name(&name).is_none() {
                log::warn!("{}: not a weir pin, left alone", p.join(&name).display());
                continue;
            }
            attach::remove_pin(&p.join(name))?;
        }
        match fs::remove_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing pin dir {}", dir.display()), e)),
    }
}
