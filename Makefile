# crtools: `make` builds the static musl binary with both blobs embedded.
#   make          -> target/x86_64-unknown-linux-musl/release/crtools (static-pie)
#   make test     -> the whole test suite (unit, integration on real victims)
#   make demo     -> the built-in demo
#   make bench    -> benchmarks
#   make check    -> crtools check on this kernel
#   make install  -> crtools, crtools(1) and bash/zsh completions under $(DESTDIR)$(PREFIX)
MUSL := x86_64-unknown-linux-musl
BIN  := target/$(MUSL)/release/crtools
CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
GEN  := target/$(MUSL)/release/crtools-gen

.PHONY: all crtools test demo bench check lint clean targets install docs

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

# OLD=path/to/another/crtools compares that build in the same run.
bench: crtools
	OLD=$(OLD) ./scripts/bench.sh $(BIN)

check: crtools
	$(BIN) check

# The manual page and completions are generated from the CLI definitions.
docs: targets
	$(CARGO) build --release --target $(MUSL) -p crtools --bin crtools-gen
	mkdir -p target/docs
	$(GEN) man > target/docs/crtools.1
	$(GEN) bash > target/docs/crtools.bash
	$(GEN) zsh > target/docs/_crtools

install: crtools docs
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/crtools
	install -D -m 0644 target/docs/crtools.1 $(DESTDIR)$(PREFIX)/share/man/man1/crtools.1
	install -D -m 0644 target/docs/crtools.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/crtools
	install -D -m 0644 target/docs/_crtools $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_crtools

clean:
	$(CARGO) clean
