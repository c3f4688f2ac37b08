#!/usr/bin/env bash
# make demo: checkpoint a sample counter, kill it, restore it, show it goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/x86_64-unknown-linux-musl/release/crtools}
cargo build --release -q -p crtools-tests --bin victim
VICTIM=target/release/victim
WORK=$(mktemp -d "${TMPDIR:-/tmp}/crtools-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG=$WORK/counter.log

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting a sample counter (64 MiB of checksummed memory, ticks every 50 ms into $LOG)"
"$VICTIM" ticker "$LOG" 64 &
PID=$!
for _ in $(seq 100); do grep -q ready "$LOG" 2>/dev/null && break; sleep 0.1; done
sleep 1
echo "counter pid $PID, last line: $(tail -n1 "$LOG")"

say "crtools dump -D $WORK/img -t $PID"
"$BIN" dump -D "$WORK/img" -t "$PID"
wait "$PID" 2>/dev/null || true
LAST=$(grep -c '^tick' "$LOG")
echo "the counter is gone (dumped and killed after $LAST ticks); images:"
ls -l "$WORK/img"

say "crtools show -f $WORK/img/pstree.img"
"$BIN" show -f "$WORK/img/pstree.img"

sleep 1
say "crtools restore -d -D $WORK/img -t $PID"
"$BIN" restore -d -D "$WORK/img" -t "$PID"
sleep 1
kill -USR1 "$PID"
sleep 0.5
echo "restored process: $(ps -o pid=,stat=,comm= -p "$PID")"
echo "its log goes on from tick $LAST:"
grep -A3 "^tick $LAST\$" "$LOG" | head -n 4
echo "its own memory check after restore: $(grep status "$LOG" | tail -n1)"
grep -q "status pid=$PID .*mem=ok" "$LOG" || { echo "demo FAILED: the restored counter did not verify its memory"; kill -9 "$PID"; exit 1; }
kill "$PID"
say "demo OK: same pid, same memory, the counter continued"
