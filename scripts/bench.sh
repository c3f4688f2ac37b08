#!/usr/bin/env bash
# make bench: crtools against this machine's own limits, measured side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/x86_64-unknown-linux-musl/release/crtools}
cargo build --release -q -p crtools-tests --bin victim --bin bench
exec target/release/bench "$BIN" "${@:2}"
