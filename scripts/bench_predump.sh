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
# throughput benchmark.
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
