#!/usr/bin/env bash
# One load run on 127.0.0.1: sim-terminal -> (switch ->) sim-issuer; prints sim-terminal's
# JSON line on stdout and, on stderr, the CPU time (user+system) per transaction of each
# process of the run: the switch, split by thread group (tokio workers, journal-writer,
# journal-checkpoint, other), sim-terminal and sim-issuer, and the switch's CPU against the
# simulators' together. On a busy machine CPU per transaction is what to compare, more than
# the throughput.
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
#   LOAD_BUDGET_MS: the switch's journal_budget_ms (journal modes; default: the switch's
#     default): a large one (1000) sheds nothing, to compare the CPU of journalled
#     transactions only (a request shed with 91 costs a fraction of one)
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
issuer=$!
hz=$(getconf CLK_TCK)
# utime + stime (clock ticks) of a /proc stat file; the name field may hold spaces.
ticks() { sed 's/^.*) //' "$1" 2>/dev/null | awk '{ print $12 + $13 }'; }
# sim-terminal against $1; its JSON line to $D/term.json and its CPU (user+system, clock
# ticks: bash's `times` for the children it waited for) to $D/term.cpu. The terminal ends
# with the run, so its /proc entry is gone when the run is over.
terminal() {
  (
    "$SIM" sim-terminal --connect "$1" --connections "$C" --pipeline "$K" --seconds "$S" \
      ${LOAD_RATE:+--rate "$LOAD_RATE"} --json | tail -1 >"$D/term.json"
    # Not in a pipeline: `times` would run in a child process of its own, which has no
    # children of its own yet.
    times >"$D/term.times"
  )
  awk -v hz="$hz" 'NR == 2 {
    n = 0
    for (i = 1; i <= 2; i++) { split($i, ms, /[ms]/); n += ms[1] * 60 + ms[2] }
    printf "%d\n", n * hz + 0.5 }' "$D/term.times" >"$D/term.cpu"
}
# One line: the CPU per transaction of each part ("name=ticks-or-ns" words in $2, ticks
# for processes, ns for threads; "sims" and "switch" are sums the line compares).
report() {
  local out=$1 parts=$2 n
  n=$(printf '%s' "$out" | sed -n 's/.*"received": *\([0-9]*\).*/\1/p')
  [ -n "$n" ] && [ "$n" -gt 0 ] || return
  awk -v parts="$parts" -v n="$n" -v hz="$hz" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    k = split(parts, p, " "); line = ""
    for (i = 1; i <= k; i++) {
      split(p[i], kv, "="); name = kv[1]; v = kv[2]
      us = (name ~ /^(switch|sim-terminal|sim-issuer)$/) ? v * 1e6 / hz / n : v / 1e3 / n
      cpu[name] = us
      line = line sprintf("%s%s %.2f", line == "" ? "" : ", ", name, us)
    }
    sims = cpu["sim-terminal"] + cpu["sim-issuer"]
    line = line sprintf(", sims %.2f", sims)
    if ("switch" in cpu && sims > 0) line = line sprintf(", switch/sims %.2f", cpu["switch"] / sims)
    printf "cpu us/txn: %s; %d txn, load %s\n", line, n, l }' >&2
}
if [ "$mode" = direct ]; then
  sleep 0.3
  i0=$(ticks /proc/"$issuer"/stat)
  terminal "$ISS"
  i1=$(ticks /proc/"$issuer"/stat)
  out=$(cat "$D/term.json")
  echo "$out"
  report "$out" "sim-terminal=$(cat "$D/term.cpu") sim-issuer=$((i1 - i0))"
  exit
fi
if [ "$mode" = floor ]; then
  sleep 0.3 # it connects to the issuer once, at start
  "${RELAY_BIN:-target/release/examples/relay_floor}" "$SW" "$ISS" 2>"$D/switch.log" &
elif [ "$mode" = off ]; then
  RUST_LOG=warn "$B" run --listen "$SW" --issuer "$ISS" --metrics "$MET" \
    --journal off 2>"$D/switch.log" &
else
  printf 'journal = "%s/j.db"\njournal_sync = "%s"\n%s[[listener]]\naddr = "%s"\n[[issuer]]\nname = "default"\n[[issuer.link]]\naddr = "%s"\n' \
    "$D" "$mode" "${LOAD_BUDGET_MS:+journal_budget_ms = $LOAD_BUDGET_MS
}" "$SW" "$ISS" >"$D/c.toml"
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
# CPU nanoseconds of a task (/proc/PID/task/TID/schedstat).
ns() { awk '{ print $1 }' "$1/schedstat" 2>/dev/null; }
# The switch's threads by group: "group task-dir" lines; tokio's workers and blocking
# threads are both "tokio-runtime-worker", the journal's threads are named journal-*.
switch_tasks() {
  for t in /proc/"$switch"/task/*; do
    c=$(cat "$t/comm" 2>/dev/null) || continue
    case $c in
      # comm holds 15 characters: journal-checkpoint is journal-checkpo.
      journal-checkpo*) echo "journal-checkpoint $t" ;;
      journal-*) echo "$c $t" ;;
      tokio-*) echo "tokio $t" ;;
      *) echo "other-threads $t" ;;
    esac
  done
}
declare -A t0
while read -r name dir; do t0[$dir]=$(ns "$dir"); done < <(switch_tasks)
p0=$(ticks /proc/"$switch"/stat)
i0=$(ticks /proc/"$issuer"/stat)
terminal "$SW"
p1=$(ticks /proc/"$switch"/stat)
i1=$(ticks /proc/"$issuer"/stat)
# Per group, the CPU of its threads alive at both ends; "other" is the rest of the
# process's (threads that came or went during the run, and any not named above).
declare -A group
threads=0
while read -r name dir; do
  [ -n "${t0[$dir]:-}" ] || continue
  d=$(($(ns "$dir") - t0[$dir]))
  group[$name]=$((${group[$name]:-0} + d))
  threads=$((threads + d))
done < <(switch_tasks)
rest=$(((p1 - p0) * 1000000000 / hz - threads))
parts="switch=$((p1 - p0)) tokio=${group[tokio]:-0}"
for g in journal-writer journal-checkpoint; do
  [ -n "${group[$g]:-}" ] && parts="$parts $g=${group[$g]}"
done
for g in "${!group[@]}"; do
  case $g in tokio | journal-writer | journal-checkpoint | other-threads) ;; *) parts="$parts $g=${group[$g]}" ;; esac
done
parts="$parts other=$((rest + ${group[other-threads]:-0}))"
out=$(cat "$D/term.json")
echo "$out"
report "$out" "$parts sim-terminal=$(cat "$D/term.cpu") sim-issuer=$((i1 - i0))"
FLOOR=${FLOOR_BIN:-target/release/examples/sync_floor}
if [ "$mode" = normal ] || [ "$mode" = full ] && [ "${LOAD_FLOOR:-200}" -gt 0 ] && [ -x "$FLOOR" ]; then
  "$FLOOR" "$D" "${LOAD_FLOOR:-200}" | sed 's/^/disk: /' >&2
fi
