#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECS seconds each (default 60),
# after seeding its corpus from engine/src/proc/testdata and from any image
# directories given (images of real dumps). Prints one line per target:
#   fuzz TARGET: S s, N execs, ok|FAILED
# and fails if any target found a crash, a panic, a leak or an allocation
# above -malloc_limit_mb (32 MiB: twice the largest record limit).
#   scripts/fuzz.sh [SECS] [IMAGE_DIR...]
# Exit status: 0 clean, 1 a target failed, 2 nothing could be built.
# Needs cargo-fuzz; stable rustc accepts its nightly flags with
# RUSTC_BOOTSTRAP=1 (set here).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
FUZZ=fuzz
TARGETS=${FUZZ_TARGETS:-$(cd $FUZZ && cargo fuzz list)}
TD=engine/src/proc/testdata

seed() { # target, files...
  local t=$1; shift
  mkdir -p "$FUZZ/corpus/$t"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$FUZZ/corpus/$t/seed-$(basename "$f")" || true; done
}
seed proc_stat $TD/*.stat
seed proc_status $TD/*.status
seed proc_maps $TD/*.maps
seed proc_smaps $TD/*.smaps $TD/*.smaps_rollup
seed proc_fdinfo $TD/fdinfo.*
seed proc_locks $TD/locks
seed proc_cgroup $TD/cgroup.*
seed proc_mountinfo $TD/mountinfo.*
seed proc_timers $TD/*.timers
seed proc_misc $TD/*.stat
seed sock_diag_unix
for d in "$@"; do
  for f in "$d"/*.img; do
    case "$(basename "$f")" in pages-*) continue ;; esac
    mkdir -p "$FUZZ/corpus/image_records"
    cp "$f" "$FUZZ/corpus/image_records/seed-$(basename "$d")-$(basename "$f")"
  done
done

# Exit status 2: the targets could not be built (no C++ compiler, ...).
(cd $FUZZ && cargo fuzz build -O >/dev/null) || { echo "fuzz: the targets do not build here"; exit 2; }
status=0
for t in $TARGETS; do
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/logs"
  log="$FUZZ/logs/$t.log"
  if (cd $FUZZ && cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECS" \
        -malloc_limit_mb=32 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    res=ok
  else
    res=FAILED
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/.*Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  echo "fuzz $t: ${secs:-?} s, ${execs:-?} execs, $res"
  if [ $res = FAILED ]; then grep -E "ERROR|panicked|Test unit written" "$log" | head -5; fi
done
exit $status
