#!/usr/bin/env bash
# make bench: crtools against this machine's own limits, measured side by side.
# OLD=path/to/another/crtools adds that build's dump and restore to every
# round (for example main's, to compare before and after a change).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/x86_64-unknown-linux-musl/release/crtools}
cargo build --release -q -p crtools-tests --bin victim --bin bench
target/release/bench "$BIN" ${OLD:+--old "$OLD"} "${@:2}"
# Iterative dumps: frozen time of a dump after two pre-dumps against a plain one.
scripts/bench_predump.sh "$BIN"
