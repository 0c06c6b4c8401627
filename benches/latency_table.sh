#!/usr/bin/env bash
# Latency from light load to overload, through benches/load.sh: first the capacity (the
# terminals send as fast as replies come; answers other than 91 per second), then open-loop
# runs at 10%, 50%, 90%, 100% and 300% of it (sim-terminal --rate), one table line per rate.
# A paced run keeps up to 50 ms of its rate in flight (at least PIPELINE per connection):
# the window of a closed loop would cap what is offered near saturation, where the
# latency is worst.
#   bash benches/latency_table.sh [MODE [CONNECTIONS PIPELINE [SECONDS]]]
#   MODE: a load.sh mode with a switch (default full: the SQLite journal, durable against
#     power loss); CONNECTIONS PIPELINE: the terminals (default 16 32); SECONDS: per run
#     (default 5)
#   RATES: the percentages of capacity to run at (default "10 50 90 100 300")
#   The environment of load.sh applies (ISOSWITCH_BIN, SIM_BIN, LOAD_CONFIG_EXTRA, LOAD_PORT).
# Columns: offered (requests/s asked of sim-terminal), window (requests in flight at most
# per connection), sent/s (what it could send), answered/s, 00 and 91 (answers by response
# code over the run), declined (the simulated issuer's other codes), errors (unanswered,
# mismatched), p50/p99/p999 of the latency in ms (write of the request to read of its reply,
# 91s included).
set -u
mode=${1:-full} C=${2:-16} K=${3:-32} S=${4:-5}
here=$(dirname "$0")
# One load.sh run with $2 in flight per connection; its JSON line (stdout) to $1, its CPU
# line (stderr) to $1.err.
run() {
  local out=$1 k=$2
  shift 2
  if ! env "$@" LOAD_FLOOR=0 bash "$here/load.sh" "$mode" "$C" "$k" "$S" >"$out" 2>"$out.err"; then
    echo "latency_table.sh: load.sh failed:" >&2
    cat "$out.err" >&2
    exit 1
  fi
}
# The fields of a sim-terminal JSON line the table needs, space-separated:
# seconds sent received 00 91 declined errors p50 p99 p999 (latencies in us).
fields() {
  python3 -c '
import json, sys
j = json.loads(sys.stdin.read().strip().splitlines()[-1])
rc = j.get("rc", {})
ok, shed = rc.get("00", 0), rc.get("91", 0)
declined = sum(rc.values()) - ok - shed
errors = j.get("errors", 0) + j.get("mismatches", 0)
rate = j["throughput_per_s"]
secs = j["received"] / rate if rate > 0 else float("nan")
l = j["latency_us"]
print(secs, j["sent"], j["received"], ok, shed, declined, errors, l["p50"], l["p99"], l["p999"])
' <"$1"
}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
run "$T/cap" "$K"
# Capacity: the answers per second that went through the issuer (and the journal), the
# 91s the switch sheds at once left out.
read -r secs _ recv _ shed _ _ _ _ _ < <(fields "$T/cap") || exit 1
cap=$(awk -v r="$recv" -v s="$shed" -v t="$secs" 'BEGIN { printf "%d", (r - s) / t }')
echo "capacity ($mode, $C x $K, closed loop, ${S}s): $cap/s answered other than 91 ($shed shed); $(cat "$T/cap.err")"
printf '%6s %8s %6s %8s %10s %8s %7s %8s %6s %7s %7s %8s\n' \
  "% cap" offered window "sent/s" "answered/s" 00 91 declined errors "p50 ms" "p99 ms" "p999 ms"
for pct in ${RATES:-10 50 90 100 300}; do
  rate=$((cap * pct / 100))
  [ "$rate" -gt 0 ] || rate=1
  k=$((rate / 20 / C))
  [ "$k" -ge "$K" ] || k=$K
  run "$T/r$pct" "$k" LOAD_RATE="$rate"
  read -r secs sent recv ok shed declined errors p50 p99 p999 < <(fields "$T/r$pct") || exit 1
  awk -v pct="$pct" -v rate="$rate" -v k="$k" -v secs="$secs" -v sent="$sent" -v recv="$recv" -v ok="$ok" \
    -v shed="$shed" -v declined="$declined" -v errors="$errors" -v p50="$p50" -v p99="$p99" -v p999="$p999" 'BEGIN {
    printf "%5d%% %8d %6d %8.0f %10.0f %8d %7d %8d %6d %7.2f %7.2f %8.2f\n", pct, rate, k, sent / secs,
      recv / secs, ok, shed, declined, errors, p50 / 1e3, p99 / 1e3, p999 / 1e3 }'
done
