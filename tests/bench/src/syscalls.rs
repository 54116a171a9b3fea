//! Where the time goes: time spent inside syscalls, from `strace -f -T` output, grouped by
//! syscall (and by command and attach type for `bpf(2)`). strace slows user space down and adds
//! a few µs to every call, so what is reported are the calls that took over 1 ms in the kernel:
//! they are sleeping there (an RCU grace period, a driver reconfiguring), not strace overhead.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A call slower than this is "slow".
const SLOW_SECS: f64 = 0.001;

/// Calls that wait for another thread or process, whose own calls are counted already.
const WAITS: &[&str] = &[
    "futex",
    "wait4",
    "waitid",
    "poll",
    "ppoll",
    "epoll_wait",
    "select",
];

/// Per group: all calls, and the slow ones with their total seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Group {
    pub calls: u32,
    pub slow_calls: u32,
    pub slow_secs: f64,
}

/// Syscall groups of one or more traces.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub groups: BTreeMap<String, Group>,
}

impl Profile {
    /// Adds the calls of one strace output.
    pub fn add_trace(&mut self, text: &str) {
        // With -f, a call another thread interrupts is split into "<unfinished ...>" and
        // "<... name resumed>"; the duration is on the second line.
        let mut pending: HashMap<&str, String> = HashMap::new();
        // Threads that moved into a fresh network namespace (weir's XDP-link feature probe).
        let mut private: HashSet<&str> = HashSet::new();
        for line in text.lines() {
            let (pid, rest) = match line.split_once(' ') {
                Some((p, r)) if p.bytes().all(|b| b.is_ascii_digit()) => (p, r.trim_start()),
                _ => ("", line),
            };
            if rest.starts_with("+++") || rest.starts_with("---") {
                continue;
            }
            if rest.starts_with("unshare(CLONE_NEWNET") {
                private.insert(pid);
            }
            let tag = |g: String| {
                if private.contains(pid) {
                    g + " (private netns)"
                } else {
                    g
                }
            };
            if rest.ends_with("<unfinished ...>") {
                pending.insert(pid, tag(group_of(rest)));
                continue;
            }
            let Some(secs) = duration(rest) else { continue };
            let group = if let Some(r) = rest.strip_prefix("<... ") {
                pending
                    .remove(pid)
                    .unwrap_or_else(|| tag(r.split(' ').next().unwrap_or("?").to_owned()))
            } else {
                tag(group_of(rest))
            };
            if WAITS.iter().any(|w| group.split(' ').next() == Some(w)) {
                continue;
            }
            let e = self.groups.entry(group).or_default();
            e.calls += 1;
            if secs >= SLOW_SECS {
                e.slow_calls += 1;
                e.slow_secs += secs;
            }
        }
    }

    /// Number of calls (waits excluded).
    pub fn calls(&self) -> u32 {
        self.groups.values().map(|g| g.calls).sum()
    }

    /// Seconds in slow calls.
    pub fn slow_total(&self) -> f64 {
        self.groups.values().map(|g| g.slow_secs).sum()
    }

    /// Whether any call ran on a thread in a private network namespace.
    pub fn has_private_netns(&self) -> bool {
        self.groups.keys().any(|k| k.ends_with("(private netns)"))
    }

    /// Groups with slow calls, slowest first.
    pub fn slow(&self) -> Vec<(String, Group)> {
        let mut v: Vec<_> = self
            .groups
            .iter()
            .filter(|(_, g)| g.slow_calls > 0)
            .map(|(k, g)| (k.clone(), *g))
            .collect();
        v.sort_by(|a, b| b.1.slow_secs.total_cmp(&a.1.slow_secs));
        v
    }

    /// `name N× T ms, ...` for the slow groups.
    pub fn show_slow(&self) -> String {
        let v = self.slow();
        if v.is_empty() {
            return "none".into();
        }
        v.iter()
            .map(|(k, g)| format!("`{k}` {}× {:.1} ms", g.slow_calls, g.slow_secs * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The trailing `<0.001234>` of a finished call.
fn duration(rest: &str) -> Option<f64> {
    let t = rest.trim_end().strip_suffix('>')?;
    let start = t.rfind('<')?;
    t[start + 1..].parse().ok()
}

fn group_of(call: &str) -> String {
    let name = call.split('(').next().unwrap_or("?");
    match name {
        "bpf" => {
            let cmd = call["bpf(".len().min(call.len())..]
                .split([',', ')'])
                .next()
                .unwrap_or("?");
            if cmd == "BPF_LINK_CREATE" {
                format!("bpf {cmd} {}", attach_type(call))
            } else {
                format!("bpf {cmd}")
            }
        }
        "unshare" | "setns" => call.split(')').next().unwrap_or(name).to_owned() + ")",
        _ => name.to_owned(),
    }
}

fn attach_type(call: &str) -> String {
    let Some(i) = call.find("attach_type=") else {
        return "?".into();
    };
    let v = call[i + "attach_type=".len()..]
        .split([',', '}', ' '])
        .next()
        .unwrap_or("?");
    // Older strace prints the TCX attach types as numbers.
    match v {
        "0x2e" => "BPF_TCX_INGRESS".into(),
        "0x2f" => "BPF_TCX_EGRESS".into(),
        _ => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::Profile;

    #[test]
    fn groups_bpf_commands_resumed_calls_and_probe_threads() {
        let trace = "\
10 bpf(BPF_PROG_LOAD, {prog_type=BPF_PROG_TYPE_XDP}, 148) = 5 <0.000200>
10 bpf(BPF_LINK_CREATE, {link_create={prog_fd=8, target_fd=3, attach_type=0x2e /* BPF_??? */, flags=0}}, 32) = 13 <0.018111>
11 unshare(CLONE_NEWNET) = 0 <0.000576>
11 close(14 <unfinished ...>
10 futex(0x1, FUTEX_WAIT, 2, NULL) = 0 <0.040000>
11 <... close resumed>) = 0 <0.015873>
11 +++ exited with 0 +++
";
        let mut p = Profile::default();
        p.add_trace(trace);
        let g = p.groups["bpf BPF_LINK_CREATE BPF_TCX_INGRESS"];
        assert_eq!((g.calls, g.slow_calls, g.slow_secs), (1, 1, 0.018111));
        let g = p.groups["bpf BPF_PROG_LOAD"];
        assert_eq!((g.calls, g.slow_calls), (1, 0));
        assert_eq!(p.groups["close (private netns)"].slow_secs, 0.015873);
        assert!(!p.groups.contains_key("futex"));
        assert!(p.has_private_netns());
        assert_eq!(p.calls(), 4);
        assert_eq!(p.slow()[0].0, "bpf BPF_LINK_CREATE BPF_TCX_INGRESS");
    }
}
