#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 20 s each; argument: seconds per target).
# Needs the nightly toolchain (cargo-fuzz uses sanitizer flags) and installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${secs}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 | tail -n 3
  # a crash makes cargo fuzz exit non-zero, and pipefail carries it
done
