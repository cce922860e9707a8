#!/usr/bin/env bash
# Measures the till app on a large store, under Xvfb: cold start to the first usable frame,
# resident memory, and idle CPU once settled. Needs: xvfb openbox xdotool (apt), and a store,
# by default the 1M-member one `cargo bench --bench store` builds in target/bench/.
#   bash benches/till_app.sh [DB]
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-target/bench/store-1000000.sqlite3}
[ -f "$db" ] || { echo "no store at $db: run 'cargo bench --bench store' first" >&2; exit 1; }
cargo build --release --quiet
export DISPLAY=:77
Xvfb :77 -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
openbox >/dev/null 2>&1 & wm=$!
trap 'kill $wm $xvfb 2>/dev/null' EXIT
sleep 1
./target/release/tillpass --db "$db" status >/dev/null   # apply any pending migrations first
tck=$(getconf CLK_TCK)
for run in 1 2 3; do
    log=$(mktemp)
    ./target/release/tillpass --db "$db" 2>"$log" & app=$!
    sleep 5
    start=$(grep -o 'usable [0-9]* ms' "$log" || echo "usable ? ms")
    rss=$(awk '/VmRSS/ {print $2}' /proc/$app/status)
    if [ "$run" = 3 ]; then
        sleep 20
        t0=$(awk '{print $14+$15}' /proc/$app/stat); sleep 30; t1=$(awk '{print $14+$15}' /proc/$app/stat)
        idle=$(python3 -c "print(round(($t1-$t0)/(30*$tck)*100, 2))")
        echo "run $run: $start, RSS $((rss / 1024)) MB, idle CPU ${idle}% over 30 s"
    else
        echo "run $run: $start, RSS $((rss / 1024)) MB"
    fi
    kill $app; wait $app 2>/dev/null || true
    rm -f "$log"
done
