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
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${secs}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=4096 -seed=1 2>&1 | tail -n 3
  # a crash makes cargo fuzz exit non-zero, and pipefail carries it
done
