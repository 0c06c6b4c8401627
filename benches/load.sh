#!/usr/bin/env bash
# One load run on 127.0.0.1: sim-terminal -> (switch ->) sim-issuer; prints sim-terminal's
# JSON line.
#   bash benches/load.sh MODE CONNECTIONS PIPELINE SECONDS
#   MODE: direct (sim-terminal straight to sim-issuer), off (switch, no journal),
#         normal / full (switch with a SQLite journal at that journal_sync)
#   ISOSWITCH_BIN: the binary (default target/release/isoswitch)
set -u
B=${ISOSWITCH_BIN:-target/release/isoswitch}
mode=$1 C=$2 K=$3 S=$4
D=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
"$B" sim-issuer --listen 127.0.0.1:18584 >"$D/issuer.log" 2>&1 &
if [ "$mode" = direct ]; then
  sleep 0.3
  "$B" sim-terminal --connect 127.0.0.1:18584 --connections "$C" --pipeline "$K" --seconds "$S" --json | tail -1
  exit
fi
if [ "$mode" = off ]; then
  RUST_LOG=warn "$B" run --listen 127.0.0.1:18583 --issuer 127.0.0.1:18584 --metrics 127.0.0.1:19583 \
    --journal off 2>"$D/switch.log" &
else
  printf 'journal = "%s/j.db"\njournal_sync = "%s"\n[[listener]]\naddr = "127.0.0.1:18583"\n[[issuer]]\nname = "default"\n[[issuer.link]]\naddr = "127.0.0.1:18584"\n' \
    "$D" "$mode" >"$D/c.toml"
  RUST_LOG=warn "$B" run --config "$D/c.toml" 2>"$D/switch.log" &
fi
sleep 1
"$B" sim-terminal --connect 127.0.0.1:18583 --connections "$C" --pipeline "$K" --seconds "$S" --json | tail -1
