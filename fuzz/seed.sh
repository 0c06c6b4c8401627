#!/usr/bin/env bash
# Writes the fuzz corpora fuzz/corpus/<target>/ from the conformance vectors in
# tests/vectors/ (the corpora are not committed; this rebuilds them identically).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --example fuzz_seed
