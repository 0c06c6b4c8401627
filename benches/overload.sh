#!/usr/bin/env bash
# Overload on 127.0.0.1: 60 s at three times an issuer's capacity. The simulated issuer
# takes 20 ms per request and the link's window is 64 (about 3,200/s); the terminals offer
# 9,600/s; the issuer drops one message in 50, so requests time out and are reversed
# through store-and-forward. Prints sim-terminal's JSON line, the switch's peak RSS, its
# shed/admission/reversal metrics, the journal's reversal queue by state and the load
# average. Every answer should arrive within the 1000 ms deadline (latency_us.max).
#   bash benches/overload.sh [SECONDS]    ISOSWITCH_BIN: the binary (default target/release/isoswitch)
set -u
B=${ISOSWITCH_BIN:-target/release/isoswitch}
S=${1:-60}
D=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
cat >"$D/c.toml" <<TOML
journal = "$D/j.db"
journal_sync = "normal"
metrics = "127.0.0.1:39583"
[[listener]]
addr = "127.0.0.1:38583"
[[issuer]]
name = "default"
[[issuer.link]]
addr = "127.0.0.1:38584"
window = 64
deadline_ms = 1000
TOML
"$B" sim-issuer --listen 127.0.0.1:38584 --delay-ms 20 --drop-every 50 >"$D/issuer.log" 2>&1 &
RUST_LOG=warn "$B" run --config "$D/c.toml" 2>"${SWITCH_LOG:-$D/switch.log}" &
SP=$!
sleep 1
"$B" sim-terminal --connect 127.0.0.1:38583 --connections 32 --pipeline 64 --rate 9600 \
  --seconds "$S" --timeout-ms 1500 --json | tail -1
grep VmHWM "/proc/$SP/status"
curl -s 127.0.0.1:39583/metrics | grep -E '^isoswitch_(shed_total|reversals_queued_total|saf_sent_total|saf_acked_total|timeouts_total|admitted_after_wait_total|admission_overflow_total|admission_queue_depth|reversal_store_late_total)'
curl -s 127.0.0.1:39583/metrics | grep -E '^isoswitch_admission_wait_seconds_(sum|count)|^isoswitch_end_to_end_latency_seconds_(bucket\{le="(0.5|1|2.5)"\}|count)'
echo "deadline_ms 1000; load average $(cut -d' ' -f1-3 /proc/loadavg)"
sqlite3 "$D/j.db" "SELECT 'saf ' || state, count(*) FROM saf GROUP BY state;"
