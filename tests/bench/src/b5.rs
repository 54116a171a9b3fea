//! B5: cold load + attach of the whole dataplane, binary size and peak RSS, against the same
//! objects loaded with bpftool + ip + tc.
//!
//! Every run gets a fresh sandbox (two netns, a veth pair, a cgroup): the loader under test
//! attaches XDP (native) and TC ingress/egress on `veth_b` and every socket hook weir has
//! (connect, sendmsg, recvmsg and getpeername, v4 and v6) on the cgroup, with the maps shared
//! exactly as weir shares them. After every run the kernel state is read back and checked, then
//! torn down and checked empty; only the load sequence is timed. Afterwards every map is
//! created once more on its own, to show what `BPF_MAP_CREATE` costs per map (both sides pay
//! it).

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir::sandbox::Sandbox;
use weir::sys::bpf::{self, MapCreate, MapInfo};

use crate::env;
use crate::flags::Flags;
use crate::kstate::{self, TcVia};
use crate::proc::{self, Step, Usage};
use crate::report::{self, Results};
use crate::spec::Spec;
use crate::syscalls::Profile;

/// Pause after building a sandbox, so that the kernel's deferred work from the previous run
/// (namespace teardown, RCU callbacks) does not land inside the next measurement.
const SETTLE: Duration = Duration::from_millis(100);

/// Command-line options of `b5`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub rss_rounds: usize,
    pub weir: Option<PathBuf>,
    pub write: bool,
}

impl Options {
    /// Parses `[--rounds N] [--rss-rounds N] [--weir PATH] [--no-write]`.
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rounds: 12,
            rss_rounds: 3,
            weir: None,
            write: true,
        };
        let mut f = Flags::new("b5", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rounds" => o.rounds = f.number(a)? as usize,
                "--rss-rounds" => o.rss_rounds = f.number(a)? as usize,
                "--weir" => o.weir = Some(PathBuf::from(f.value(a)?)),
                "--no-write" => o.write = false,
                other => return Err(f.unknown(other)),
            }
        }
        if o.rounds < 7 {
            return Err("b5: --rounds must be at least 7".into());
        }
        if o.rss_rounds < 1 {
            return Err("b5: --rss-rounds must be at least 1".into());
        }
        Ok(o)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p weir-bench -- b5 --rounds {}",
            self.rounds
        );
        if self.rss_rounds != 3 {
            c += &format!(" --rss-rounds {}", self.rss_rounds);
        }
        c
    }
}

/// What is loaded, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `weir load`, default attach mode (bpf_links: XDP link, TCX, cgroup links).
    Weir,
    /// `weir load` with `attach=legacy` on the interface: XDP and TC through netlink, like the
    /// competitors, which separates the loader's own cost from the attach mechanism's.
    WeirLegacy,
    /// One command per step, as a shell script or unit file would run them.
    Script,
    /// The same steps in two processes: `bpftool batch` and `tc -batch`.
    Batch,
}

pub const VARIANTS: [Variant; 4] = [
    Variant::Weir,
    Variant::WeirLegacy,
    Variant::Script,
    Variant::Batch,
];

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Weir => "weir load",
            Variant::WeirLegacy => "weir load, attach=legacy",
            Variant::Script => "bpftool + ip + tc",
            Variant::Batch => "bpftool batch + tc -batch",
        }
    }

    /// What runs, for the table.
    pub fn how(self) -> &'static str {
        match self {
            Variant::Weir => {
                "`weir --netns NS --pin-dir DIR load --config F`: verify the objects, create and \
                 pin the maps, load the programs, attach by XDP link (native), TCX links and \
                 cgroup links, pin the links"
            }
            Variant::WeirLegacy => {
                "the same with `attach=legacy` on the interface: XDP by netlink `IFLA_XDP`, \
                 TC by clsact + cls_bpf (netlink), cgroup links"
            }
            Variant::Script => {
                "one `bpftool prog loadall` per object (maps of earlier objects reused by \
                 `map name M pinned`, all pinned by `pinmaps`), `ip link set xdpdrv pinned`, \
                 `tc qdisc add clsact`, `tc filter add … bpf da pinned` per direction, \
                 `bpftool cgroup attach … pinned` per socket hook (prog attach, no link)"
            }
            Variant::Batch => {
                "the same steps as one `bpftool batch file` (XDP by `net attach xdpdrv`) \
                 and one `tc -batch`"
            }
        }
    }

    fn tc(self) -> TcVia {
        match self {
            Variant::Weir => TcVia::Tcx,
            _ => TcVia::ClsBpf,
        }
    }

    pub fn is_weir(self) -> bool {
        matches!(self, Variant::Weir | Variant::WeirLegacy)
    }
}

/// The competitor's own pin dir under bpffs, removed on drop (also on failure).
struct PinGuard(PathBuf);

impl PinGuard {
    fn remove(&self) -> Result<(), String> {
        if self.0.exists() {
            std::fs::remove_dir_all(&self.0)
                .map_err(|e| format!("removing {}: {e}", self.0.display()))?;
        }
        Ok(())
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("cleanup: {e}");
        }
    }
}

struct Ctx {
    spec: Spec,
    weir: PathBuf,
    self_exe: PathBuf,
    scratch: env::Scratch,
    n: Cell<u32>,
    /// The maps of the first verified load, as the kernel reports them.
    maps: RefCell<Vec<MapInfo>>,
    /// The BTF objects of those maps that need theirs to be created alone (by BTF id), held
    /// open so they outlive the load.
    btfs: RefCell<Vec<(u32, OwnedFd)>>,
}

impl Ctx {
    fn unique(&self) -> u32 {
        let n = self.n.get();
        self.n.set(n + 1);
        n
    }

    fn obj(&self, name: &str) -> String {
        self.scratch.0.join(name).to_string_lossy().into_owned()
    }
}

/// The commands of one run: the load sequence (measured) and its teardown.
struct Plan {
    load: Vec<Step>,
    teardown: Vec<Step>,
    /// Whether the commands run inside namespace `b` (the competitors: `ip`/`tc` need it, and a
    /// thread that entered it spawns them, so there is no `nsenter` exec in the timing). weir
    /// is started in the caller's namespace with `--netns`, as a user would.
    in_b: bool,
    pins: Option<PinGuard>,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn plan(ctx: &Ctx, v: Variant, sb: &Sandbox) -> Result<Plan, String> {
    let x = sb.veth_b.as_str();
    if v.is_weir() {
        let conf = ctx.scratch.0.join(format!("{}.conf", sb.ns_b));
        let legacy = if v == Variant::WeirLegacy {
            " attach=legacy"
        } else {
            ""
        };
        write(
            &conf,
            &format!(
                "interface {x} xdp=native tc=on{legacy}\ncgroup {}\n",
                sb.cgroup
            ),
        )?;
        let (w, pin, conf) = (
            ctx.weir.to_string_lossy().into_owned(),
            sb.pin_dir.to_string_lossy().into_owned(),
            conf.to_string_lossy().into_owned(),
        );
        let base = [w.as_str(), "--netns", &sb.ns_b, "--pin-dir", &pin];
        let with = |cmd: &[&str]| -> Vec<String> {
            base.iter().chain(cmd).map(|s| (*s).to_owned()).collect()
        };
        return Ok(Plan {
            load: vec![Step::owned("weir load", with(&["load", "--config", &conf]))],
            teardown: vec![Step::owned("weir unload", with(&["unload"]))],
            in_b: false,
            pins: None,
        });
    }
    let spec = &ctx.spec;
    let pins = PathBuf::from(format!(
        "/sys/fs/bpf/weir-bench-{}-{}",
        std::process::id(),
        ctx.unique()
    ));
    // Created before the timing starts (a script would `mkdir -p`, one more process: leaving it
    // out favours the competitor).
    std::fs::create_dir(&pins).map_err(|e| format!("creating {}: {e}", pins.display()))?;
    let guard = PinGuard(pins.clone());
    let p = |rel: &str| format!("{}/{rel}", pins.display());
    let prog_pin = |prog: &str| -> Result<String, String> {
        Ok(p(&format!("progs-{}/{prog}", spec.object_of(prog)?.stem)))
    };
    let cg = sb.cgroup_dir.to_string_lossy().into_owned();
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| (*s).to_owned()).collect() };

    // One `prog loadall` per object; a map an earlier object defined is reused from its pin
    // (`map name M pinned`), so maps are shared exactly as weir shares them; every object's maps
    // are pinned (`pinmaps`) into a directory of its own, since libbpf refuses to pin a map
    // over an existing pin.
    let mut loads = Vec::new();
    for o in &spec.objects {
        let mut a = words(&[
            "prog",
            "loadall",
            &ctx.obj(o.file),
            &p(&format!("progs-{}", o.stem)),
        ]);
        for (m, first) in spec.shared_maps() {
            if o.maps.contains(&m) && first != o.stem {
                a.extend(words(&[
                    "map",
                    "name",
                    &m,
                    "pinned",
                    &p(&format!("maps-{first}/{m}")),
                ]));
            }
        }
        a.extend(words(&["pinmaps", &p(&format!("maps-{}", o.stem))]));
        let reuse = if a.iter().any(|w| w == "map") {
            " … map … pinned"
        } else {
            ""
        };
        loads.push((
            format!("bpftool prog loadall {}{reuse} … pinmaps", o.file),
            a,
        ));
    }
    let xdp_pin = prog_pin(&spec.xdp)?;
    let tc_filters = [
        ("ingress", prog_pin(&spec.tc_ingress)?),
        ("egress", prog_pin(&spec.tc_egress)?),
    ]
    .map(|(dir, pin)| {
        (
            format!("tc filter add {dir} bpf da pinned"),
            words(&["filter", "add", "dev", x, dir, "bpf", "da", "pinned", &pin]),
        )
    });
    let mut cg_attach = Vec::new();
    for (prog, hook) in &spec.sock {
        cg_attach.push((
            format!("bpftool cgroup attach {}", hook.bpftool),
            words(&[
                "cgroup",
                "attach",
                &cg,
                hook.bpftool,
                "pinned",
                &prog_pin(prog)?,
            ]),
        ));
    }
    let with = |tool: &str, args: &[String]| -> Vec<String> {
        std::iter::once(tool.to_owned())
            .chain(args.iter().cloned())
            .collect()
    };
    let clsact = words(&["qdisc", "add", "dev", x, "clsact"]);
    let load = match v {
        Variant::Script => {
            let mut steps: Vec<Step> = loads
                .iter()
                .map(|(l, a)| Step::owned(l.clone(), with("bpftool", a)))
                .collect();
            steps.push(Step::new(
                "ip link set xdpdrv pinned",
                &["ip", "link", "set", "dev", x, "xdpdrv", "pinned", &xdp_pin],
            ));
            steps.push(Step::owned("tc qdisc add clsact", with("tc", &clsact)));
            for (l, a) in &tc_filters {
                steps.push(Step::owned(l.clone(), with("tc", a)));
            }
            for (l, a) in &cg_attach {
                steps.push(Step::owned(l.clone(), with("bpftool", a)));
            }
            steps
        }
        Variant::Batch => {
            let bt_file = ctx.scratch.0.join(format!("{}.bpftool", sb.ns_b));
            let tc_file = ctx.scratch.0.join(format!("{}.tc", sb.ns_b));
            let net_attach = words(&["net", "attach", "xdpdrv", "pinned", &xdp_pin, "dev", x]);
            let bt_lines: Vec<&Vec<String>> = loads
                .iter()
                .map(|(_, a)| a)
                .chain([&net_attach])
                .chain(cg_attach.iter().map(|(_, a)| a))
                .collect();
            let text = |lines: &[&Vec<String>]| -> String {
                lines.iter().map(|l| l.join(" ") + "\n").collect()
            };
            write(&bt_file, &text(&bt_lines))?;
            let tc_lines: Vec<&Vec<String>> = [&clsact]
                .into_iter()
                .chain(tc_filters.iter().map(|(_, a)| a))
                .collect();
            write(&tc_file, &text(&tc_lines))?;
            let mut batch = Step::new(
                "bpftool batch file",
                &["bpftool", "batch", "file", &bt_file.to_string_lossy()],
            );
            batch.stale_errno_quirk = true;
            vec![
                batch,
                Step::new("tc -batch", &["tc", "-batch", &tc_file.to_string_lossy()]),
            ]
        }
        Variant::Weir | Variant::WeirLegacy => unreachable!(),
    };
    let mut teardown = vec![
        Step::new("", &["ip", "link", "set", "dev", x, "xdpdrv", "off"]),
        Step::new("", &["tc", "qdisc", "del", "dev", x, "clsact"]),
    ];
    for (prog, hook) in &spec.sock {
        teardown.push(Step::new(
            "",
            &[
                "bpftool",
                "cgroup",
                "detach",
                &cg,
                hook.bpftool,
                "pinned",
                &prog_pin(prog)?,
            ],
        ));
    }
    Ok(Plan {
        load,
        teardown,
        in_b: true,
        pins: Some(guard),
    })
}

#[derive(Clone, Copy)]
enum Mode<'a> {
    Timed,
    Rusage,
    Strace(&'a Path),
}

enum Measured {
    Timed { total: Duration, per: Vec<Duration> },
    Rusage(Vec<Usage>),
    Traced(Profile),
}

fn execute(
    sb: &Sandbox,
    steps: &[Step],
    in_b: bool,
    mode: Mode<'_>,
    self_exe: &Path,
) -> Result<Measured, String> {
    let work = || -> Result<Measured, String> {
        match mode {
            Mode::Timed => {
                let t0 = Instant::now();
                let mut per = Vec::with_capacity(steps.len());
                for s in steps {
                    per.push(proc::run(s)?);
                }
                Ok(Measured::Timed {
                    total: t0.elapsed(),
                    per,
                })
            }
            Mode::Rusage => steps
                .iter()
                .map(|s| proc::run_rusage(self_exe, s))
                .collect::<Result<_, _>>()
                .map(Measured::Rusage),
            Mode::Strace(dir) => {
                let mut prof = Profile::default();
                for (i, s) in steps.iter().enumerate() {
                    let f = dir.join(format!("trace-{}-{i}", std::process::id()));
                    proc::run_strace(s, &f)?;
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| format!("reading {}: {e}", f.display()))?;
                    let _ = std::fs::remove_file(&f);
                    prof.add_trace(&text);
                }
                Ok(Measured::Traced(prof))
            }
        }
    };
    if in_b {
        sb.in_b(work).map_err(|e| e.to_string())?
    } else {
        work()
    }
}

/// One run of `v` in a fresh sandbox: load (measured as `mode` says), check, tear down, check.
fn one(ctx: &Ctx, v: Variant, mode: Mode<'_>) -> Result<(Measured, Vec<String>), String> {
    let sb = Sandbox::new("b5").map_err(|e| format!("building the sandbox: {e}"))?;
    // Declared after `sb`, so dropped (pins removed) before the sandbox goes.
    let plan = plan(ctx, v, &sb)?;
    std::thread::sleep(SETTLE);
    let m = execute(&sb, &plan.load, plan.in_b, mode, &ctx.self_exe)
        .map_err(|e| format!("{}: {e}", v.name()))?;
    let maps = kstate::verify_attached(&sb, v.tc(), &ctx.spec)
        .map_err(|e| format!("{}: kernel state after load: {e}", v.name()))?;
    if ctx.maps.borrow().is_empty() {
        let mut btfs = ctx.btfs.borrow_mut();
        for m in maps.iter().filter(|m| needs_btf(m.map_type)) {
            if !btfs.iter().any(|(id, _)| *id == m.btf_id) {
                let fd = bpf::btf_fd_by_id(m.btf_id)
                    .map_err(|e| format!("map '{}': BTF id {}: {e}", m.name, m.btf_id))?;
                btfs.push((m.btf_id, fd));
            }
        }
        *ctx.maps.borrow_mut() = maps;
    }
    execute(&sb, &plan.teardown, plan.in_b, Mode::Timed, &ctx.self_exe)
        .map_err(|e| format!("{}: teardown: {e}", v.name()))?;
    if let Some(p) = &plan.pins {
        p.remove()?;
    }
    kstate::verify_clean(&sb, &ctx.spec).map_err(|e| format!("{}: {e}", v.name()))?;
    if sb.pin_dir.exists() {
        return Err(format!(
            "{}: {} still exists after unload",
            v.name(),
            sb.pin_dir.display()
        ));
    }
    Ok((m, plan.load.iter().map(|s| s.label.clone()).collect()))
}

/// Creations of each map alone, for its median.
const MAP_CREATES: usize = 5;

/// Creates a map like `m` (type, sizes, flags) on its own, MAP_CREATES times; the median wall
/// time of `BPF_MAP_CREATE` in ms. Without BTF, which costs little beside the allocation,
/// except for the maps the kernel refuses without it (socket storage): those get `btf`, the
/// loaded map's own BTF object, and its type ids.
///
/// # Errors
/// The kernel refuses the map.
fn map_create_ms(m: &MapInfo, btf: Option<BorrowedFd<'_>>) -> Result<f64, String> {
    let mut t = Vec::with_capacity(MAP_CREATES);
    for _ in 0..MAP_CREATES {
        let a = MapCreate {
            name: &m.name,
            map_type: m.map_type,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            flags: m.flags,
            btf_fd: btf,
            btf_key_type_id: if btf.is_some() { m.btf_key_type_id } else { 0 },
            btf_value_type_id: if btf.is_some() {
                m.btf_value_type_id
            } else {
                0
            },
            map_extra: m.map_extra,
        };
        let t0 = Instant::now();
        let fd = bpf::map_create(&a).map_err(|e| format!("map '{}' alone: {e}", m.name))?;
        t.push(ms(t0.elapsed()));
        // Freed asynchronously (after an RCU grace period): let it go before the next one.
        drop(fd);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(crate::report::med(&t))
}

/// Map types the kernel creates only with BTF for their value: the local storage of sockets,
/// inodes, tasks and cgroups (`enum bpf_map_type` 24, 28, 29, 32).
fn needs_btf(map_type: u32) -> bool {
    const LOCAL_STORAGE: [u32; 4] = [24, 28, 29, 32];
    LOCAL_STORAGE.contains(&map_type)
}

/// Round `r` runs the variants starting at a different one each time.
fn order(r: usize) -> Vec<Variant> {
    (0..VARIANTS.len())
        .map(|i| VARIANTS[(r + i) % VARIANTS.len()])
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs B5 and writes its section of BENCHMARKS.md.
///
/// # Errors
/// A missing prerequisite, a failed command, or kernel state that does not match.
pub fn run(opts: &Options) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("B5 loads BPF programs: run it as root".into());
    }
    weir::sys::bpffs::ensure_mounted(Path::new("/sys/fs/bpf"))
        .map_err(|e| format!("mounting bpffs at /sys/fs/bpf: {e}"))?;
    env::ensure_tools(&[
        ("bpftool", "bpftool"),
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("strace", "strace"),
    ])?;
    let weir = match &opts.weir {
        Some(p) => p
            .canonicalize()
            .map_err(|e| format!("--weir {}: {e}", p.display()))?,
        None => env::build_weir()?,
    };
    let scratch = env::Scratch::new("b5")?;
    let spec = Spec::embedded()?;
    // The competitors load exactly the bytes weir embeds.
    for o in &spec.objects {
        std::fs::write(scratch.0.join(o.file), o.bytes)
            .map_err(|e| format!("writing {}: {e}", o.file))?;
    }
    let binary = env::binary_info(&weir, &scratch.0)?;
    let facts = env::facts();
    let ctx = Ctx {
        spec,
        weir,
        self_exe: std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
        scratch,
        n: Cell::new(0),
        maps: RefCell::new(Vec::new()),
        btfs: RefCell::new(Vec::new()),
    };
    eprintln!(
        "B5: weir {} ({} bytes); {} rusage round(s), then {} timed rounds of {} variants",
        ctx.weir.display(),
        binary.size,
        opts.rss_rounds,
        opts.rounds,
        VARIANTS.len()
    );

    let mut res = Results::new(opts, facts, binary, ctx.spec.describe());
    for r in 0..opts.rss_rounds {
        for v in order(r) {
            let (Measured::Rusage(u), labels) = one(&ctx, v, Mode::Rusage)? else {
                unreachable!()
            };
            res.add_usage(v, &labels, &u);
        }
        eprintln!("rusage round {}/{} done", r + 1, opts.rss_rounds);
    }
    let floors = [
        Step::new(
            "weir --version",
            &[&ctx.weir.to_string_lossy(), "--version"],
        ),
        Step::new("bpftool version", &["bpftool", "version"]),
        Step::new("ip -V", &["ip", "-V"]),
        Step::new("tc -V", &["tc", "-V"]),
    ];
    for r in 0..opts.rounds {
        let mut line = Vec::new();
        for v in order(r) {
            let (Measured::Timed { total, per }, labels) = one(&ctx, v, Mode::Timed)? else {
                unreachable!()
            };
            res.add_time(v, ms(total), &labels, per.iter().map(|&d| ms(d)).collect());
            line.push(format!("{} {:.1} ms", v.name(), ms(total)));
        }
        for f in &floors {
            res.add_floor(&f.label, ms(proc::run(f)?));
        }
        eprintln!("round {}/{}: {}", r + 1, opts.rounds, line.join(", "));
    }
    for v in [Variant::Weir, Variant::WeirLegacy, Variant::Script] {
        let (Measured::Traced(p), _) = one(&ctx, v, Mode::Strace(&ctx.scratch.0))? else {
            unreachable!()
        };
        res.add_profile(v, p);
    }
    for m in ctx.maps.borrow().iter() {
        let btfs = ctx.btfs.borrow();
        let btf = btfs
            .iter()
            .find(|(id, _)| *id == m.btf_id && needs_btf(m.map_type));
        res.add_map_cost(m, map_create_ms(m, btf.map(|(_, fd)| fd.as_fd()))?);
    }
    let path = env::workspace_root().join("BENCHMARKS.md");
    res.previous = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| report::previous_run(&t));
    let section = report::section(&res);
    println!("{section}");
    if opts.write {
        report::write_section(&path, report::HEADING, &section)?;
        eprintln!("wrote the B5 section of {}", path.display());
    }
    Ok(())
}
