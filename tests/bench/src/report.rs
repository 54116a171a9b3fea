//! Writing results into BENCHMARKS.md: one section per benchmark, kept in suite order, and the
//! helpers every section uses (verdicts, ranges, shapes over N); then B5's results and section.

use std::fmt::Write as _;
use std::path::Path;

use crate::b5::{Options, Variant, VARIANTS};
use crate::env::{BinaryInfo, Facts};
use crate::proc::Usage;
use crate::stats::Summary;
use crate::syscalls::Profile;

/// The heading of B5's section.
pub const HEADING: &str = "## B5: loader cold load";

const FILE_HEADER: &str = "\
# weir benchmarks

Each section is written by the harness in `tests/bench/` (`cargo run --release -p weir-bench --
<id>`, as root), which runs weir and its competitors in the same process run, interleaved
(A B A B …, at least 7 rounds), in namespaces it creates and removes, and installs what it
needs. A **ratio** is the competitor's time divided by weir's, computed per round (the runs of a
round are back to back) and reported as the median with its min–max over the rounds: above 1
means weir is faster. Absolute times are for orientation only; the machines are shared and
noisy, and nothing here is asserted.
";

/// Per command of a variant: label, wall times (ms), peak RSS (KiB).
#[derive(Debug, Default, Clone)]
struct StepData {
    label: String,
    wall_ms: Vec<f64>,
    max_rss_kib: u64,
}

#[derive(Debug, Default, Clone)]
struct VariantData {
    /// Processes the load sequence starts.
    processes: usize,
    wall_ms: Vec<f64>,
    steps: Vec<StepData>,
    /// CPU (user + system) per run, summed over its commands.
    cpu_ms: Vec<f64>,
    max_rss_kib: u64,
    profile: Option<Profile>,
}

impl VariantData {
    fn step(&mut self, i: usize, label: &str) -> &mut StepData {
        if self.steps.len() <= i {
            self.steps.resize(i + 1, StepData::default());
        }
        let s = &mut self.steps[i];
        if s.label.is_empty() {
            s.label = label.to_owned();
        }
        s
    }
}

/// Everything B5 measured.
pub struct Results {
    command: String,
    /// What is loaded (objects, programs, maps).
    what: String,
    rounds: usize,
    rss_rounds: usize,
    facts: Facts,
    binary: BinaryInfo,
    data: Vec<VariantData>,
    floors: Vec<(String, Vec<f64>)>,
    /// Per map: name, type, max_entries, flags, ms to create it alone.
    map_costs: Vec<(String, u32, u32, u32, f64)>,
    /// The previous run's headline, from the section this one replaces.
    pub previous: Option<String>,
}

fn idx(v: Variant) -> usize {
    VARIANTS
        .iter()
        .position(|&x| x == v)
        .expect("a known variant")
}

impl Results {
    pub fn new(opts: &Options, facts: Facts, binary: BinaryInfo, what: String) -> Self {
        Self {
            command: opts.command(),
            what,
            rounds: opts.rounds,
            rss_rounds: opts.rss_rounds,
            facts,
            binary,
            data: vec![VariantData::default(); VARIANTS.len()],
            floors: Vec::new(),
            map_costs: Vec::new(),
            previous: None,
        }
    }

    pub fn add_time(&mut self, v: Variant, total_ms: f64, labels: &[String], per_ms: Vec<f64>) {
        let d = &mut self.data[idx(v)];
        d.processes = labels.len();
        d.wall_ms.push(total_ms);
        for (i, (l, t)) in labels.iter().zip(per_ms).enumerate() {
            d.step(i, l).wall_ms.push(t);
        }
    }

    pub fn add_usage(&mut self, v: Variant, labels: &[String], u: &[Usage]) {
        let d = &mut self.data[idx(v)];
        d.cpu_ms
            .push(u.iter().map(|x| x.cpu.as_secs_f64() * 1e3).sum());
        for (i, (l, x)) in labels.iter().zip(u).enumerate() {
            let s = d.step(i, l);
            s.max_rss_kib = s.max_rss_kib.max(x.max_rss_kib);
            d.max_rss_kib = d.max_rss_kib.max(x.max_rss_kib);
        }
    }

    pub fn add_floor(&mut self, label: &str, ms: f64) {
        match self.floors.iter_mut().find(|(l, _)| l == label) {
            Some((_, v)) => v.push(ms),
            None => self.floors.push((label.to_owned(), vec![ms])),
        }
    }

    pub fn add_map_cost(&mut self, m: &weir::sys::bpf::MapInfo, ms: f64) {
        self.map_costs
            .push((m.name.clone(), m.map_type, m.max_entries, m.flags, ms));
    }

    /// The map costs, most expensive first.
    fn map_costs_sorted(&self) -> Vec<&(String, u32, u32, u32, f64)> {
        let mut v: Vec<_> = self.map_costs.iter().collect();
        v.sort_by(|a, b| b.4.total_cmp(&a.4));
        v
    }

    pub fn add_profile(&mut self, v: Variant, p: Profile) {
        self.data[idx(v)].profile = Some(p);
    }

    fn wall(&self, v: Variant) -> Summary {
        Summary::of(&self.data[idx(v)].wall_ms).expect("timed rounds ran")
    }

    /// Per-round `v ÷ weir load`.
    fn ratio(&self, v: Variant) -> Summary {
        let w = &self.data[idx(Variant::Weir)].wall_ms;
        let x = &self.data[idx(v)].wall_ms;
        let r: Vec<f64> = x.iter().zip(w).map(|(a, b)| a / b).collect();
        Summary::of(&r).expect("timed rounds ran")
    }

    /// Start-up time of the processes `v` starts, from the floors of their tools.
    fn spawn_estimate(&self, v: Variant) -> f64 {
        self.data[idx(v)]
            .steps
            .iter()
            .map(|s| {
                let tool = s.label.split(' ').next().unwrap_or("");
                self.floors
                    .iter()
                    .find(|(l, _)| l.split(' ').next() == Some(tool))
                    .map_or(f64::NAN, |(l, _)| self.floor(l))
            })
            .sum()
    }

    fn floor(&self, label: &str) -> f64 {
        self.floors
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, v)| Summary::of(v))
            .map_or(f64::NAN, |s| s.median)
    }
}

fn kib(k: u64) -> String {
    format!("{k} KiB ({:.1} MiB)", k as f64 / 1024.0)
}

/// The B5 section, from its heading to the end.
pub fn section(r: &Results) -> String {
    let mut s = String::new();
    let f = &r.facts;
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Cold load + attach of the whole dataplane ({}; XDP native and TC ingress/egress on a \
         veth, the socket hooks on a cgroup), each run in a fresh sandbox (two netns, veth \
         pair, cgroup), against the same object bytes loaded and attached with bpftool + ip + \
         tc. After every run the kernel state is read back (the program at each hook, its name, \
         and one map id per map name across all attached programs, i.e. shared maps really \
         shared) and must be complete; then it is torn down and checked empty. Only the load \
         sequence is timed (wall clock around the subprocesses, output captured).\n",
        r.what
    );
    let _ = writeln!(
        s,
        "- Date: {}; kernel {}; commit {}; {} CPUs",
        f.date, f.kernel, f.commit, f.cpus
    );
    let _ = writeln!(s, "- Tools: {}", f.tools.join("; "));
    let _ = writeln!(s, "- Command (as root): `{}`", r.command);
    if let Some(p) = &r.previous {
        let _ = writeln!(s, "{p}");
    }
    let _ = writeln!(
        s,
        "- {} timed rounds, the variants interleaved and the first one rotating every round, \
         after {} untimed round(s) that measure peak RSS and CPU time of every command \
         (getrusage of a wrapper's only child) and warm the page cache. A 100 ms pause \
         precedes every run.\n",
        r.rounds, r.rss_rounds
    );
    let _ = writeln!(
        s,
        "| variant | what runs | processes | wall ms, median (min–max) | ÷ `weir load`, median (min–max) | CPU ms (user+sys), median | peak RSS (largest process) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for v in VARIANTS {
        let d = &r.data[idx(v)];
        let ratio = if v == Variant::Weir {
            "1".to_owned()
        } else {
            format!("{}×", r.ratio(v).show(2))
        };
        let cpu = Summary::of(&d.cpu_ms).map_or("–".into(), |c| format!("{:.1}", c.median));
        let name = if v == Variant::Weir {
            format!("**{}**", v.name())
        } else {
            v.name().to_owned()
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {ratio} | {cpu} | {} |",
            v.how(),
            d.processes,
            r.wall(v).show(1),
            kib(d.max_rss_kib)
        );
    }
    let weir_rss = r.data[idx(Variant::Weir)].max_rss_kib;
    let speedup = r.ratio(Variant::Script);
    let b = &r.binary;
    let _ = writeln!(s, "\nIssue goals:\n");
    let _ = writeln!(
        s,
        "- ≥ 2× faster wall time than bpftool + ip + tc: `bpftool + ip + tc` ÷ `weir load` = \
         {:.2}× (median; {:.2}–{:.2}) → {}",
        speedup.median,
        speedup.min,
        speedup.max,
        verdict(speedup.median >= 2.0)
    );
    let _ = writeln!(
        s,
        "- ≤ 2 MiB stripped static binary: {} bytes ({:.2} MiB){}, {} → {}",
        b.stripped_size,
        b.stripped_size as f64 / (1024.0 * 1024.0),
        if b.was_stripped {
            " as built (the release profile strips)"
        } else {
            " after `strip --strip-all`"
        },
        if b.is_static {
            "static (no ELF interpreter)"
        } else {
            "NOT static (has an ELF interpreter)"
        },
        verdict(b.stripped_size <= 2 * 1024 * 1024 && b.is_static)
    );
    let _ = writeln!(
        s,
        "- ≤ 10 MiB peak RSS of `weir load`: {} → {}",
        kib(weir_rss),
        verdict(weir_rss <= 10 * 1024)
    );

    let _ = writeln!(
        s,
        "\nPer command of `bpftool + ip + tc` (maps are shared exactly as weir shares them, \
         and no object is loaded twice):\n"
    );
    let _ = writeln!(s, "| command | wall ms, median (min–max) | peak RSS |");
    let _ = writeln!(s, "|---|---|---|");
    for st in &r.data[idx(Variant::Script)].steps {
        let w = Summary::of(&st.wall_ms).map_or("–".into(), |x| x.show(2));
        let _ = writeln!(s, "| `{}` | {w} | {} |", st.label, kib(st.max_rss_kib));
    }
    let _ = writeln!(
        s,
        "\nStarting a process that does nothing else (median ms, same rounds):\n"
    );
    let _ = writeln!(
        s,
        "| {} |",
        r.floors
            .iter()
            .map(|(l, _)| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|{}", "---|".repeat(r.floors.len()));
    let _ = writeln!(
        s,
        "| {} |",
        r.floors
            .iter()
            .map(|(l, _)| format!("{:.2}", r.floor(l)))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    let _ = writeln!(
        s,
        "\nSyscalls that took over 1 ms in the kernel (`strace -f -T`, one extra untimed run \
         each; strace slows user space, so only these in-kernel waits are shown; waits for \
         other threads are left out):\n"
    );
    for v in [Variant::Weir, Variant::WeirLegacy, Variant::Script] {
        if let Some(p) = &r.data[idx(v)].profile {
            let _ = writeln!(
                s,
                "- `{}`: {} calls, {:.1} ms in the slow ones: {}",
                v.name(),
                p.calls(),
                p.slow_total() * 1e3,
                p.show_slow()
            );
        }
    }
    if !r.map_costs.is_empty() {
        let total: f64 = r.map_costs.iter().map(|m| m.4).sum();
        let _ = writeln!(
            s,
            "\n`BPF_MAP_CREATE` of each map on its own (same type, sizes and flags, no BTF; \
             median of 5, after the rounds): {total:.1} ms for all {}; both sides create \
             every one of them.\n",
            r.map_costs.len()
        );
        let _ = writeln!(s, "| map | type | max_entries | ms |");
        let _ = writeln!(s, "|---|---|---|---|");
        for (name, ty, max, flags, ms) in r.map_costs_sorted() {
            let prealloc = if flags & 1 != 0 { ", no prealloc" } else { "" };
            let _ = writeln!(
                s,
                "| `{name}` | {}{prealloc} | {max} | {ms:.2} |",
                map_type_name(*ty)
            );
        }
    }
    let _ = writeln!(s, "\n{}", meaning(r));
    s
}

/// One bullet about the previous B5 run in `text` (BENCHMARKS.md as it was), so that a new run
/// shows what changed: its date, commit, what it loaded, and the two headline medians.
pub fn previous_run(text: &str) -> Option<String> {
    let start = text.find(&format!("{HEADING}\n"))?;
    let body = &text[start + HEADING.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let what = body.split("whole dataplane (").nth(1)?.split(';').next()?;
    let date_line = body.lines().find(|l| l.starts_with("- Date: "))?;
    let date = date_line["- Date: ".len()..].split(';').next()?.trim();
    let commit = date_line.split("commit ").nth(1)?.split(';').next()?.trim();
    let wall = |row: &str| -> Option<String> {
        let line = body.lines().find(|l| l.starts_with(row))?;
        line.split(" | ").nth(3).map(str::to_owned)
    };
    Some(format!(
        "- Previous run ({date}, commit {commit}; it loaded {what}): `weir load` {} ms, \
         `bpftool + ip + tc` {} ms",
        wall("| **weir load** |")?,
        wall("| bpftool + ip + tc |")?
    ))
}

/// Kernel map type names (`enum bpf_map_type`) of the types weir uses.
fn map_type_name(t: u32) -> String {
    match t {
        1 => "hash".into(),
        2 => "array".into(),
        5 => "percpu_hash".into(),
        6 => "percpu_array".into(),
        9 => "lru_hash".into(),
        10 => "lru_percpu_hash".into(),
        11 => "lpm_trie".into(),
        27 => "ringbuf".into(),
        other => format!("type {other}"),
    }
}

/// The paragraph saying where the time goes, from the numbers of this run.
fn meaning(r: &Results) -> String {
    let med = |v: Variant| r.wall(v).median;
    let cpu = |v: Variant| Summary::of(&r.data[idx(v)].cpu_ms).map_or(f64::NAN, |c| c.median);
    let slow = |v: Variant| {
        r.data[idx(v)]
            .profile
            .as_ref()
            .map_or(f64::NAN, |p| p.slow_total() * 1e3)
    };
    let (fw, fb, fi, ft) = (
        r.floor("weir --version"),
        r.floor("bpftool version"),
        r.floor("ip -V"),
        r.floor("tc -V"),
    );
    let ip_xdp = r.data[idx(Variant::Script)]
        .steps
        .iter()
        .find(|s| s.label.starts_with("ip link set xdpdrv"))
        .and_then(|s| Summary::of(&s.wall_ms))
        .map_or(f64::NAN, |s| s.median);
    let probe = r.data[idx(Variant::Weir)]
        .profile
        .as_ref()
        .is_some_and(|p| p.has_private_netns());
    let weir_slow = r.data[idx(Variant::Weir)]
        .profile
        .as_ref()
        .map(|p| p.slow())
        .unwrap_or_default();
    let top = weir_slow.first().map_or(String::new(), |(k, g)| {
        format!(
            ", the largest `{k}` ({}× {:.1} ms)",
            g.slow_calls,
            g.slow_secs * 1e3
        )
    });
    let mut t = format!(
        "**What the numbers mean.** `weir load` is one static process ({fw:.2} ms to start) \
         using {:.1} ms of CPU; most of its {:.1} ms is spent in the kernel (the slow calls \
         above add up to {:.1} ms under strace{top}).",
        cpu(Variant::Weir),
        med(Variant::Weir),
        slow(Variant::Weir),
    );
    if let Some((name, ty, max, _, ms)) = r.map_costs_sorted().first() {
        let total: f64 = r.map_costs.iter().map(|m| m.4).sum();
        t += &format!(
            " Creating the maps costs {total:.1} ms on its own, {ms:.1} ms of it `{name}` \
             ({}, {max} entries)",
            map_type_name(*ty)
        );
        if *ty == 6 {
            t += ": a per-CPU array allocates every element's per-CPU storage separately \
                  when the map is created";
        }
        t += "; every loader pays this, the competitors too.";
    }
    t += &format!(
        " Each TCX link create waits for an RCU grace period (`synchronize_rcu` when the \
         kernel swaps the hook's program array), and native XDP on a veth makes the driver \
         reconfigure, which the competitors pay too (`ip link set xdpdrv`: {ip_xdp:.1} ms)."
    );
    if probe {
        t += " The calls marked *private netns* are weir's feature probe for XDP links: a \
              thread moves into a fresh network namespace and attaches and detaches a program \
              on its `lo`, on every run, whatever the config asks for.";
    }
    t += &format!(
        " `weir load, attach=legacy` ({:.1} ms) attaches XDP and TC by netlink as the \
         competitors do. `bpftool + ip + tc` uses {:.1} ms of CPU in {} dynamically linked \
         processes that take {fb:.2} / {fi:.2} / {ft:.2} ms (`bpftool` / `ip` / `tc`) just to \
         start, ≈ {:.1} ms of its {:.1} ms; `bpftool batch + tc -batch` does the same work in {} \
         processes in {:.1} ms.",
        med(Variant::WeirLegacy),
        cpu(Variant::Script),
        r.data[idx(Variant::Script)].processes,
        r.spawn_estimate(Variant::Script),
        med(Variant::Script),
        r.data[idx(Variant::Batch)].processes,
        med(Variant::Batch),
    );
    t
}

// ---------------------------------------------------------------------------------------------
// Shared by every benchmark

/// `**met**` or `**missed**`.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

/// Median of a sample (NaN when empty).
pub fn med(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median)
}

/// `median (min–max)` of a sample, `–` when empty.
pub fn show(v: &[f64], prec: usize) -> String {
    Summary::of(v).map_or("–".into(), |s| s.show(prec))
}

/// A ratio: `median (min–max)×`, with fewer decimals the larger it is.
pub fn show_x(v: &[f64]) -> String {
    Summary::of(v).map_or("–".into(), |s| {
        let p = if s.median >= 100.0 {
            0
        } else if s.median >= 10.0 {
            1
        } else {
            2
        };
        format!("{}×", s.show(p))
    })
}

/// `10k` for 10000, `1500` for 1500.
pub fn fmt_n(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// How a cost grows over N: `flat` when all of it stays within `noise` (or 15 %) of the
/// smallest, else whichever of `a + b·log10 N` and `a + b·N` fits the medians better (least
/// squares). `unit` names the cost's unit (`ns`), `per` what N counts (`entries`).
pub fn shape(points: &[(usize, f64)], noise: f64, unit: &str, per: &str) -> String {
    if points.len() < 2 {
        return "–".into();
    }
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let fit = |x: &dyn Fn(usize) -> f64| -> (f64, f64) {
        let n = points.len() as f64;
        let mx = points.iter().map(|p| x(p.0)).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (x(p.0) - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (x(p.0) - mx) * (p.1 - my)).sum();
        let b = sxy / sxx;
        let sse = points
            .iter()
            .map(|p| (p.1 - (my + b * (x(p.0) - mx))).powi(2))
            .sum();
        (b, sse)
    };
    let (b_log, sse_log) = fit(&|n| (n as f64).log10());
    let (b_lin, sse_lin) = fit(&|n| n as f64);
    if hi - lo <= noise.max(0.15 * lo.abs()) {
        return format!("flat ({b_log:+.1} {unit} per ×10)");
    }
    // A cost that falls (or wanders) as N grows is not growth, whatever fits it best.
    if b_log <= 0.0 && b_lin <= 0.0 {
        return format!("flat, no growth ({b_log:+.1} {unit} per ×10)");
    }
    if points.len() > 2 && sse_lin < sse_log {
        format!("linear ({:+.1} {unit} per 1000 {per})", b_lin * 1000.0)
    } else {
        format!("logarithmic ({b_log:+.1} {unit} per ×10)")
    }
}

/// The benchmarks in the order their sections appear.
const SUITE: [&str; 6] = ["B1", "B2", "B3", "B4", "B5", "B6"];

/// The suite position of a `## Bk: …` heading (unknown ids go last).
fn rank(heading: &str) -> usize {
    let id = heading
        .trim_start_matches('#')
        .trim_start()
        .split([':', ' '])
        .next()
        .unwrap_or("");
    SUITE.iter().position(|s| *s == id).unwrap_or(SUITE.len())
}

/// Writes `section` (which starts with `heading`) into `path`: replaces the section with that
/// heading (up to the next `## ` heading), or inserts it before the first section that comes
/// later in the suite (B1, B2, … B6), or appends it; creates the file with its header when
/// missing. Other sections stay as they are.
///
/// # Errors
/// The file cannot be read or written.
pub fn write_section(path: &Path, heading: &str, section: &str) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FILE_HEADER.to_owned(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let new = splice(&old, heading, section);
    std::fs::write(path, new).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn splice(old: &str, heading: &str, section: &str) -> String {
    let section = section.trim_end().to_owned() + "\n";
    let at_line = |i: usize| i == 0 || old[..i].ends_with('\n');
    // Only a whole heading line counts: `## B1: x` must not match `## B1: xy`.
    let own = old.match_indices(heading).find(|(i, _)| {
        at_line(*i) && {
            let rest = &old[i + heading.len()..];
            rest.is_empty() || rest.starts_with('\n')
        }
    });
    if let Some((i, _)) = own {
        let after = &old[i + heading.len()..];
        let end = after
            .find("\n## ")
            .map_or(old.len(), |j| i + heading.len() + j + 1);
        let tail = &old[end..];
        let sep = if tail.is_empty() { "" } else { "\n" };
        return format!("{}{section}{sep}{tail}", &old[..i]);
    }
    let me = rank(heading);
    let later = old.match_indices("## ").find(|(i, _)| {
        at_line(*i) && {
            let line = old[*i..].lines().next().unwrap_or("");
            rank(line) > me && rank(line) < SUITE.len()
        }
    });
    match later {
        Some((i, _)) => format!("{}{section}\n{}", &old[..i], &old[i..]),
        None => format!("{}\n\n{section}", old.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::{shape, splice};

    const B1: &str = "## B1: XDP prefilter";
    const B3: &str = "## B3: connect-time load balancing";
    const B5: &str = "## B5: loader cold load";

    #[test]
    fn replaces_only_its_own_section() {
        let old = "# T\n\n## B1: x\none\n\n## B5: loader cold load\nold\n\n## B6: y\nsix\n";
        let new = splice(old, B5, "## B5: loader cold load\nnew\n");
        assert_eq!(
            new,
            "# T\n\n## B1: x\none\n\n## B5: loader cold load\nnew\n\n## B6: y\nsix\n"
        );
        let last = splice(
            "# T\n## B5: loader cold load\nold\n",
            B5,
            "## B5: loader cold load\nnew\n",
        );
        assert_eq!(last, "# T\n## B5: loader cold load\nnew\n");
    }

    #[test]
    fn inserts_in_suite_order() {
        // B1 before a later section, then replaced in place.
        let old = "# T\n\nintro\n\n## B5: loader\nfive\n";
        let new = splice(old, B1, "## B1: XDP prefilter\none\n");
        assert_eq!(
            new,
            "# T\n\nintro\n\n## B1: XDP prefilter\none\n\n## B5: loader\nfive\n"
        );
        let again = splice(&new, B1, "## B1: XDP prefilter\nuno\n");
        assert_eq!(
            again,
            "# T\n\nintro\n\n## B1: XDP prefilter\nuno\n\n## B5: loader\nfive\n"
        );
        // B3 between B1 and B5, whatever their headings say after the id.
        let three = splice(&again, B3, "## B3: connect-time load balancing\nthree");
        assert_eq!(
            three,
            "# T\n\nintro\n\n## B1: XDP prefilter\nuno\n\n## B3: connect-time load balancing\nthree\n\n## B5: loader\nfive\n"
        );
        // Appended when nothing later is there; a missing B1 does not matter.
        assert_eq!(
            splice("# T\n", B1, "## B1: XDP prefilter\nx"),
            "# T\n\n## B1: XDP prefilter\nx\n"
        );
        assert_eq!(
            splice("# T\n\n## B1: a\none\n", B5, "## B5: loader cold load\nnew"),
            "# T\n\n## B1: a\none\n\n## B5: loader cold load\nnew\n"
        );
        // A heading that only starts like ours is another section.
        let similar = "# T\n\n## B1: XDP prefilter, old\nold\n";
        assert_eq!(
            splice(similar, B1, "## B1: XDP prefilter\nnew"),
            "# T\n\n## B1: XDP prefilter, old\nold\n\n## B1: XDP prefilter\nnew\n"
        );
    }

    #[test]
    fn finds_the_previous_b5_headline() {
        let text = "# T\n\n## B5: loader cold load\n\nCold load + attach of the whole dataplane \
                    (3 objects, 5 programs (all attached), 6 maps; XDP native …).\n\n\
                    - Date: 2026-11-24 16:45 UTC; kernel 6.18; commit af4b48d (with uncommitted \
                    changes); 2 CPUs\n\n| variant | what | n | wall |\n|---|---|---|---|\n\
                    | **weir load** | `weir` | 1 | 48.4 (44.2–64.2) | 1 |\n\
                    | bpftool + ip + tc | one | 9 | 27.8 (22.9–52.8) | 0.53× |\n\n## B6: x\n";
        assert_eq!(
            super::previous_run(text).unwrap(),
            "- Previous run (2026-11-24 16:45 UTC, commit af4b48d (with uncommitted changes); \
             it loaded 3 objects, 5 programs (all attached), 6 maps): `weir load` 48.4 \
             (44.2–64.2) ms, `bpftool + ip + tc` 27.8 (22.9–52.8) ms"
        );
        assert!(super::previous_run("# T\n").is_none());
    }

    #[test]
    fn shapes() {
        let flat = [(10, 100.0), (1000, 105.0), (100_000, 98.0)];
        assert!(shape(&flat, 1.0, "ns", "entries").starts_with("flat"));
        let lin = [
            (10, 1.0),
            (1000, 100.0),
            (10_000, 1000.0),
            (100_000, 10_000.0),
        ];
        assert!(shape(&lin, 1.0, "µs", "services").starts_with("linear"));
        let log = [
            (10, 10.0),
            (100, 20.0),
            (1000, 30.0),
            (10_000, 40.0),
            (100_000, 50.0),
        ];
        assert!(shape(&log, 1.0, "ns", "entries").starts_with("logarithmic"));
    }
}
