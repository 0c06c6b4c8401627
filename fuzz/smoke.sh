#!/usr/bin/env bash
# Short, bounded fuzz run of every target in fuzz/ (seeded from tests/vectors); exits
# non-zero when a target finds a crash (the input is kept under fuzz/artifacts/<target>/).
#   FUZZ_SECONDS  seconds per target (default 20)
#   FUZZ_STABLE=1 use the stable fallback even when nightly is installed
# Uses nightly when it is installed, else the stable toolchain with RUSTC_BOOTSTRAP=1
# (cargo-fuzz passes flags only nightly accepts). Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if [ "${FUZZ_STABLE:-0}" != 1 ] && rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
# The code under test forbids unsafe, so AddressSanitizer adds nothing but cost;
# debug assertions are on so that arithmetic overflow is caught as a crash.
opts=(--sanitizer none --debug-assertions)

fuzz/seed.sh
"${fuzz[@]}" build "${opts[@]}"
status=0
for target in $("${fuzz[@]}" list); do
    echo "== fuzz $target (${secs}s)"
    if ! "${fuzz[@]}" run "${opts[@]}" "$target" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        echo "fuzz target $target FAILED" >&2
        status=1
    fi
done
exit "$status"
