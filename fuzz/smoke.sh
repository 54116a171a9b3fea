#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 20 s each; argument: seconds per target).
# Needs the nightly toolchain (cargo-fuzz uses sanitizer flags) and installs cargo-fuzz if missing.
# A fixed seed keeps CI runs repeatable; run `cargo +nightly fuzz run TARGET` for open-ended fuzzing.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# Seed corpora from real inputs, so the fuzzer starts past the format checks.
mkdir -p corpus/object_verify corpus/config_parse
cp ../programs/*.o ../programs/tests/*.o corpus/object_verify/
printf 'interface eth0 role=host xdp=native tc=on attach=auto\ncgroup weir/web attach=link\npin-dir /sys/fs/bpf/weir\nprefilter deny 10.0.0.0/8 2001:db8::/32\nprefilter capacity v4=1024 v6=64\nfailsafe in tcp/22 udp/67-68\n' \
  > corpus/config_parse/seed.conf
printf 'interface veth-web role=workload addrs=10.0.0.2,fd00::2 labels=app:web,env:prod fastpath=off\nipset office 198.51.100.0/24 2001:db8:1::/48\npolicy web order=100 selector="app == \x27web\x27 && env != \x27dev\x27" types=ingress,egress\nrule web ingress allow proto=tcp dport=80,443,8000-8100 remote=set:office,!198.51.100.128/25\nrule web egress deny proto=icmp icmp-type=8 icmp-code=0\nconntrack capacity entries=4096\nservice web 198.51.100.10:80/tcp backends=192.0.2.1:8080@3,192.0.2.2:8080 affinity=30\nlb exclude mesh/sidecars\nmesh pods/web proxy-port=15001 proxy-cgroup=pods/web/envoy exclude-ports=22,9000-9100\n' \
  > corpus/config_parse/seed-policy.conf
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${secs}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=4096 -seed=1 2>&1 | tail -n 3
  # a crash makes cargo fuzz exit non-zero, and pipefail carries it
done
