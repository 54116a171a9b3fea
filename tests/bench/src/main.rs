//! weir-bench: the benchmarks of the suite in BENCHMARKS.md, each run side by side with what a
//! user would pick instead, interleaved in one process run.
//!
//! ```text
//! cargo run --release -p weir-bench -- b1 [--rounds N] [--scales 10,100,1000,10000,100000] [--no-write]
//! cargo run --release -p weir-bench -- b2 [--rounds N] [--scales 10,100,1000,10000] [--datagrams N] [--no-write]
//! cargo run --release -p weir-bench -- b3 [--rounds N] [--scales 1,100,1000,10000,30000,100000] [--no-write]
//! cargo run --release -p weir-bench -- b4 [--rounds N] [--scales 100,1000,10000,100000] [--weir PATH] [--no-write]
//! cargo run --release -p weir-bench -- b5 [--rounds N] [--rss-rounds N] [--weir PATH] [--no-write]
//! cargo run --release -p weir-bench -- b6 [--rounds N] [--seconds N] [--no-write]
//! cargo run --release -p weir-bench -- b8 [--rounds N] [--ms N] [--conns N] [--no-write]
//! cargo run --release -p weir-bench -- tc-prog [--rules N] [--repeat N] [--rounds N]
//! ```
//!
//! It needs root (it loads BPF programs into network namespaces and a cgroup it creates), installs
//! the competitor's tools from Debian when they are missing, and writes its table into the
//! project's BENCHMARKS.md. Benchmarks are not tests: nothing here asserts a timing.

#![forbid(unsafe_code)]

mod b1;
mod b2;
mod b3;
mod b4;
mod b5;
mod b6;
mod b8;
mod env;
mod flags;
mod kstate;
mod proc;
mod report;
mod spec;
mod stats;
mod syscalls;
mod tcprog;

use std::process::ExitCode;

const USAGE: &str = "\
weir-bench: weir side by side with its competitors (see BENCHMARKS.md)

Usage: weir-bench <BENCHMARK> [OPTIONS]

Benchmarks:
  b1   XDP prefilter: cost per dropped / passed packet over 10 -> 100k CIDRs;
       competitors: iptables raw (linear, ipset), nft netdev set, an empty XDP program
  b2   TC network policy: CPU per new flow and per established packet with
       10 -> 10k rules / CIDRs on a workload's ingress; competitors: an iptables
       per-endpoint chain (conntrack first), iptables + ipset, nft concatenated set
  b3   connect-time load balancing: connections/s and connect() latency to a VIP
       over 1 -> 100k services; competitors: kube-proxy's iptables (DNAT) and
       nftables (vmap) layouts, a direct connect to the backend (the floor)
  b4   control plane: time to apply one change with N entries present, and a bulk
       load of N, over 100 -> 100k CIDRs in a set a rule references; competitors:
       iptables-restore (whole table, --noflush), ipset restore/add, nft -f
  b5   loader cold load+attach of everything, binary size, peak RSS;
       competitor: the same objects loaded with bpftool + ip + tc
  b6   throughput and CPU per Gbit (iperf3, TCP and UDP) over a routed veth node:
       weir's fast path on and off; competitors: plain forwarding, an iptables
       FORWARD chain (conntrack first, per-endpoint chains)
  b8   service-mesh redirect: connections/s and connect() latency through a local
       transparent proxy; competitor: iptables nat OUTPUT REDIRECT (sidecar rules)
  tc-prog  weir's TC programs alone (BPF_PROG_TEST_RUN): ns per run of an
       established packet under a workload's ingress policy, of new flows there,
       and of packets on interfaces without policy (a development measurement,
       nothing written)

Options of b1:
  --rounds N        interleaved timed rounds (default 11, at least 7)
  --scales A,B,..   deny-list sizes (default 10,100,1000,10000,100000)
  --linear-max N    largest N with linear iptables rules (default 100000)
  --prog-repeat N   BPF_PROG_TEST_RUN repeat per probe frame (default 1000000)
  --target-ms N     wall time per stack-level measurement (default 120)
  --seed N          deny-list seed (default 177)
  --no-native       skip the natively attached (veth relay) variant
  --no-write        print the section but leave BENCHMARKS.md alone

Options of b2:
  --rounds N        interleaved timed rounds (default 7, at least 7)
  --scales A,B,..   rules / CIDRs per endpoint (default 10,100,1000,10000)
  --datagrams N     datagrams per burst (default 4000)
  --no-write        print the section but leave BENCHMARKS.md alone

Options of b3:
  --rounds N        interleaved timed rounds (default 9, at least 7)
  --scales A,B,..   numbers of services (default 1,100,1000,10000,30000,100000)
  --iptables-max N  largest N with the iptables variant (default: every N)
  --nft-max N       largest N with the nft variant (default: every N)
  --ms N            minimum wall time of one measurement (default 150)
  --conns N         minimum connections of one measurement (default 300)
  --no-write        print the section but leave BENCHMARKS.md alone

Options of b4:
  --rounds N        interleaved timed rounds (default 7, at least 7)
  --scales A,B,..   numbers of entries (default 100,1000,10000,100000)
  --weir PATH       time this weir binary's `apply` instead of building the static musl one
  --no-write        print the section but leave BENCHMARKS.md alone

Options of b5:
  --rounds N       interleaved timed rounds (default 12, at least 7)
  --rss-rounds N   untimed rounds measuring peak RSS and CPU time per command (default 3)
  --weir PATH      use this weir binary instead of building the static musl one
  --no-write       print the section but leave BENCHMARKS.md alone

Options of b6:
  --rounds N        interleaved timed rounds (default 7, at least 7)
  --seconds N       seconds per iperf3 measurement (default 3)
  --no-write        print the section but leave BENCHMARKS.md alone

Options of b8:
  --rounds N        interleaved timed rounds (default 9, at least 7)
  --ms N            minimum wall time of one measurement (default 300)
  --conns N         minimum connections of one measurement (default 300)
  --no-write        print the section but leave BENCHMARKS.md alone

Options of tc-prog:
  --rules N         ingress rules on the workload's policy (default 10, at most 256)
  --repeat N        runs per test run (default 200000)
  --rounds N        interleaved rounds (default 7)

Runs as root. Exit codes: 0 done, 1 error, 2 usage error.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("b1") => match b1::Options::parse(&args[1..]) {
            Ok(opts) => match b1::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b1: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("b2") => match b2::Options::parse(&args[1..]) {
            Ok(opts) => match b2::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b2: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("b3") => match b3::Options::parse(&args[1..]) {
            Ok(opts) => match b3::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b3: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("b4") => match b4::Options::parse(&args[1..]) {
            Ok(opts) => match b4::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b4: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("b5") => match b5::Options::parse(&args[1..]) {
            Ok(opts) => match b5::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b5: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("b6") => match b6::Options::parse(&args[1..]) {
            Ok(opts) => match b6::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b6: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("b8") => match b8::Options::parse(&args[1..]) {
            Ok(opts) => match b8::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench b8: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        Some("tc-prog") => match tcprog::Options::parse(&args[1..]) {
            Ok(opts) => match tcprog::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weir-bench tc-prog: error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => usage_error(&e),
        },
        // Internal: B8's workload and proxy processes.
        Some(b8::CLIENT) => b8::client_main(&args[1..]),
        Some(b8::PROXY) => b8::proxy_main(&args[1..]),
        // Internal: B3's client process (joins a cgroup and a netns, connects in a loop).
        Some(b3::CLIENT) => b3::client_main(&args[1..]),
        // Internal: run a command and report its rusage (see proc::RSS_WRAP).
        Some(proc::RSS_WRAP) => proc::rss_wrap_main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown benchmark '{other}'")),
        None => usage_error("which benchmark?"),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("weir-bench: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}
