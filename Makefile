# btest-rs: every task goes through here. `make help` lists them.

CARGO ?= cargo
PORT ?= 2000
DEMO_SECS ?= 5
BIN := target/release/btest

.PHONY: all build test lint fmt-check clippy unit demo bench bench-deps clean help

all: build

build: ## release build of the btest binary
	$(CARGO) build --release

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

test: lint ## format check, clippy -D warnings, then every test
	$(CARGO) test --all-features

lint: fmt-check clippy ## format check and clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets --all-features -- -D warnings

demo: build ## a server and a client on 127.0.0.1, DEMO_SECS each way
	@$(BIN) -s --listen 127.0.0.1 -P $(PORT) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	sleep 0.5; \
	echo "== client receives (server transmits) for $(DEMO_SECS) s"; \
	$(BIN) -c 127.0.0.1 -P $(PORT) -r -d $(DEMO_SECS) || exit $$?; \
	echo "== client transmits (server receives) for $(DEMO_SECS) s"; \
	$(BIN) -c 127.0.0.1 -P $(PORT) -t -d $(DEMO_SECS) || exit $$?

bench-deps: ## install iperf3 (the peer measured beside us) when missing and root
	@command -v iperf3 >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		(apt-get install -y iperf3 >/dev/null 2>&1 || \
		 (apt-get update >/dev/null 2>&1 && apt-get install -y iperf3 >/dev/null 2>&1)); } || \
		echo "# iperf3 unavailable: peer figures will be skipped"

bench: bench-deps ## benchmarks: one 'bench=<name> value=<n> unit=<u>' line per figure
	@$(CARGO) bench --quiet 2>/dev/null | grep -E '^(bench=|# )'

clean: ## remove build outputs
	$(CARGO) clean
