#!/usr/bin/env bash
# Frozen time of a final dump after two pre-dumps against a plain dump.
#
# scripts/bench_predump.sh [CRTOOLS] [MIB] [ROUNDS]: a victim (victim_predump)
# holding MIB MiB (default 1024) of written anonymous memory rewrites 5% of
# it between rounds. Incremental: pre-dump, 5% written, pre-dump on top,
# 5% written, dump --prev-images-dir --track-mem. Plain: 5% written, dump.
# Images go to tmpfs (/dev/shm) so that the disk is not measured. Prints
# the frozen time each dump recorded in stats-dump.img (best of ROUNDS,
# default 3) and the pages each wrote; `make bench` runs it after the
# throughput benchmark. Then the victim's own throughput while it is
# pre-dumped: in churn mode a thread rewrites its MIB MiB without pause
# and logs how many pages it has written every 20 ms; its rate during the
# pre-dump (which copies pages while the tree runs) is set against its rate
# in the second before.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/x86_64-unknown-linux-musl/release/crtools}
[ -x "$BIN" ] || BIN=target/release/crtools
MIB=${2:-1024}
ROUNDS=${3:-3}
cargo build --release -q -p crtools-tests --bin victim_predump
[ -x "$BIN" ] || cargo build --release -q -p crtools
VICTIM=${CARGO_TARGET_DIR:-target}/release/victim_predump
WORK=$(mktemp -d /dev/shm/crtools-bench-predump.XXXXXX)
VPID=
cleanup() {
    [ -n "$VPID" ] && kill -9 "$VPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits until the victim's log has line $2 (a prefix).
wait_log() {
    for _ in $(seq 1 6000); do
        grep -q "^$2" "$1" 2>/dev/null && return 0
        sleep 0.01
    done
    echo "victim: no '$2' in $1" >&2
    exit 1
}

# field NAME DIR: a number of DIR/stats-dump.img.
field() {
    "$BIN" show -f "$2/stats-dump.img" | awk -v k="$1:" '$1 == k { print $2 }'
}

start_victim() {
    local log=$1
    "$VICTIM" "$log" "$MIB" &
    VPID=$!
    wait_log "$log" ready
}

next_round() {
    kill -USR1 "$VPID"
    wait_log "$1" "round $2"
}

best_inc=; best_plain=
for r in $(seq 1 "$ROUNDS"); do
    d=$WORK/inc$r
    mkdir -p "$d"
    start_victim "$d/log"
    "$BIN" pre-dump -v 0 -D "$d/pre1" -t "$VPID"
    next_round "$d/log" 1
    "$BIN" pre-dump -v 0 -D "$d/pre2" -t "$VPID" --prev-images-dir ../pre1
    next_round "$d/log" 2
    "$BIN" dump -v 0 -D "$d/final" -t "$VPID" --prev-images-dir ../pre2 --track-mem
    wait "$VPID" 2>/dev/null || true
    VPID=
    f=$(field frozen_time "$d/final")
    printf 'incremental round %d: pre-dump 1 frozen %6d us (%d pages), pre-dump 2 frozen %6d us (%d pages, %d in parent), final dump frozen %6d us (%d pages, %d in parent)\n' \
        "$r" "$(field frozen_time "$d/pre1")" "$(field pages_written "$d/pre1")" \
        "$(field frozen_time "$d/pre2")" "$(field pages_written "$d/pre2")" "$(field pages_skipped_parent "$d/pre2")" \
        "$f" "$(field pages_written "$d/final")" "$(field pages_skipped_parent "$d/final")"
    if [ -z "$best_inc" ] || [ "$f" -lt "$best_inc" ]; then best_inc=$f; fi
    rm -rf "$d"

    d=$WORK/plain$r
    mkdir -p "$d"
    start_victim "$d/log"
    next_round "$d/log" 1
    "$BIN" dump -v 0 -D "$d/dump" -t "$VPID"
    wait "$VPID" 2>/dev/null || true
    VPID=
    f=$(field frozen_time "$d/dump")
    printf 'plain       round %d: dump frozen %6d us (%d pages)\n' "$r" "$f" "$(field pages_written "$d/dump")"
    if [ -z "$best_plain" ] || [ "$f" -lt "$best_plain" ]; then best_plain=$f; fi
    rm -rf "$d"
done
printf '%d MiB, 5%% written between rounds, best of %d: final dump after two pre-dumps frozen %d us, plain dump frozen %d us\n' \
    "$MIB" "$ROUNDS" "$best_inc" "$best_plain"

# rate LOG FROM TO: pages per second the churn victim wrote between wall
# clock times FROM and TO (ms), from its "t MS pages N" lines (the last
# line at or before FROM, or the first line, to the first at or after TO).
rate() {
    awk -v a="$2" -v b="$3" '$1 == "t" {
        if ($2 <= a || t0 == "") { t0 = $2; n0 = $4 }
        if ($2 >= b && t1 == "") { t1 = $2; n1 = $4 }
    } END { if (t1 == "" || t1 == t0) print 0; else printf "%d\n", (n1 - n0) * 1000 / (t1 - t0) }' "$1"
}

d=$WORK/churn
mkdir -p "$d"
"$VICTIM" "$d/log" "$MIB" churn &
VPID=$!
wait_log "$d/log" ready
# The first sweep over the area faults every page in: past it, a second
# of undisturbed writing.
sleep 2
t0=$(date +%s%3N)
"$BIN" pre-dump -v 0 -D "$d/pre1" -t "$VPID"
t1=$(date +%s%3N)
sleep 0.1
kill -9 "$VPID"
wait "$VPID" 2>/dev/null || true
VPID=
before=$(rate "$d/log" $((t0 - 1000)) "$t0")
during=$(rate "$d/log" "$t0" "$t1")
printf 'victim rewriting its %d MiB without pause: %d pages/s undisturbed, %d pages/s during a pre-dump (%d%%); the pre-dump took %d ms, frozen %d us, %d pages copied\n' \
    "$MIB" "$before" "$during" $((before > 0 ? during * 100 / before : 0)) $((t1 - t0)) \
    "$(field frozen_time "$d/pre1")" "$(field pages_written "$d/pre1")"
