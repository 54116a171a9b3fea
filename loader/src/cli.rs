//! The `weir` command line: the only part of weir that prints.
//!
//! Exit codes: 0 success, 1 error, 2 usage error.

use std::path::PathBuf;

use crate::config;
use crate::dataplane::{Dataplane, DEFAULT_PIN_DIR};
use crate::error::Error;
use crate::sys::netns;

/// Default config file of `weir load` without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/weir/weir.conf";

const USAGE: &str = "\
weir: an eBPF network dataplane

Usage: weir [GLOBAL OPTIONS] <COMMAND> [ARGS]

Commands:
  load [--config FILE]   load, verify and attach the dataplane described by FILE
                         (default /etc/weir/weir.conf); running it again is a no-op
  apply FILE             update map contents from FILE without attaching anything
  set add|del NAME CIDR...
                         add networks to (remove them from) set NAME of the policy in force,
                         in place; the next apply or load puts the config's members back
  unload                 detach and remove everything weir attached and pinned
  status                 show attachments, program ids, maps and counters
  events [--json] [--count N]
                         stream the network policy's deny/log/audit events, one per line
  verify                 check the embedded objects against maps-schema and the kernel verifier
  demo                   build a sandbox of namespaces, load weir into it, send traffic, clean up
  help [COMMAND]         show help

Global options:
  --pin-dir DIR          where weir pins its state (default /sys/fs/bpf/weir)
  --netns NAME|PATH      run in a network namespace (a name from /run/netns, or a path)
  -h, --help             show help
  -V, --version          show the version

Logging: set RUST_LOG (error, warn, info, debug, trace), e.g. RUST_LOG=debug weir load.
Exit codes: 0 success, 1 error, 2 usage error.
";

fn command_help(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "load" => "Usage: weir [GLOBAL OPTIONS] load [--config FILE]\n\n\
            Verifies the embedded BPF objects, creates or reuses the pinned maps, loads the programs and\n\
            attaches them where FILE says (interfaces: XDP and TC; cgroups: connect-time hooks).\n\
            Attachments that FILE no longer lists are removed. A program whose code is already attached\n\
            is kept, so a second run changes nothing. If any step fails, the steps of this run are undone.\n\
            FILE defaults to /etc/weir/weir.conf.\n",
        "apply" => "Usage: weir [GLOBAL OPTIONS] apply FILE\n\n\
            Parses FILE and writes the map contents it implies (only the differences), without attaching\n\
            or detaching programs. weir must be loaded already.\n",
        "set" => "Usage: weir [GLOBAL OPTIONS] set add|del NAME CIDR...\n\n\
            Adds the networks (IPv4 or IPv6, a bare address is a /32 or /128) to the `ipset` NAME of\n\
            the network policy in force, or removes them, like `ipset add` / `ipset del`: the tables\n\
            packets read are changed in place where the networks lie, without reading the config.\n\
            Each address sees the old or the new members, never a mix; flows already established\n\
            are not re-evaluated. Adding a member is a no-op; removing a network the set does not\n\
            hold is an error (nothing is changed). The config stays the truth: the next `weir apply`\n\
            or `weir load` puts its members back, as `iptables-restore` does after `ipset add`.\n",
        "unload" => "Usage: weir [GLOBAL OPTIONS] unload\n\n\
            Detaches every program weir attached (links, XDP, TC filters, the clsact qdisc weir created,\n\
            cgroup programs) and removes every pin under the pin dir. Programs of others are left alone.\n",
        "status" => "Usage: weir [GLOBAL OPTIONS] status\n\n\
            Shows what is attached where (pin, link and program ids), the maps with their fill levels,\n\
            and the counters. Interface names are resolved in the current (or --netns) namespace.\n",
        "events" => "Usage: weir [GLOBAL OPTIONS] events [--json] [--count N]\n\n\
            Streams the network policy's events (denied packets, `log` rules, what audit policies\n\
            would deny), one line each, or one JSON object per line with --json, until interrupted\n\
            or until N events were shown. The kernel rate-limits them per CPU; what it drops is\n\
            counted as events-lost in `weir status`.\n",
        "verify" => "Usage: weir [GLOBAL OPTIONS] verify\n\n\
            Checks every embedded object (sections, licence, maps against maps-schema) and loads each\n\
            program into the kernel verifier with temporary maps, attaching nothing.\n",
        "demo" => "Usage: weir demo\n\n\
            Creates two network namespaces joined by a veth pair and a cgroup, loads weir into them,\n\
            sends real traffic (TCP, UDP) from a client process in the cgroup, prints the counters,\n\
            unloads and removes everything it created. Needs root.\n",
        _ => return None,
    })
}

/// Parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    pin_dir: Option<PathBuf>,
    netns: Option<String>,
    command: Option<String>,
    config: Option<PathBuf>,
    json: bool,
    count: Option<u64>,
    positional: Vec<String>,
    help: bool,
    version: bool,
}

/// A usage error: what is wrong with the command line.
#[derive(Debug, PartialEq, Eq)]
struct Usage(String);

fn parse_args(argv: &[String]) -> Result<Args, Usage> {
    let mut a = Args::default();
    let mut it = argv.iter();
    let value = |it: &mut std::slice::Iter<'_, String>, flag: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| Usage(format!("{flag} needs a value")))
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let take = |it: &mut std::slice::Iter<'_, String>| match &inline {
            Some(v) => Ok(v.clone()),
            None => value(it, flag),
        };
        match flag {
            "-h" | "--help" => a.help = true,
            "-V" | "--version" => a.version = true,
            "--pin-dir" => a.pin_dir = Some(PathBuf::from(take(&mut it)?)),
            "--netns" => a.netns = Some(take(&mut it)?),
            "--config" | "-c" => a.config = Some(PathBuf::from(take(&mut it)?)),
            "--json" => a.json = true,
            "--count" => {
                let v = take(&mut it)?;
                a.count = Some(
                    v.parse()
                        .map_err(|_| Usage(format!("--count needs a number, not '{v}'")))?,
                );
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(Usage(format!("unknown option '{f}' (see weir --help)")))
            }
            _ if a.command.is_none() => a.command = Some(arg.clone()),
            _ => a.positional.push(arg.clone()),
        }
    }
    let cmd = a.command.as_deref().unwrap_or("");
    if a.config.is_some() && cmd != "load" {
        return Err(Usage("--config belongs to `weir load`".into()));
    }
    if (a.json || a.count.is_some()) && cmd != "events" {
        return Err(Usage("--json and --count belong to `weir events`".into()));
    }
    let (min, max) = match cmd {
        "apply" => (1, 1),
        "set" => (3, usize::MAX),
        "help" => (0, 1),
        _ => (0, 0),
    };
    if !a.help && a.command.is_some() && (a.positional.len() < min || a.positional.len() > max) {
        return Err(Usage(match cmd {
            "apply" => "apply needs exactly one FILE (weir apply FILE)".into(),
            "set" => "set needs add or del, a set NAME and at least one CIDR \
                      (weir set add|del NAME CIDR...)"
                .into(),
            _ => format!("unexpected argument '{}' for {cmd}", a.positional[max]),
        }));
    }
    if cmd == "set" && !a.help {
        set_args(&a.positional)?;
    }
    Ok(a)
}

/// `set add|del NAME CIDR...`: the operation, the set and the networks.
fn set_args(
    positional: &[String],
) -> Result<(crate::policy::incremental::SetOp, &str, Vec<config::Cidr>), Usage> {
    use crate::policy::incremental::SetOp;
    let op = match positional.first().map(String::as_str) {
        Some("add") => SetOp::Add,
        Some("del") => SetOp::Del,
        other => {
            return Err(Usage(format!(
                "set: '{}' is not add or del (weir set add|del NAME CIDR...)",
                other.unwrap_or_default()
            )))
        }
    };
    let name = positional.get(1).map_or("", String::as_str);
    let mut cidrs = Vec::new();
    for (i, text) in positional.iter().enumerate().skip(2) {
        let cidr = config::Cidr::parse(text).map_err(|e| {
            Usage(format!(
                "set: argument {} '{text}' is not a network: {e}",
                i + 1
            ))
        })?;
        cidrs.push(cidr);
    }
    Ok((op, name, cidrs))
}

/// Runs the CLI with the process arguments and returns the exit code.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    run(&argv)
}

/// Runs the CLI with `argv` (without the program name) and returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    if argv.first().map(String::as_str) == Some("__demo-client") {
        return crate::demo::client_main(&argv[1..]);
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(Usage(msg)) => {
            eprintln!("weir: {msg}");
            eprintln!("Try 'weir --help'.");
            return 2;
        }
    };
    if args.version {
        println!("weir {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let cmd = args.command.clone().unwrap_or_default();
    if args.help || cmd.is_empty() || cmd == "help" {
        let topic = if cmd == "help" {
            args.positional.first().map(String::as_str)
        } else {
            Some(cmd.as_str())
        };
        match topic.and_then(command_help) {
            Some(text) => print!("{text}"),
            None if topic.is_some_and(|t| !t.is_empty()) => {
                eprintln!("weir: unknown command '{}'", topic.unwrap_or_default());
                eprint!("{USAGE}");
                return 2;
            }
            None => print!("{USAGE}"),
        }
        return if cmd.is_empty() && !args.help { 2 } else { 0 };
    }
    if command_help(&cmd).is_none() {
        eprintln!(
            "weir: unknown command '{cmd}' (commands: load, apply, set, unload, status, events, verify, demo)"
        );
        return 2;
    }
    match execute(&cmd, &args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weir {cmd}: {e}");
            1
        }
    }
}

/// Refuses to go on without the capabilities every command needs (even `verify` loads programs
/// into the kernel verifier): failing later would be a bare EPERM from whichever call came first.
fn check_capabilities(cmd: &str) -> Result<(), Error> {
    use crate::sys::caps;
    let wanted = [caps::CAP_BPF, caps::CAP_NET_ADMIN, caps::CAP_SYS_ADMIN];
    let missing = caps::missing_here(&wanted)
        .map_err(|e| Error::io("reading the capabilities of this process", e))?;
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|c| c.name).collect();
    Err(Error::Environment(format!(
        "missing capabilities {}: `weir {cmd}` loads or reads BPF programs and maps, attaches them \
         to interfaces and cgroups and uses bpffs; run it as root (or grant CAP_BPF, CAP_NET_ADMIN \
         and CAP_SYS_ADMIN, e.g. AmbientCapabilities= in its systemd unit)",
        names.join(", ")
    )))
}

fn execute(cmd: &str, args: &Args) -> Result<(), Error> {
    check_capabilities(cmd)?;
    if cmd == "demo" {
        return crate::demo::run(&mut std::io::stdout());
    }
    if let Some(ns) = &args.netns {
        let fd = netns::open(ns)
            .map_err(|e| Error::io(format!("opening network namespace '{ns}'"), e))?;
        netns::enter(std::os::fd::AsFd::as_fd(&fd))
            .map_err(|e| Error::io(format!("entering network namespace '{ns}'"), e))?;
    }
    let pin_dir = args.pin_dir.clone();
    match cmd {
        "load" => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            let cfg = config::parse_file(&path)?;
            let dp = Dataplane::new(
                pin_dir
                    .or_else(|| cfg.pin_dir.as_ref().map(|(p, _)| p.clone()))
                    .unwrap_or_else(|| DEFAULT_PIN_DIR.into()),
            );
            let report = dp.load(&cfg)?;
            print!("{report}");
        }
        "apply" => {
            let cfg = config::parse_file(&PathBuf::from(&args.positional[0]))?;
            let dp = Dataplane::new(
                pin_dir
                    .or_else(|| cfg.pin_dir.as_ref().map(|(p, _)| p.clone()))
                    .unwrap_or_else(|| DEFAULT_PIN_DIR.into()),
            );
            let change = dp.apply_report(&cfg)?;
            if change.is_noop() {
                println!("nothing to do: the maps already match the config");
            } else {
                println!("{change}");
            }
        }
        "set" => {
            let (op, name, cidrs) =
                set_args(&args.positional).map_err(|Usage(msg)| Error::Environment(msg))?;
            let dp = Dataplane::new(pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into()));
            println!("{}", dp.set_members(name, op, &cidrs)?);
        }
        "unload" => {
            let dp = Dataplane::new(pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into()));
            let removed = dp.unload()?;
            if removed.is_empty() {
                println!("nothing to unload at {}", dp.pin_dir().display());
            }
            for r in removed {
                println!("removed {r}");
            }
        }
        "status" => {
            let dp = Dataplane::new(pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into()));
            print!("{}", dp.status()?);
        }
        "events" => {
            use std::io::Write;
            let dir = pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into());
            let (rx, _reader) = crate::events::spawn(&dir)?;
            let mut out = std::io::stdout().lock();
            let mut shown = 0u64;
            while args.count.is_none_or(|n| shown < n) {
                let Ok(e) = rx.recv() else { break };
                let line = if args.json { e.json() } else { e.to_string() };
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break; // the reader of our output went away
                }
                shown += 1;
            }
        }
        "verify" => {
            let dp = Dataplane::new(pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into()));
            for (object, prog, insns) in dp.verify()? {
                println!("{object}: prog '{prog}': ok ({insns} instructions after verification)");
            }
            println!("all embedded objects match maps-schema and pass the kernel verifier");
        }
        _ => unreachable!("checked by command_help"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The init-system files in loader/init call weir with arguments it accepts: the command
    /// each hook runs, as parsed.
    #[test]
    fn init_files_call_weir_with_valid_arguments() {
        let parsed = |line: &str| -> (String, Args) {
            let argv: Vec<String> = line
                .split_whitespace()
                .skip(1) // the binary
                .map(|w| {
                    w.trim_matches('"')
                        .replace("$WEIR_CONFIG", "/etc/weir/weir.conf")
                })
                .collect();
            let a = parse_args(&argv).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            (a.command.clone().unwrap_or_default(), a)
        };
        let unit = include_str!("../init/weir.service");
        let mut hooks = Vec::new();
        for line in unit.lines() {
            if let Some((key, cmd)) = line.split_once('=') {
                if key.starts_with("Exec") {
                    hooks.push((key.to_owned(), parsed(cmd).0));
                }
            }
        }
        assert_eq!(
            hooks,
            [
                ("ExecStart".to_owned(), "load".to_owned()),
                ("ExecReload".to_owned(), "apply".to_owned()),
                ("ExecStop".to_owned(), "unload".to_owned())
            ]
        );
        let openrc = include_str!("../init/weir.openrc");
        let cmds: Vec<String> = openrc
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("\"$command\""))
            .map(|l| parsed(l).0)
            .collect();
        assert_eq!(cmds, ["load", "apply", "unload"]);
        let (_, a) = parsed("weir load --config $WEIR_CONFIG");
        assert_eq!(
            a.config.as_deref(),
            Some(std::path::Path::new("/etc/weir/weir.conf"))
        );
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_global_options_anywhere() {
        let a = parse_args(&args(
            "--pin-dir /sys/fs/bpf/x load --netns=blue --config c.conf",
        ))
        .unwrap();
        assert_eq!(a.pin_dir, Some(PathBuf::from("/sys/fs/bpf/x")));
        assert_eq!(a.netns.as_deref(), Some("blue"));
        assert_eq!(a.command.as_deref(), Some("load"));
        assert_eq!(a.config, Some(PathBuf::from("c.conf")));
    }

    #[test]
    fn set_arguments_name_what_is_wrong() {
        use crate::policy::incremental::SetOp;
        let a = parse_args(&args("set add blocked 10.0.0.0/8 2001:db8::1")).unwrap();
        let (op, name, cidrs) = set_args(&a.positional).unwrap();
        assert_eq!((op, name, cidrs.len()), (SetOp::Add, "blocked", 2));
        assert_eq!(set_args(&args("del s 10.1.2.3")).unwrap().0, SetOp::Del);
        assert!(parse_args(&args("set add s"))
            .unwrap_err()
            .0
            .contains("at least one CIDR"));
        assert!(parse_args(&args("set put s 10.0.0.0/8"))
            .unwrap_err()
            .0
            .contains("'put' is not add or del"));
        let e = parse_args(&args("set add s 10.0.0.0/8 10.0.0.300"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("argument 4 '10.0.0.300' is not a network"),
            "{e}"
        );
        let e = parse_args(&args("set del s 10.1.2.3/8")).unwrap_err().0;
        assert!(e.contains("argument 3 '10.1.2.3/8'"), "{e}");
        assert_eq!(run(&args("set add")), 2);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        assert!(parse_args(&args("apply"))
            .unwrap_err()
            .0
            .contains("exactly one FILE"));
        assert!(parse_args(&args("status extra"))
            .unwrap_err()
            .0
            .contains("unexpected argument 'extra'"));
        assert!(parse_args(&args("load --pin-dir"))
            .unwrap_err()
            .0
            .contains("--pin-dir needs a value"));
        assert!(parse_args(&args("load --bogus"))
            .unwrap_err()
            .0
            .contains("unknown option '--bogus'"));
        assert!(parse_args(&args("status --config x"))
            .unwrap_err()
            .0
            .contains("belongs to `weir load`"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(run(&args("frobnicate")), 2);
        assert_eq!(run(&args("apply")), 2);
        assert_eq!(run(&args("--help")), 0);
        assert_eq!(run(&args("help load")), 0);
        assert_eq!(run(&args("load --help")), 0);
        assert_eq!(run(&args("--version")), 0);
    }
}
