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
#   LOAD_RATE: requests per second in all (sim-terminal --rate): latency at a given load;
#     unset, the terminals send as fast as replies come (capacity)
#   LOAD_FLOOR: rounds of examples/sync_floor run on the journal's directory after the load
#     (journal modes; default 200, 0 for none): one fdatasync, one SQLite commit and one
#     row through the journal's writer on the same disk in the same run, p50/p99 (build it
#     first with cargo build --release --example sync_floor)
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
  "$SIM" sim-terminal --connect "$ISS" --connections "$C" --pipeline "$K" --seconds "$S" ${LOAD_RATE:+--rate "$LOAD_RATE"} --json | tail -1
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
# CPU nanoseconds of a task (/proc/PID/task/TID/schedstat), or of the whole process
# (/proc/PID/stat ticks, which keep the time of threads that have exited).
ns() { awk '{ print $1 }' "$1/schedstat" 2>/dev/null; }
# The journal's threads (journal-writer, journal-checkpoint, ...): "name task-dir" lines.
journal_tasks() {
  for t in /proc/"$switch"/task/*; do
    c=$(cat "$t/comm" 2>/dev/null) && case $c in journal-*) echo "$c $t" ;; esac
  done
}
declare -A t0
while read -r name dir; do t0[$dir]=$(ns "$dir"); done < <(journal_tasks)
p0=$(ticks /proc/"$switch"/stat)
out=$("$SIM" sim-terminal --connect "$SW" --connections "$C" --pipeline "$K" --seconds "$S" ${LOAD_RATE:+--rate "$LOAD_RATE"} --json | tail -1)
p1=$(ticks /proc/"$switch"/stat)
split=""
while read -r name dir; do
  [ -n "${t0[$dir]:-}" ] && split="$split $name=$(( $(ns "$dir") - t0[$dir] ))"
done < <(journal_tasks)
echo "$out"
n=$(printf '%s' "$out" | sed -n 's/.*"received": *\([0-9]*\).*/\1/p')
hz=$(getconf CLK_TCK)
if [ -n "$n" ] && [ "$n" -gt 0 ] && [ -n "$p0" ] && [ -n "$p1" ]; then
  awk -v p="$((p1 - p0))" -v js="$split" -v n="$n" -v hz="$hz" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    j = ""; k = split(js, parts, " ")
    for (i = 1; i <= k; i++) { split(parts[i], kv, "="); j = j sprintf(", %s %.2f", kv[1], kv[2] / 1e3 / n) }
    printf "switch cpu: %.2f us/txn%s us/txn, %d txn, load %s\n", p * 1e6 / hz / n, j, n, l }' >&2
fi
FLOOR=${FLOOR_BIN:-target/release/examples/sync_floor}
if [ "$mode" = normal ] || [ "$mode" = full ] && [ "${LOAD_FLOOR:-200}" -gt 0 ] && [ -x "$FLOOR" ]; then
  "$FLOOR" "$D" "${LOAD_FLOOR:-200}" | sed 's/^/disk: /' >&2
fi
