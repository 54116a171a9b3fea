//! B4: the control plane. Time to apply one change with N entries present, and to bulk-load N,
//! for weir's network policy and what a user would pick instead. An "entry" is a CIDR in a set
//! that one ingress rule of a workload references:
//!
//! - **weir (library)**: bulk is `Dataplane::apply_report` inside the host namespace of a
//!   `weir::topology::Routed` node, timing the apply alone (the config is parsed beforehand;
//!   its parse is timed separately); a change is `Dataplane::set_members` (`weir set add`: the
//!   set changed in place in the bank in force);
//! - **weir (command)**: the whole `weir --pin-dir P apply FILE` (process start, parse of the
//!   config and its `ipset-file`, compile, map writes) for bulk, `weir --pin-dir P set add big
//!   CIDR` for a change;
//! - **weir apply of the file**: a change as a full apply of the file with the entry added
//!   (`Dataplane::apply_report`: compile and rewrite of the inactive bank), for comparison;
//! - **iptables-restore (full)**: N rules `-s CIDR -p tcp --dport 80 -j ACCEPT` in a
//!   per-endpoint chain; a change is a restore of the whole table with the rule added, as
//!   kube-proxy and Calico's iptables mode do;
//! - **iptables-restore --noflush**: the same table; a change is one `-A` line;
//! - **ipset**: a `hash:net` set referenced by one iptables rule; bulk is `ipset restore` of N
//!   `add` lines, a change is `ipset add`;
//! - **nft**: an interval set referenced by one rule in a forward chain; bulk is `nft -f` of the
//!   table with its N elements, a change is `nft -f` with one `add element`.
//!
//! Every command runs under `nsenter --net=…` (the competitors in a namespace of their own, weir
//! with its node's host namespace); the cost of `nsenter --net=NS true`, measured in every round,
//! is subtracted. Within a round the variants run back to back, the first one rotating.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir::config::Config;
use weir::policy::incremental::SetOp;
use weir::topology::Routed;

use crate::env::{self, Facts};
use crate::flags::Flags;
use crate::proc::{self, output_of, Step};
use crate::report::{self, fmt_n, med, show, show_x, verdict};

/// The heading of B4's section.
pub const HEADING: &str = "## B4: control plane: one change with N entries present, bulk load";

const DEFAULT_ROUNDS: usize = 7;
const DEFAULT_SCALES: [usize; 4] = [100, 1000, 10_000, 100_000];
const PORT: u16 = 80;

// ---------------------------------------------------------------------------------------------
// Options

/// Command-line options of `b4`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub scales: Vec<usize>,
    /// The weir binary for the command variant (default: build the static musl one).
    pub weir: Option<PathBuf>,
    pub write: bool,
    /// Hidden `--dev`: fewer rounds allowed, nothing written.
    pub dev: bool,
}

impl Options {
    /// Parses `[--rounds N] [--scales A,B,..] [--weir PATH] [--no-write]` (and `--dev`).
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rounds: DEFAULT_ROUNDS,
            scales: DEFAULT_SCALES.to_vec(),
            weir: None,
            write: true,
            dev: false,
        };
        let mut f = Flags::new("b4", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rounds" => o.rounds = f.number(a)? as usize,
                "--scales" => o.scales = f.numbers(a)?,
                "--weir" => o.weir = Some(PathBuf::from(f.value(a)?)),
                "--no-write" => o.write = false,
                "--dev" => o.dev = true,
                other => return Err(f.unknown(other)),
            }
        }
        if o.dev {
            o.write = false;
        }
        let min_rounds = if o.dev { 1 } else { 7 };
        if o.rounds < min_rounds {
            return Err(format!("b4: --rounds must be at least {min_rounds}"));
        }
        if o.scales.is_empty() || o.scales.iter().any(|&n| !(1..=1_000_000).contains(&n)) {
            return Err("b4: --scales must be between 1 and 1000000".into());
        }
        Ok(o)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p weir-bench -- b4 --rounds {}",
            self.rounds
        );
        if self.scales != DEFAULT_SCALES {
            let s: Vec<String> = self.scales.iter().map(|n| n.to_string()).collect();
            c += &format!(" --scales {}", s.join(","));
        }
        c
    }
}

// ---------------------------------------------------------------------------------------------
// The entries and the rulesets (pure)

/// Entry `i`: disjoint /30s from 10.0.0.0 up (4M of them fit).
pub fn cidr(i: usize) -> String {
    format!("{}/30", Ipv4Addr::from(0x0a00_0000u32 + (i as u32) * 4))
}

/// The ipset file with entries `0..n` (one per line).
fn set_file(n: usize) -> String {
    let mut t = String::with_capacity(n * 16);
    for i in 0..n {
        t += &cidr(i);
        t.push('\n');
    }
    t
}

/// weir's config: the node's interfaces (workload 1 labelled), and one ingress rule over the set
/// in `set_path`.
fn weir_config(node: &Routed, set_path: &Path) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "interface {} role=workload xdp=off addrs={},{} labels=app:b4",
        node.w1.host_if, node.w1.v4, node.w1.v6
    );
    let _ = writeln!(
        t,
        "interface {} role=workload xdp=off addrs={},{}",
        node.w2.host_if, node.w2.v4, node.w2.v6
    );
    let _ = writeln!(t, "interface {} xdp=off", node.out.host_if);
    t += "classifier capacity chunks=262144 bitmaps=16384\n";
    let _ = writeln!(t, "ipset-file big {}", set_path.display());
    t += "policy b4 selector=\"app == 'b4'\"\n";
    let _ = writeln!(
        t,
        "rule b4 ingress allow proto=tcp dport={PORT} remote=set:big"
    );
    t
}

/// The iptables-restore file: a per-endpoint chain with `n` rules.
fn iptables_rules(ep_if: &str, n: usize) -> String {
    let mut t = String::with_capacity(n * 64 + 200);
    t += "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:b4-ep - [0:0]\n";
    let _ = writeln!(t, "-A FORWARD -o {ep_if} -j b4-ep");
    for i in 0..n {
        let _ = writeln!(t, "-A b4-ep -s {} -p tcp --dport {PORT} -j ACCEPT", cidr(i));
    }
    t += "COMMIT\n";
    t
}

/// One rule appended with `iptables-restore --noflush`.
fn iptables_one(i: usize) -> String {
    format!(
        "*filter\n-A b4-ep -s {} -p tcp --dport {PORT} -j ACCEPT\nCOMMIT\n",
        cidr(i)
    )
}

/// `ipset restore` input: create `name` and add entries `0..n`.
fn ipset_restore(name: &str, n: usize) -> String {
    let mut t = String::with_capacity(n * 24 + 100);
    let _ = writeln!(
        t,
        "create {name} hash:net family inet hashsize 1024 maxelem {}",
        (n + 1024).next_power_of_two()
    );
    for i in 0..n {
        let _ = writeln!(t, "add {name} {}", cidr(i));
    }
    t
}

/// The nft table: an interval set of entries `0..n` and one rule using it.
fn nft_table(ep_if: &str, n: usize) -> String {
    let mut t = String::with_capacity(n * 16 + 300);
    t += "table ip b4 {\n\tset allow {\n\t\ttype ipv4_addr\n\t\tflags interval\n";
    if n > 0 {
        t += "\t\telements = { ";
        for i in 0..n {
            if i > 0 {
                t += ", ";
            }
            t += &cidr(i);
        }
        t += " }\n";
    }
    t += "\t}\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n";
    let _ = writeln!(
        t,
        "\t\toifname \"{ep_if}\" ip saddr @allow tcp dport {PORT} accept"
    );
    t += "\t}\n}\n";
    t
}

// ---------------------------------------------------------------------------------------------
// Variants

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    WeirLib,
    WeirCmd,
    WeirFile,
    IptFull,
    IptNoflush,
    Ipset,
    Nft,
}

const VARIANTS: [V; 7] = [
    V::WeirLib,
    V::WeirCmd,
    V::WeirFile,
    V::IptFull,
    V::IptNoflush,
    V::Ipset,
    V::Nft,
];

impl V {
    fn name(self) -> &'static str {
        match self {
            V::WeirLib => "weir apply / set add (library call)",
            V::WeirCmd => "`weir apply` / `weir set add` (command)",
            V::WeirFile => "weir apply of the file (library call)",
            V::IptFull => "iptables-restore (whole table)",
            V::IptNoflush => "iptables-restore --noflush (one rule)",
            V::Ipset => "ipset restore / ipset add",
            V::Nft => "nft -f (table / add element)",
        }
    }

    fn idx(self) -> usize {
        VARIANTS.iter().position(|&v| v == self).unwrap_or(0)
    }
}

/// One measurement: bulk load of N and one change with N present, in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Meas {
    bulk: f64,
    change: f64,
}

// ---------------------------------------------------------------------------------------------
// The setup

/// A network namespace of ours, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Self, String> {
        output_of(&["ip", "netns", "add", &name])?;
        Ok(Self(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = output_of(&["ip", "netns", "del", &self.0]);
    }
}

/// weir's parsed configs of one scale: one entry, n, n + 1.
struct Cfgs {
    c0: Config,
    cn: Config,
    cn1: Config,
}

struct Bench<'a> {
    node: Routed,
    comp: Netns,
    dp: weir::Dataplane,
    weir_bin: PathBuf,
    dir: &'a Path,
    /// The endpoint interface the competitors' rules name (it need not exist there).
    ep_if: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Bench<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let p = self.path(name);
        std::fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
        Ok(p)
    }

    /// Runs `argv` in the competitors' namespace (or `ns`) and times it.
    fn timed_in(&self, ns: &str, argv: &[&str]) -> Result<f64, String> {
        // nsenter, not `ip netns exec`: that remounts /sys and so hides weir's pins.
        let net = format!("--net=/run/netns/{ns}");
        let mut all = vec!["nsenter", &net];
        all.extend_from_slice(argv);
        proc::run(&Step::new(argv.join(" "), &all)).map(ms)
    }

    fn timed(&self, argv: &[&str]) -> Result<f64, String> {
        self.timed_in(&self.comp.0, argv)
    }

    /// Applies `cfg` (the library call alone is timed); `must_switch`: fail when it wrote nothing.
    fn apply_as(&self, cfg: &Config, must_switch: bool) -> Result<f64, String> {
        let r = self
            .node
            .run_in(&self.node.host, || {
                let t = Instant::now();
                self.dp.apply_report(cfg).map(|r| (r, t.elapsed()))
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("weir apply: {e}"))?;
        if must_switch && !r.0.policy.switched {
            return Err("weir apply wrote no new policy bank".into());
        }
        Ok(ms(r.1))
    }

    fn weir_cmd(&self, conf: &Path) -> Result<f64, String> {
        let conf = conf.to_string_lossy().into_owned();
        self.weir_cmd_args(&["apply", &conf])
    }

    /// `weir --pin-dir P ARGS...` in the node's host namespace, timed.
    fn weir_cmd_args(&self, args: &[&str]) -> Result<f64, String> {
        let bin = self.weir_bin.to_string_lossy().into_owned();
        let pin = self.node.pin_dir.to_string_lossy().into_owned();
        let mut all = vec![bin.as_str(), "--pin-dir", pin.as_str()];
        all.extend_from_slice(args);
        self.timed_in(&self.node.host, &all)
    }

    /// Adds entry `i` to set `big` in place (`Dataplane::set_members`), timing the call.
    fn set_add_lib(&self, i: usize) -> Result<f64, String> {
        let c = weir::config::Cidr::parse(&cidr(i)).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let r = self
            .dp
            .set_members("big", SetOp::Add, &[c])
            .map_err(|e| format!("weir set add: {e}"))?;
        let took = t.elapsed();
        if r.changed != 1 {
            return Err(format!("weir set add changed {} members, not 1", r.changed));
        }
        Ok(ms(took))
    }

    /// Writes every file of scale `n`, sets up the ipset variant's set, and parses weir's
    /// configs.
    fn prepare(&self, n: usize) -> Result<Cfgs, String> {
        for (tag, k) in [("0", 1), (&*n.to_string(), n), (&*format!("{n}p1"), n + 1)] {
            let set = self.write(&format!("set-{tag}.txt"), &set_file(k))?;
            let conf = weir_config(&self.node, &set);
            self.write(&format!("weir-{tag}.conf"), &conf)?;
        }
        self.write("ipt-empty.rules", &iptables_rules(&self.ep_if, 0))?;
        self.write(&format!("ipt-{n}.rules"), &iptables_rules(&self.ep_if, n))?;
        self.write(
            &format!("ipt-{n}p1.rules"),
            &iptables_rules(&self.ep_if, n + 1),
        )?;
        self.write("ipt-one.rules", &iptables_one(n))?;
        self.write("ipset-bulk.restore", &ipset_restore("b4bulk", n))?;
        self.write("nft-empty.nft", &nft_table(&self.ep_if, 0))?;
        self.write(&format!("nft-{n}.nft"), &nft_table(&self.ep_if, n))?;
        self.write(
            "nft-one.nft",
            &format!("add element ip b4 allow {{ {} }}\n", cidr(n)),
        )?;
        // The ipset change variant's set of n, referenced by a rule in a chain of its own (in
        // mangle: the iptables variants' restores replace the filter table).
        let _ = output_of(&[
            "ip",
            "netns",
            "exec",
            &self.comp.0,
            "iptables",
            "-w",
            "-t",
            "mangle",
            "-F",
            "b4-set",
        ]);
        let _ = output_of(&[
            "ip",
            "netns",
            "exec",
            &self.comp.0,
            "ipset",
            "destroy",
            "b4",
        ]);
        self.write("ipset-n.restore", &ipset_restore("b4", n))?;
        let f = self.path("ipset-n.restore").to_string_lossy().into_owned();
        output_of(&[
            "ip",
            "netns",
            "exec",
            &self.comp.0,
            "ipset",
            "restore",
            "-file",
            &f,
        ])?;
        let _ = output_of(&[
            "ip",
            "netns",
            "exec",
            &self.comp.0,
            "iptables",
            "-w",
            "-t",
            "mangle",
            "-N",
            "b4-set",
        ]);
        output_of(&[
            "ip",
            "netns",
            "exec",
            &self.comp.0,
            "iptables",
            "-w",
            "-t",
            "mangle",
            "-A",
            "b4-set",
            "-m",
            "set",
            "--match-set",
            "b4",
            "src",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "ACCEPT",
        ])?;
        Ok(Cfgs {
            c0: self.weir_cfg_named("0")?,
            cn: self.weir_cfg_named(&n.to_string())?,
            cn1: self.weir_cfg_named(&format!("{n}p1"))?,
        })
    }

    /// The cost of `nsenter --net=NS true`: subtracted from every command.
    fn floor(&self) -> Result<f64, String> {
        self.timed(&["true"])
    }

    fn measure(&self, v: V, n: usize, cfgs: &Cfgs) -> Result<Meas, String> {
        let p = |name: &str| self.path(name).to_string_lossy().into_owned();
        let nn = n.to_string();
        Ok(match v {
            V::WeirLib | V::WeirCmd | V::WeirFile => {
                self.apply_as(&cfgs.c0, false)?;
                let (bulk, change) = match v {
                    V::WeirLib => (self.apply_as(&cfgs.cn, true)?, self.set_add_lib(n)?),
                    V::WeirFile => (
                        self.apply_as(&cfgs.cn, true)?,
                        self.apply_as(&cfgs.cn1, true)?,
                    ),
                    _ => {
                        let conf = self.path(&format!("weir-{nn}.conf"));
                        (
                            self.weir_cmd(&conf)?,
                            self.weir_cmd_args(&["set", "add", "big", &cidr(n)])?,
                        )
                    }
                };
                Meas { bulk, change }
            }
            V::IptFull | V::IptNoflush => {
                output_of(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.comp.0,
                    "iptables-restore",
                    &p("ipt-empty.rules"),
                ])?;
                let bulk = self.timed(&["iptables-restore", &p(&format!("ipt-{nn}.rules"))])?;
                let change = if v == V::IptFull {
                    self.timed(&["iptables-restore", &p(&format!("ipt-{nn}p1.rules"))])?
                } else {
                    self.timed(&["iptables-restore", "--noflush", &p("ipt-one.rules")])?
                };
                Meas { bulk, change }
            }
            V::Ipset => {
                let bulk = self.timed(&["ipset", "restore", "-file", &p("ipset-bulk.restore")])?;
                output_of(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.comp.0,
                    "ipset",
                    "destroy",
                    "b4bulk",
                ])?;
                let c = cidr(n);
                let change = self.timed(&["ipset", "add", "b4", &c])?;
                output_of(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.comp.0,
                    "ipset",
                    "del",
                    "b4",
                    &c,
                ])?;
                Meas { bulk, change }
            }
            V::Nft => {
                let _ = output_of(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.comp.0,
                    "nft",
                    "delete",
                    "table",
                    "ip",
                    "b4",
                ]);
                let bulk = self.timed(&["nft", "-f", &p(&format!("nft-{nn}.nft"))])?;
                let change = self.timed(&["nft", "-f", &p("nft-one.nft")])?;
                output_of(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.comp.0,
                    "nft",
                    "delete",
                    "table",
                    "ip",
                    "b4",
                ])?;
                Meas { bulk, change }
            }
        })
    }

    fn weir_cfg_named(&self, tag: &str) -> Result<Config, String> {
        let conf = self.path(&format!("weir-{tag}.conf"));
        weir::config::parse_file(&conf).map_err(|e| format!("parsing {}: {e}", conf.display()))
    }

    /// Parse time of the config of n entries (ms).
    fn parse_ms(&self, n: usize) -> Result<f64, String> {
        let conf = self.path(&format!("weir-{n}.conf"));
        let t = Instant::now();
        weir::config::parse_file(&conf).map_err(|e| format!("parsing {}: {e}", conf.display()))?;
        Ok(ms(t.elapsed()))
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn tool_versions() -> Vec<String> {
    let first = |argv: &[&str]| {
        output_of(argv)
            .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| e)
    };
    vec![
        first(&["iptables", "-V"]),
        first(&["ipset", "version"]),
        first(&["nft", "--version"]),
    ]
}

/// Per scale: per variant, one measurement per timed round (floor subtracted); weir's parse
/// times; the floors.
struct ScaleSamples {
    n: usize,
    meas: Vec<Vec<Meas>>,
    parse: Vec<f64>,
    floor: Vec<f64>,
}

/// Runs B4 and writes its section of BENCHMARKS.md.
///
/// # Errors
/// A missing prerequisite or a failed command.
pub fn run(opts: &Options) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("B4 builds namespaces and loads BPF programs: run it as root".into());
    }
    let t0 = Instant::now();
    env::ensure_tools(&[
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("iptables-restore", "iptables"),
        ("ipset", "ipset"),
        ("nft", "nftables"),
    ])?;
    weir::sys::bpffs::ensure_mounted(Path::new("/sys/fs/bpf"))
        .map_err(|e| format!("mounting bpffs at /sys/fs/bpf: {e}"))?;
    let weir_bin = match &opts.weir {
        Some(p) => p
            .canonicalize()
            .map_err(|e| format!("--weir {}: {e}", p.display()))?,
        None => env::build_weir()?,
    };
    let mut facts = env::facts();
    facts.tools = tool_versions();
    let scratch = env::Scratch::new("b4")?;
    let node = Routed::new("b4").map_err(|e| format!("building the weir node: {e}"))?;
    let comp = Netns::new(format!("weir-b4-{}-c", std::process::id()))?;
    let b = Bench {
        dp: weir::Dataplane::new(node.pin_dir.clone()),
        ep_if: node.w1.host_if.clone(),
        node,
        comp,
        weir_bin,
        dir: &scratch.0,
    };
    // Load weir once with one entry (the maps are sized by the config's capacities).
    b.write("set-0.txt", &set_file(1))?;
    let conf0 = weir_config(&b.node, &b.path("set-0.txt"));
    let cfg0 = weir::config::parse("b4.conf", &conf0).map_err(|e| e.to_string())?;
    b.node
        .run_in(&b.node.host, || b.dp.load(&cfg0))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("weir load: {e}"))?;

    let mut all = Vec::new();
    for &n in &opts.scales {
        eprintln!("B4: N = {n}: preparing");
        let cfgs = b.prepare(n)?;
        let mut s = ScaleSamples {
            n,
            meas: vec![Vec::new(); VARIANTS.len()],
            parse: Vec::new(),
            floor: Vec::new(),
        };
        for round in 0..=opts.rounds {
            let tr = Instant::now();
            let floor = b.floor()?;
            let parse = b.parse_ms(n)?;
            let mut order: Vec<V> = VARIANTS.to_vec();
            order.rotate_left(round % VARIANTS.len());
            let mut got = vec![Meas::default(); VARIANTS.len()];
            for v in order {
                let mut m = b.measure(v, n, &cfgs)?;
                if v != V::WeirLib {
                    m.bulk -= floor;
                    m.change -= floor;
                }
                got[v.idx()] = m;
            }
            eprintln!(
                "N = {n} {} ({:.1} s): change ms {}",
                if round == 0 {
                    "warm-up".to_owned()
                } else {
                    format!("round {round}/{}", opts.rounds)
                },
                tr.elapsed().as_secs_f64(),
                got.iter()
                    .map(|m| format!("{:.2}", m.change))
                    .collect::<Vec<_>>()
                    .join("/")
            );
            if round > 0 {
                for (i, m) in got.into_iter().enumerate() {
                    s.meas[i].push(m);
                }
                s.parse.push(parse);
                s.floor.push(floor);
            }
        }
        all.push(s);
    }
    let section = section(opts, &facts, &all, t0.elapsed().as_secs_f64() / 60.0);
    println!("{section}");
    if opts.write {
        let path = env::workspace_root().join("BENCHMARKS.md");
        report::write_section(&path, HEADING, &section)?;
        eprintln!("wrote the B4 section of {}", path.display());
    }
    drop(b);
    Ok(())
}

/// Per-round ratios a / b.
fn ratio(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

fn section(opts: &Options, facts: &Facts, all: &[ScaleSamples], minutes: f64) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{HEADING}\n");
    let _ = writeln!(
        t,
        "{} · kernel {} · commit {} · {} CPUs · {} · `{}` · {} timed rounds (+1 warm-up), \
         {minutes:.1} min\n",
        facts.date,
        facts.kernel,
        facts.commit,
        facts.cpus,
        facts.tools.join(" · "),
        opts.command(),
        opts.rounds
    );
    t += "An entry is a CIDR (disjoint /30s) in a set that one ingress rule of a workload \
          references (`rule … allow proto=tcp dport=80 remote=set:big` for weir, the same as N \
          iptables rules in a per-endpoint chain, an ipset, an nft interval set). **Bulk**: \
          load N into an empty state; **one change**: add one entry with N present. The weir \
          library times are `Dataplane::apply_report` alone for bulk (config parsed beforehand) \
          and `Dataplane::set_members` (`weir set add`, in place) for a change; \
          \"weir apply of the file\" is the change as a full apply of the config with the \
          entry added. Every command runs under `nsenter --net=NS`, whose own cost (`nsenter --net=NS true`, measured \
          each round) is subtracted. Times in ms, median (min–max) over the rounds; ratios are \
          per round.\n\n";
    t += "| N | variant | bulk load (ms) | one change (ms) | one change vs weir library |\n";
    t += "|---:|---|---:|---:|---:|\n";
    for s in all {
        let lib: Vec<f64> = s.meas[V::WeirLib.idx()].iter().map(|m| m.change).collect();
        for v in VARIANTS {
            let m = &s.meas[v.idx()];
            let bulk: Vec<f64> = m.iter().map(|m| m.bulk).collect();
            let ch: Vec<f64> = m.iter().map(|m| m.change).collect();
            let vs = if v == V::WeirLib {
                "1×".to_owned()
            } else {
                show_x(&ratio(&ch, &lib))
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {vs} |",
                fmt_n(s.n),
                v.name(),
                show(&bulk, 2),
                show(&ch, 3)
            );
        }
        let _ = writeln!(
            t,
            "| {} | weir: parse of the config (library) | {} | | |",
            fmt_n(s.n),
            show(&s.parse, 2)
        );
    }
    let _ = writeln!(
        t,
        "\n`nsenter --net=NS true` (subtracted): {} ms.\n",
        show(
            &all.iter().flat_map(|s| s.floor.clone()).collect::<Vec<_>>(),
            2
        )
    );
    let pts = |v: V, f: fn(&Meas) -> f64| -> Vec<(usize, f64)> {
        all.iter()
            .map(|s| {
                let x: Vec<f64> = s.meas[v.idx()].iter().map(f).collect();
                (s.n, med(&x))
            })
            .collect()
    };
    let _ = writeln!(
        t,
        "Shape of one change over N: weir library {}; iptables-restore (whole table) {}; nft {}.\n",
        report::shape(&pts(V::WeirLib, |m| m.change), 0.05, "ms", "entries"),
        report::shape(&pts(V::IptFull, |m| m.change), 0.5, "ms", "entries"),
        report::shape(&pts(V::Nft, |m| m.change), 0.5, "ms", "entries"),
    );
    if let Some(s) = all.iter().max_by_key(|s| s.n) {
        let get =
            |v: V, f: fn(&Meas) -> f64| -> Vec<f64> { s.meas[v.idx()].iter().map(f).collect() };
        let lib_ch = get(V::WeirLib, |m| m.change);
        let lib_bulk = get(V::WeirLib, |m| m.bulk);
        let vs_ipt = ratio(&get(V::IptFull, |m| m.change), &lib_ch);
        let n = fmt_n(s.n);
        let _ = writeln!(t, "Goals (at N = {n}):\n");
        let _ = writeln!(
            t,
            "- one change ≤ 1 ms: weir library {} ms, {} ({:.2}× the goal); the whole command {} ms",
            show(&lib_ch, 2),
            verdict(med(&lib_ch) <= 1.0),
            med(&lib_ch),
            show(&get(V::WeirCmd, |m| m.change), 1)
        );
        let _ = writeln!(
            t,
            "- one change ≥ 1000× faster than iptables-restore of the same ruleset: {}, {}",
            show_x(&vs_ipt),
            verdict(med(&vs_ipt) >= 1000.0)
        );
        let _ = writeln!(
            t,
            "- bulk load ≤ 200 ms: weir library {} ms, {}; the whole command {} ms\n",
            show(&lib_bulk, 1),
            verdict(med(&lib_bulk) <= 200.0),
            show(&get(V::WeirCmd, |m| m.bulk), 1)
        );
    }
    t += "How weir changes one entry: `weir set add` (and `del`) changes the set in the policy \
          in force in place. A full apply persists a set index next to the tables (each set's \
          members, the rule sets and rule bits referencing it, inline prefixes, bitmap interning, \
          the bank's next free chunk and bitmap id); the command reads the few entries on the \
          changed prefix's path, recomputes the leaves under the prefix, writes new bitmaps and \
          chunks first and the slots that point to them last, so every packet sees the old or \
          the new membership. No parse, no compile, no bank switch: O(change), like ipset and \
          nft. The full apply of the file (the third row) compiles the whole policy and \
          rewrites the inactive bank, O(N); the next apply or load puts the config's members \
          back.\n";
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_parse_and_reproduce() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!(
            (o.rounds, o.scales.clone(), o.write),
            (7, DEFAULT_SCALES.to_vec(), true)
        );
        assert_eq!(
            o.command(),
            "cargo run --release -p weir-bench -- b4 --rounds 7"
        );
        let o = Options::parse(&args("--rounds 9 --scales 10,1_000 --no-write --weir /x")).unwrap();
        assert_eq!((o.rounds, o.write), (9, false));
        assert_eq!(o.weir, Some(PathBuf::from("/x")));
        assert!(o.command().ends_with("--rounds 9 --scales 10,1000"));
        assert!(Options::parse(&args("--rounds 3")).is_err());
        assert!(Options::parse(&args("--rounds 3 --dev")).is_ok());
        assert!(Options::parse(&args("--scales 0")).is_err());
        assert!(Options::parse(&args("--bogus")).is_err());
    }

    #[test]
    fn entries_are_disjoint_and_rulesets_complete() {
        assert_eq!(cidr(0), "10.0.0.0/30");
        assert_eq!(cidr(1), "10.0.0.4/30");
        assert_eq!(cidr(100_000), "10.6.26.128/30");
        assert_eq!(set_file(3), "10.0.0.0/30\n10.0.0.4/30\n10.0.0.8/30\n");
        let ipt = iptables_rules("h1", 3);
        assert!(ipt.starts_with("*filter\n") && ipt.ends_with("COMMIT\n"));
        assert_eq!(ipt.matches("-A b4-ep -s ").count(), 3);
        assert!(ipt.contains("-A FORWARD -o h1 -j b4-ep\n"));
        assert!(iptables_one(5).contains("-A b4-ep -s 10.0.0.20/30 "));
        let set = ipset_restore("s", 2);
        assert!(set.starts_with("create s hash:net family inet hashsize 1024 maxelem 2048\n"));
        assert!(set.ends_with("add s 10.0.0.0/30\nadd s 10.0.0.4/30\n"));
        let nft = nft_table("h1", 2);
        assert!(nft.contains("elements = { 10.0.0.0/30, 10.0.0.4/30 }"));
        assert!(nft.contains("oifname \"h1\" ip saddr @allow tcp dport 80 accept"));
        assert!(!nft_table("h1", 0).contains("elements"));
    }

    #[test]
    fn weir_config_parses() {
        let node_cfg = |set: &str| {
            format!(
                "interface b4h1 role=workload xdp=off addrs=198.18.1.2 labels=app:b4\n\
                 classifier capacity chunks=262144 bitmaps=16384\n\
                 ipset-file big {set}\n\
                 policy b4 selector=\"app == 'b4'\"\n\
                 rule b4 ingress allow proto=tcp dport={PORT} remote=set:big\n"
            )
        };
        let dir = std::env::temp_dir().join(format!("weir-bench-b4-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = dir.join("set.txt");
        std::fs::write(&set, set_file(10)).unwrap();
        let conf = dir.join("b4.conf");
        std::fs::write(&conf, node_cfg(&set.to_string_lossy())).unwrap();
        let cfg = weir::config::parse_file(&conf);
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = cfg.unwrap();
        assert_eq!(cfg.policies.len(), 1);
    }
}
