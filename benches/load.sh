#!/usr/bin/env bash
# One load run on 127.0.0.1: sim-terminal -> (switch ->) sim-issuer; prints sim-terminal's
# JSON line on stdout and, on stderr, the switch's CPU time per transaction (user+system,
# whole process and its journal-writer thread), which is what to compare on a busy machine.
#   bash benches/load.sh MODE CONNECTIONS PIPELINE SECONDS
#   MODE: direct (sim-terminal straight to sim-issuer), off (switch, no journal),
#         normal / full (switch with a SQLite journal at that journal_sync),
#         floor (examples/relay_floor in the switch's place: decode, swap the STAN, match,
#         nothing else; build it first with cargo build --release --example relay_floor)
#   ISOSWITCH_BIN: the binary (default target/release/isoswitch)
#   SIM_BIN: the simulators' binary (default ISOSWITCH_BIN): A/B runs of two switch builds
#     keep one load generator
#   LOAD_CONFIG_EXTRA: TOML appended to the switch's configuration (journal modes), e.g.
#     $'[saf]\nindoubt = false' to measure without the in-doubt log
#   LOAD_PORT: the switch's port (default 18583); the issuer listens on the next one and
#     metrics on this + 1000. Give each concurrent run on a machine its own.
set -u
B=${ISOSWITCH_BIN:-target/release/isoswitch}
SIM=${SIM_BIN:-$B}
mode=$1 C=$2 K=$3 S=$4
P=${LOAD_PORT:-18583}
SW=127.0.0.1:$P ISS=127.0.0.1:$((P + 1)) MET=127.0.0.1:$((P + 1000))
D=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
"$SIM" sim-issuer --listen "$ISS" >"$D/issuer.log" 2>&1 &
if [ "$mode" = direct ]; then
  sleep 0.3
  "$SIM" sim-terminal --connect "$ISS" --connections "$C" --pipeline "$K" --seconds "$S" --json | tail -1
  exit
fi
if [ "$mode" = floor ]; then
  sleep 0.3 # it connects to the issuer once, at start
  "${RELAY_BIN:-target/release/examples/relay_floor}" "$SW" "$ISS" 2>"$D/switch.log" &
elif [ "$mode" = off ]; then
  RUST_LOG=warn "$B" run --listen "$SW" --issuer "$ISS" --metrics "$MET" \
    --journal off 2>"$D/switch.log" &
else
  printf 'journal = "%s/j.db"\njournal_sync = "%s"\n[[listener]]\naddr = "%s"\n[[issuer]]\nname = "default"\n[[issuer.link]]\naddr = "%s"\n' \
    "$D" "$mode" "$SW" "$ISS" >"$D/c.toml"
  printf '%s\n' "${LOAD_CONFIG_EXTRA:-}" >>"$D/c.toml"
  RUST_LOG=warn "$B" run --config "$D/c.toml" 2>"$D/switch.log" &
fi
switch=$!
# Wait (at most 10 s) for this switch to listen: opening a FULL journal fsyncs, which on a
# busy disk takes longer than a fixed pause. The listening socket must be this switch's:
# another run's switch on the same port would otherwise be measured.
mine() {
  local inode
  inode=$(awk -v p="$(printf ':%04X' "$P")" '$2 ~ p"$" && $4 == "0A" { print $10; exit }' /proc/net/tcp)
  [ -n "$inode" ] && ls -l /proc/"$switch"/fd 2>/dev/null | grep -q "socket:\[$inode\]"
}
for _ in $(seq 100); do
  mine && break
  sleep 0.1
done
if ! mine; then
  echo "load.sh: the switch is not listening on $SW (port taken? see LOAD_PORT)" >&2
  exit 1
fi
sleep 0.2
# utime + stime (clock ticks) of a /proc stat file; the name field may hold spaces.
ticks() { sed 's/^.*) //' "$1" 2>/dev/null | awk '{ print $12 + $13 }'; }
writer_stat() { grep -l '^journal-writer$' /proc/"$switch"/task/*/comm 2>/dev/null | head -1 | sed 's/comm$/stat/'; }
p0=$(ticks /proc/"$switch"/stat) w=$(writer_stat) w0=0
[ -n "$w" ] && w0=$(ticks "$w")
out=$("$SIM" sim-terminal --connect "$SW" --connections "$C" --pipeline "$K" --seconds "$S" --json | tail -1)
p1=$(ticks /proc/"$switch"/stat) w1=0
[ -n "$w" ] && w1=$(ticks "$w")
echo "$out"
n=$(printf '%s' "$out" | sed -n 's/.*"received": *\([0-9]*\).*/\1/p')
hz=$(getconf CLK_TCK)
if [ -n "$n" ] && [ "$n" -gt 0 ] && [ -n "$p0" ] && [ -n "$p1" ]; then
  awk -v p="$((p1 - p0))" -v w="$((w1 - w0))" -v n="$n" -v hz="$hz" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    printf "switch cpu: %.2f us/txn (journal-writer %.2f us/txn), %d txn, load %s\n", p * 1e6 / hz / n, w * 1e6 / hz / n, n, l }' >&2
fi
