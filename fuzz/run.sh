#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after another, and prints how many inputs
# each executed. Exits non-zero if any target crashed (the input is kept under
# fuzz/artifacts/<target>/; turn it into a test in tests/fuzz_regressions.rs).
#
#   fuzz/run.sh [SECONDS]        SECONDS per target, default 60
#
# Environment:
#   TARGETS     space-separated subset of targets (default: all of them)
#   SANITIZER   cargo-fuzz sanitizer: address (default) or none
#   VECTORS     folder of the test vectors used for seeds (default tests/vectors)
#   FUZZ_ARGS   extra libFuzzer flags, e.g. "-max_len=512"
#
# cargo-fuzz needs nightly-only flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
# Only this script's cargo calls get it: the project itself builds on plain stable.
set -euo pipefail

secs="${1:-60}"
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
sanitizer="${SANITIZER:-address}"
vectors="${VECTORS:-$here/../tests/vectors}"
all_targets="command status_scanner udp_loss md5_check ecsrp5_parsers server_handshake ecsrp5_client"
targets="${TARGETS:-$all_targets}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "# installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

if [ -d "$vectors" ]; then
    cargo run --quiet --example seeds -- "$vectors" corpus
else
    echo "# no test vectors at $vectors: running on the existing corpus only"
    for t in $targets; do mkdir -p "corpus/$t"; done
fi

mkdir -p artifacts/logs
if ! cargo fuzz build --sanitizer "$sanitizer" >artifacts/logs/build.log 2>&1; then
    cat artifacts/logs/build.log >&2
    echo "fuzz: build failed" >&2
    exit 1
fi

total=0
failed=""
for t in $targets; do
    log="artifacts/logs/$t.log"
    status=ok
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if ! cargo fuzz run --sanitizer "$sanitizer" "$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1; then
        status=crash
        failed="$failed $t"
    fi
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    execs="${execs:-0}"
    total=$((total + execs))
    echo "fuzz: target=$t secs=$secs execs=$execs result=$status"
    if [ "$status" != ok ]; then
        { grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to|^error" "$log" || true; } |
            head -n 8 | sed 's/^/  /'
    fi
done
echo "fuzz: total execs=$total sanitizer=$sanitizer"
if [ -n "$failed" ]; then
    echo "fuzz: crashed:$failed (logs in fuzz/artifacts/logs/, inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
