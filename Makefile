# btest-rs: every task goes through here. `make help` lists them.

CARGO ?= cargo
PORT ?= 2000
DEMO_SECS ?= 5
DEMO_SVG ?= $(TARGET_DIR)/demo.svg
# Honour CARGO_TARGET_DIR so every path below follows cargo.
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/btest

# Install layout (GNU conventions): `make install PREFIX=/usr DESTDIR=/tmp/pkgroot`.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
# Shell completion directories as bash-completion, zsh (Debian's vendor path) and fish read them.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALL ?= install

# Static, stripped binaries for routers. Linkers are chosen here, not in a committed
# .cargo/config.toml, so a machine without the cross gcc still builds and tests natively.
# The musl targets ship self-contained crt objects and libc, so a glibc cross gcc is only the
# linker driver. Override on the command line if yours are named differently.
X86 := x86_64-unknown-linux-musl
A64 := aarch64-unknown-linux-musl
ARM := armv7-unknown-linux-musleabihf
FREEBSD := x86_64-unknown-freebsd
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER ?= aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER ?= arm-linux-gnueabihf-gcc
DIST ?= $(TARGET_DIR)/dist

# release-small only: a non-PIE executable (drops ~20 KB of relocations; the image loses ASLR,
# stack/heap/mmap keep theirs) and identical-code folding with the rust-lld every rustup
# toolchain ships (~10 KB), when it is there.
# A literal comma for use inside $(if ...).
, := ,
HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RUST_GCC_LD := $(shell rustc --print sysroot 2>/dev/null)/lib/rustlib/$(HOST)/bin/gcc-ld
ICF_RUSTFLAGS := $(if $(wildcard $(RUST_GCC_LD)/ld.lld),-C link-arg=-B$(RUST_GCC_LD) -C link-arg=-fuse-ld=lld -C link-arg=-Wl$(,)--icf=all)
SMALL_RUSTFLAGS := -C relocation-model=static $(ICF_RUSTFLAGS)

# release-small rebuilds std for size with panics that abort at once, without unwinding
# tables, messages or the backtrace symbolizer: 790 552 B -> 428 160 B on x86_64 musl. Those
# are unstable cargo/rustc options, enabled on the stable toolchain with RUSTC_BOOTSTRAP=1
# (only for this build; needs `rustup component add rust-src`). Without rust-src the plain
# panic=abort build is made and will be over its budget.
RUST_SRC := $(wildcard $(shell rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library/std)
SMALL_BUILD_STD := $(if $(RUST_SRC),-Z build-std=std$(,)panic_abort)
SMALL_PANIC := $(if $(RUST_SRC),-Zunstable-options -Cpanic=immediate-abort)

# Size budgets in bytes (issue 8): btest x86_64 musl <= 1 MiB, release-small <= 700 KiB.
BUDGET_X86 ?= 1048576
BUDGET_X86_SMALL ?= 716800

.PHONY: all build test lint fmt-check clippy unit demo bench bench-deps fuzz clean help \
	static static-x86_64 static-aarch64 static-armv7 static-check static-smoke size \
	test-aarch64 check-freebsd check-contrib install install-contrib uninstall targets \
	deb deb-check ipk

all: build

build: ## release build of the btest binary
	$(CARGO) build --release

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# A test that cannot run here (missing tool, not root, no namespaces, under emulation) says
# `skipped: <why>` through tests/common's skip(), which also appends the line to SKIP_LOG (the
# test harness hides a passing test's stderr); they are listed and counted after the run. The
# exit status is cargo's, so a failure is never hidden.
SKIP_LOG := $(TARGET_DIR)/skipped-tests.log

test: lint check-freebsd check-contrib ## format check, clippy -D warnings, FreeBSD check, every test; then `skipped: N`
	@mkdir -p $(TARGET_DIR); rm -f $(SKIP_LOG)
	BTEST_SKIP_LOG=$(abspath $(SKIP_LOG)) $(CARGO) test --all-features; rc=$$?; \
	[ ! -s $(SKIP_LOG) ] || sed 's/^/# /' $(SKIP_LOG); \
	echo "skipped: $$(cat $(SKIP_LOG) 2>/dev/null | wc -l)"; exit $$rc

lint: fmt-check clippy ## format check and clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets --all-features -- -D warnings

# rustup targets on demand; a machine without rustup must have them already.
define need_target
	@rustup target list --installed 2>/dev/null | grep -qx '$(1)' || rustup target add '$(1)'
endef

check-freebsd: ## cargo check for x86_64-unknown-freebsd, all features (its cfg(target_os) paths)
	$(call need_target,$(FREEBSD))
	$(CARGO) check --quiet --target $(FREEBSD) --all-features --all-targets

check-contrib: ## sh -n on init scripts; systemd-analyze verify on the units when it works here
	@for f in contrib/openwrt/btest.init contrib/freebsd/btest contrib/deb/*.sh contrib/openwrt/*.sh; do sh -n $$f || exit 1; done
	@if command -v systemd-analyze >/dev/null 2>&1; then \
		tmp=$$(mktemp -d); mkdir -p $$tmp/usr/local/bin; \
		for u in contrib/systemd/*.service; do \
			sed "s#/usr/local/bin/#$$tmp/usr/local/bin/#" $$u > $$tmp/$$(basename $$u); \
		done; \
		printf '#!/bin/sh\n' > $$tmp/usr/local/bin/btest; cp $$tmp/usr/local/bin/btest $$tmp/usr/local/bin/btest-server-pro; \
		chmod +x $$tmp/usr/local/bin/*; \
		out=$$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no $$tmp/*.service 2>&1); rc=$$?; \
		rm -rf $$tmp; \
		if [ $$rc -ne 0 ] || [ -n "$$out" ]; then echo "$$out"; \
			if echo "$$out" | grep -qiE 'btest.*(unknown|invalid|failed to parse|ignoring)'; then exit 1; fi; \
			echo "# systemd-analyze verify could not judge the units here (above); not a unit error"; \
		else echo "# systemd-analyze verify: units clean"; fi; \
	else echo "# systemd-analyze not found: units not verified"; fi

demo: build ## a server and a client on 127.0.0.1, DEMO_SECS each way, then both ways as an SVG
	@$(BIN) -s --listen 127.0.0.1 -P $(PORT) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	sleep 0.5; \
	echo "== client receives (server transmits) for $(DEMO_SECS) s"; \
	$(BIN) -c 127.0.0.1 -P $(PORT) -r -d $(DEMO_SECS) || exit $$?; \
	echo "== client transmits (server receives) for $(DEMO_SECS) s"; \
	$(BIN) -c 127.0.0.1 -P $(PORT) -t -d $(DEMO_SECS) || exit $$?; \
	echo "== both directions for $(DEMO_SECS) s, drawn with --svg"; \
	$(BIN) -c 127.0.0.1 -P $(PORT) -t -r -q -d $(DEMO_SECS) --svg $(DEMO_SVG) || exit $$?; \
	echo "picture: $(abspath $(DEMO_SVG))"

FUZZ_SECS ?= 60
fuzz: ## cargo-fuzz every target for FUZZ_SECS each (stable via RUSTC_BOOTSTRAP; not part of test)
	fuzz/run.sh $(FUZZ_SECS)

bench-deps: ## install iperf3 (the peer measured beside us) when missing and root
	@command -v iperf3 >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		(apt-get install -y iperf3 >/dev/null 2>&1 || \
		 (apt-get update >/dev/null 2>&1 && apt-get install -y iperf3 >/dev/null 2>&1)); } || \
		echo "# iperf3 unavailable: peer figures will be skipped"

bench: bench-deps ## benchmarks: one 'bench=<name> value=<n> unit=<u>' line per figure
	@$(CARGO) bench --quiet --all-features 2>/dev/null | grep -E '^(bench=|# )'

# ---- static binaries -------------------------------------------------------------------------

static: static-x86_64 static-aarch64 static-armv7 ## stripped static musl binaries into $(DIST)

static-x86_64:
	$(call need_target,$(X86))
	RUSTFLAGS="$(ICF_RUSTFLAGS)" $(CARGO) build --release --bin btest --target $(X86)
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(SMALL_RUSTFLAGS) $(SMALL_PANIC)" \
		$(CARGO) build --profile release-small --bin btest --target $(X86) $(SMALL_BUILD_STD)
	@mkdir -p $(DIST)
	cp $(TARGET_DIR)/$(X86)/release/btest $(DIST)/btest-x86_64-linux-musl
	cp $(TARGET_DIR)/$(X86)/release-small/btest $(DIST)/btest-x86_64-linux-musl-small

static-aarch64:
	$(call need_target,$(A64))
	$(CARGO) build --release --bin btest --target $(A64)
	@mkdir -p $(DIST)
	cp $(TARGET_DIR)/$(A64)/release/btest $(DIST)/btest-aarch64-linux-musl

# armv7 only when both its std and its linker are at hand (rustup may not serve its std).
static-armv7:
	@if command -v $(CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER) >/dev/null 2>&1 && \
	   { rustup target list --installed 2>/dev/null | grep -qx '$(ARM)' || rustup target add '$(ARM)' >/dev/null 2>&1; }; then \
		$(CARGO) build --release --bin btest --target $(ARM) && mkdir -p $(DIST) && \
		cp $(TARGET_DIR)/$(ARM)/release/btest $(DIST)/btest-armv7-linux-musleabihf; \
	else echo "# armv7: std for $(ARM) or $(CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER) not available, skipped"; fi

static-check: static ## file(1) and ldd(1) must call every static binary static
	@for b in $(DIST)/btest-*; do \
		f=$$(file -b $$b); echo "$$b: $$f"; \
		echo "$$f" | grep -qE 'statically linked|static-pie linked' || { echo "FAIL: $$b is not static"; exit 1; }; \
		echo "$$f" | grep -q 'stripped' && ! echo "$$f" | grep -q 'not stripped' || { echo "FAIL: $$b is not stripped"; exit 1; }; \
	done
	@l=$$(ldd $(DIST)/btest-x86_64-linux-musl 2>&1); echo "ldd: $$l"; \
		echo "$$l" | grep -qE 'not a dynamic executable|statically linked' || { echo "FAIL: ldd sees a dynamic executable"; exit 1; }

SMOKE_PORT ?= 2987
static-smoke: static-check ## each static binary as server and client, a 2 s test both ways (aarch64 under qemu)
	@for b in $(DIST)/btest-x86_64-linux-musl $(DIST)/btest-x86_64-linux-musl-small; do \
		echo "== $$b"; \
		$$b -s --listen 127.0.0.1 -P $(SMOKE_PORT) & pid=$$!; \
		sleep 0.5; \
		$$b -c 127.0.0.1 -P $(SMOKE_PORT) -t -r -d 2; rc=$$?; \
		kill $$pid; wait $$pid 2>/dev/null; \
		[ $$rc -eq 0 ] || { echo "FAIL: $$b client exit $$rc"; exit 1; }; \
	done
	@if command -v qemu-aarch64 >/dev/null 2>&1; then \
		b=$(DIST)/btest-aarch64-linux-musl; echo "== $$b under qemu-aarch64 (server: x86_64)"; \
		$(DIST)/btest-x86_64-linux-musl -s --listen 127.0.0.1 -P $(SMOKE_PORT) & pid=$$!; \
		sleep 0.5; \
		qemu-aarch64 $$b -c 127.0.0.1 -P $(SMOKE_PORT) -r -d 2; rc=$$?; \
		kill $$pid; wait $$pid 2>/dev/null; \
		[ $$rc -eq 0 ] || { echo "FAIL: $$b client exit $$rc"; exit 1; }; \
	fi

size: static ## binary sizes as bench lines, largest contributors; fails over budget
	@sz() { [ -f "$$1" ] && stat -c %s "$$1"; }; fail=0; \
	x=$$(sz $(DIST)/btest-x86_64-linux-musl); s=$$(sz $(DIST)/btest-x86_64-linux-musl-small); \
	a=$$(sz $(DIST)/btest-aarch64-linux-musl); v=$$(sz $(DIST)/btest-armv7-linux-musleabihf); \
	echo "bench=size_x86_64_musl value=$$x unit=B"; \
	echo "bench=size_x86_64_musl_small value=$$s unit=B"; \
	echo "bench=size_aarch64_musl value=$$a unit=B"; \
	[ -n "$$v" ] && echo "bench=size_armv7_musleabihf value=$$v unit=B"; \
	n=$$($(CARGO) tree -e normal --prefix none | sed 's/ (\*)$$//' | sort -u | wc -l); \
	echo "bench=deps_crates value=$$n unit=crates"; \
	[ $$n -le 12 ] || echo "# deps_crates: goal is <= 12 (counts the crate itself and build-time proc-macro crates)"; \
	if $(CARGO) bloat --version >/dev/null 2>&1; then \
		echo "# largest contributors, x86_64 musl release (cargo bloat, unstripped copy):"; \
		CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$(TARGET_DIR)/bloat \
			$(CARGO) bloat --release --bin btest --target $(X86) --crates -n 12 2>/dev/null | sed 's/^/# /'; \
		CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$(TARGET_DIR)/bloat \
			$(CARGO) bloat --release --bin btest --target $(X86) -n 15 2>/dev/null | sed 's/^/# /'; \
	else \
		echo "# largest contributors by section (install cargo-bloat for crates/functions: cargo install cargo-bloat):"; \
		size -A $(DIST)/btest-x86_64-linux-musl 2>/dev/null | sort -k2 -n -r | sed -n '1,8s/^/# /p'; \
	fi; \
	[ $$x -le $(BUDGET_X86) ] || { echo "FAIL: btest x86_64 musl $$x B > budget $(BUDGET_X86) B"; fail=1; }; \
	[ $$s -le $(BUDGET_X86_SMALL) ] || { echo "FAIL: btest x86_64 musl release-small $$s B > budget $(BUDGET_X86_SMALL) B"; fail=1; }; \
	exit $$fail

# ---- aarch64 under qemu-user ------------------------------------------------------------------

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER ?= qemu-aarch64
BINFMT := /proc/sys/fs/binfmt_misc
# The end-to-end tests spawn the aarch64 btest from the aarch64 test binary; that exec needs a
# binfmt_misc handler for aarch64 ELF. BTEST_UNDER_EMULATION tells tests that measure the
# server's memory that what they would read is qemu's, not ours. Without one (not root, no binfmt_misc) only the tests
# that spawn nothing run.
test-aarch64: ## the test suite built for aarch64 musl, run under qemu-aarch64
	$(call need_target,$(A64))
	@command -v qemu-aarch64 >/dev/null || { echo "qemu-aarch64 not found (Debian: qemu-user)"; exit 1; }
	@if [ ! -e $(BINFMT)/qemu-aarch64 ] && [ "$$(id -u)" = 0 ]; then \
		[ -e $(BINFMT)/register ] || mount -t binfmt_misc binfmt_misc $(BINFMT) 2>/dev/null; \
		[ -e $(BINFMT)/register ] && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] && \
			grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > $(BINFMT)/register 2>/dev/null; \
	fi; true
	@if [ -e $(BINFMT)/qemu-aarch64 ]; then \
		echo "# binfmt_misc handles aarch64: full suite"; \
		BTEST_UNDER_EMULATION=1 $(CARGO) test --target $(A64); \
	else \
		echo "# no binfmt_misc handler for aarch64: unit and pure tests only (nothing spawned)"; \
		$(CARGO) test --target $(A64) --lib --test vectors --test scanner --test ecsrp5; \
	fi

# ---- install ---------------------------------------------------------------------------------

install: ## install btest, its man page and shell completions under $(DESTDIR)$(PREFIX) (build first: make build)
	@[ -x $(BIN) ] || { echo "$(BIN) missing: run 'make build' first, or pass BIN=target/dist/btest-... for a static one"; exit 1; }
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/btest
	$(INSTALL) -m 0644 docs/btest.1 $(DESTDIR)$(MANDIR)/man1/btest.1
	$(INSTALL) -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(INSTALL) -m 0644 contrib/completions/btest.bash $(DESTDIR)$(BASHCOMPDIR)/btest
	$(INSTALL) -m 0644 contrib/completions/_btest $(DESTDIR)$(ZSHCOMPDIR)/_btest
	$(INSTALL) -m 0644 contrib/completions/btest.fish $(DESTDIR)$(FISHCOMPDIR)/btest.fish
	@if [ -x $(TARGET_DIR)/release/btest-server-pro ]; then \
		$(INSTALL) -m 0755 $(TARGET_DIR)/release/btest-server-pro $(DESTDIR)$(BINDIR)/btest-server-pro; \
		[ ! -f docs/btest-server-pro.1 ] || $(INSTALL) -m 0644 docs/btest-server-pro.1 $(DESTDIR)$(MANDIR)/man1/; \
	fi

install-contrib: ## the systemd units into $(DESTDIR)$(PREFIX)/lib/systemd/system
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	$(INSTALL) -m 0644 contrib/systemd/*.service $(DESTDIR)$(PREFIX)/lib/systemd/system/

uninstall: ## remove what install put there
	rm -f $(DESTDIR)$(BINDIR)/btest $(DESTDIR)$(BINDIR)/btest-server-pro \
		$(DESTDIR)$(MANDIR)/man1/btest.1 $(DESTDIR)$(MANDIR)/man1/btest-server-pro.1 \
		$(DESTDIR)$(BASHCOMPDIR)/btest $(DESTDIR)$(ZSHCOMPDIR)/_btest $(DESTDIR)$(FISHCOMPDIR)/btest.fish

# ---- packages --------------------------------------------------------------------------------

DEB_DIR ?= $(DIST)/deb
deb: ## btest_<version>_<arch>.deb into $(DEB_DIR) with dpkg-deb; PRO=1 adds btest-server-pro
	$(CARGO) build --release --bin btest
	$(if $(filter 1,$(PRO)),$(CARGO) build --release --features pro --bin btest-server-pro)
	contrib/deb/build.sh $(if $(filter 1,$(PRO)),--pro) $(TARGET_DIR)/release $(DEB_DIR)

deb-check: ## make deb PRO=1; lintian; dpkg -i, btest -V, man, a 2 s test; dpkg -r leaves nothing (root)
	$(MAKE) deb PRO=1
	contrib/deb/check.sh $(DEB_DIR)

IPK_DIR ?= $(DIST)/ipk
ipk: static-x86_64 static-aarch64 ## OpenWrt .ipk (aarch64_generic, x86_64) from the static binaries, then their layout check
	contrib/openwrt/ipk.sh $(DIST) $(IPK_DIR)
	contrib/openwrt/ipk-check.sh $(IPK_DIR)

clean: ## remove build outputs
	$(CARGO) clean
