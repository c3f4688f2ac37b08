# crtools: `make` builds the static musl binary with both blobs embedded.
#   make          -> target/x86_64-unknown-linux-musl/release/crtools (static-pie)
#   make test     -> the whole test suite (unit, integration on real victims)
#   make demo     -> the built-in demo
#   make bench    -> benchmarks
#   make check    -> crtools check on this kernel
MUSL := x86_64-unknown-linux-musl
BIN  := target/$(MUSL)/release/crtools
CARGO ?= cargo

.PHONY: all crtools test demo bench check lint clean targets

all: crtools

targets:
	@rustup target list --installed 2>/dev/null | grep -q $(MUSL) || rustup target add $(MUSL)
	@rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-none || rustup target add x86_64-unknown-none

crtools: targets
	$(CARGO) build --release --target $(MUSL) -p crtools
	@file $(BIN) | grep -Eq 'static-pie linked|statically linked' || { echo "$(BIN) is not static"; file $(BIN); exit 1; }
	@echo "built $(BIN) ($$(stat -c %s $(BIN)) bytes)"

test: targets
	$(CARGO) test --workspace

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

demo: crtools
	./scripts/demo.sh $(BIN)

bench: crtools
	./scripts/bench.sh $(BIN)

check: crtools
	$(BIN) check

clean:
	$(CARGO) clean
