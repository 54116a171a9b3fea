//! Running the commands being measured: timed, under an rusage wrapper, or under strace.

use std::path::Path;
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

/// Hidden subcommand: `weir-bench __rusage CMD ARGS...` runs CMD, then prints the rusage of its
/// children (just CMD) on stderr. A separate process, because `getrusage(RUSAGE_CHILDREN)` keeps
/// the maximum over every child ever waited for, so the bench itself cannot tell one from another.
pub const RSS_WRAP: &str = "__rusage";
const RUSAGE_TAG: &str = "weir-bench-rusage";

/// One command of a sequence.
#[derive(Debug, Clone)]
pub struct Step {
    /// Short name for per-command tables (`bpftool prog loadall xdp.o`).
    pub label: String,
    pub argv: Vec<String>,
    /// bpftool 7.1 `batch` ends with `if (errno && errno != ENOENT)` on a stale errno: after
    /// `prog loadall` into an existing directory it reports "reading batch file failed: File
    /// exists" and exits 255 although every command succeeded. Accept exactly that (the kernel
    /// state is verified after every run anyway).
    pub stale_errno_quirk: bool,
}

impl Step {
    pub fn new(label: impl Into<String>, argv: &[&str]) -> Self {
        Self {
            label: label.into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            stale_errno_quirk: false,
        }
    }

    pub fn owned(label: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            label: label.into(),
            argv,
            stale_errno_quirk: false,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]).stdin(Stdio::null());
        c
    }

    fn shell(&self) -> String {
        self.argv.join(" ")
    }

    fn check(&self, out: &Output) -> Result<(), String> {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success()
            || (self.stale_errno_quirk
                && out.status.code() == Some(255)
                && stderr
                    .trim_end()
                    .ends_with("reading batch file failed: File exists"))
        {
            return Ok(());
        }
        Err(format!(
            "`{}` failed ({}):\n{}{}",
            self.shell(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr
        ))
    }
}

/// Runs `step` and returns the wall time from spawn to exit (output captured through pipes).
///
/// # Errors
/// The command could not be spawned or failed.
pub fn run(step: &Step) -> Result<Duration, String> {
    let mut cmd = step.command();
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("spawning `{}`: {e}", step.shell()))?;
    let d = t.elapsed();
    step.check(&out)?;
    Ok(d)
}

/// What the rusage wrapper reports for one command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub max_rss_kib: u64,
    /// User + system CPU time.
    pub cpu: Duration,
}

/// Runs `step` under the rusage wrapper (`self_exe __rusage ...`).
///
/// # Errors
/// The command failed, or the wrapper's report is missing.
pub fn run_rusage(self_exe: &Path, step: &Step) -> Result<Usage, String> {
    let out = Command::new(self_exe)
        .arg(RSS_WRAP)
        .args(&step.argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawning the rusage wrapper for `{}`: {e}", step.shell()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RUSAGE_TAG))
        .ok_or_else(|| format!("no rusage report for `{}`: {stderr}", step.shell()))?;
    // The wrapper's own report line is not part of the command's stderr.
    let own: String = stderr
        .lines()
        .filter(|l| !l.starts_with(RUSAGE_TAG))
        .map(|l| format!("{l}\n"))
        .collect();
    let cleaned = Output {
        status: out.status,
        stdout: out.stdout.clone(),
        stderr: own.into_bytes(),
    };
    step.check(&cleaned)?;
    let nums: Vec<u64> = report
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [rss, utime_us, stime_us] = nums[..] else {
        return Err(format!("malformed rusage report '{report}'"));
    };
    Ok(Usage {
        max_rss_kib: rss,
        cpu: Duration::from_micros(utime_us + stime_us),
    })
}

/// Runs `step` under `strace -f -T`, writing the trace to `out`.
///
/// # Errors
/// strace or the command failed.
pub fn run_strace(step: &Step, out: &Path) -> Result<(), String> {
    let mut argv = vec![
        "strace".to_owned(),
        "-f".into(),
        "-T".into(),
        "-qq".into(),
        "-o".into(),
        out.to_string_lossy().into_owned(),
        "--".into(),
    ];
    argv.extend(step.argv.iter().cloned());
    let traced = Step {
        label: step.label.clone(),
        argv,
        stale_errno_quirk: step.stale_errno_quirk,
    };
    run(&traced).map(|_| ())
}

/// Runs a command for its output (tool versions, git): not measured.
///
/// # Errors
/// The command could not be run or failed.
pub fn output_of(argv: &[&str]) -> Result<String, String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{}`: {e}", argv.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The wrapper's main: runs `args` with inherited stdio and exits with its status.
pub fn rss_wrap_main(args: &[String]) -> ExitCode {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{RSS_WRAP}: no command");
        return ExitCode::from(2);
    };
    let status = match Command::new(cmd).args(rest).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{RSS_WRAP}: spawning {cmd}: {e}");
            return ExitCode::from(127);
        }
    };
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(ru) => {
            let us =
                |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            // ru_maxrss is in KiB on Linux.
            eprintln!(
                "{RUSAGE_TAG} {} {} {}",
                ru.max_rss(),
                us(ru.user_time()),
                us(ru.system_time())
            );
        }
        Err(e) => eprintln!("{RSS_WRAP}: getrusage: {e}"),
    }
    ExitCode::from(status.code().map_or(1, |c| c as u8))
}

/// User and system CPU time of `who`, in ns. This kernel has no IRQ time accounting, so the
/// softirq work a task runs (loopback and veth deliver inline, when bottom halves are
/// re-enabled) is in its system time.
///
/// # Errors
/// getrusage failed.
pub fn rusage_ns(who: nix::sys::resource::UsageWho) -> Result<u64, String> {
    let u = nix::sys::resource::getrusage(who).map_err(|e| format!("getrusage: {e}"))?;
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1000;
    Ok(ns(u.user_time()) + ns(u.system_time()))
}
