//! B5's results and their section of BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;

use crate::b5::{Options, Variant, VARIANTS};
use crate::env::{BinaryInfo, Facts};
use crate::proc::Usage;
use crate::stats::Summary;
use crate::syscalls::Profile;

const HEADING: &str = "## B5: loader cold load";

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

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
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
    let _ = writeln!(s, "\n{}", meaning(r));
    s
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
    let mut t = format!(
        "**What the numbers mean.** `weir load` is one static process ({fw:.2} ms to start) \
         using {:.1} ms of CPU; the rest of its {:.1} ms is spent waiting in the kernel (the \
         slow calls above add up to {:.1} ms under strace). Each TCX link create waits for an \
         RCU grace period (`synchronize_rcu` when the kernel swaps the hook's program array), \
         and native XDP on a veth makes the driver reconfigure, which the competitors pay too \
         (`ip link set xdpdrv`: {ip_xdp:.1} ms).",
        cpu(Variant::Weir),
        med(Variant::Weir),
        slow(Variant::Weir),
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

/// Replaces the B5 section of `path` (up to the next `## ` heading) or appends it, creating the
/// file with its header when missing; other sections stay as they are.
///
/// # Errors
/// The file cannot be read or written.
pub fn write_section(path: &Path, section: &str) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FILE_HEADER.to_owned(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let new = splice(&old, section);
    std::fs::write(path, new).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn splice(old: &str, section: &str) -> String {
    let section = section.trim_end().to_owned() + "\n";
    let start = old
        .match_indices(HEADING)
        .find(|(i, _)| *i == 0 || old[..*i].ends_with('\n'))
        .map(|(i, _)| i);
    match start {
        Some(i) => {
            let after = &old[i + HEADING.len()..];
            let end = after
                .find("\n## ")
                .map_or(old.len(), |j| i + HEADING.len() + j + 1);
            let tail = &old[end..];
            let sep = if tail.is_empty() { "" } else { "\n" };
            format!("{}{section}{sep}{tail}", &old[..i])
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn replaces_only_its_own_section() {
        let old = "# T\n\n## B1: x\none\n\n## B5: loader cold load\nold\n\n## B6: y\nsix\n";
        let new = splice(old, "## B5: loader cold load\nnew\n");
        assert_eq!(
            new,
            "# T\n\n## B1: x\none\n\n## B5: loader cold load\nnew\n\n## B6: y\nsix\n"
        );
        let appended = splice("# T\n\n## B1: x\none\n", "## B5: loader cold load\nnew");
        assert_eq!(
            appended,
            "# T\n\n## B1: x\none\n\n## B5: loader cold load\nnew\n"
        );
        let last = splice(
            "# T\n## B5: loader cold load\nold\n",
            "## B5: loader cold load\nnew\n",
        );
        assert_eq!(last, "# T\n## B5: loader cold load\nnew\n");
    }
}
