# trialsync: a thin Makefile over CMake.
#   make demo    install what is missing, build, run a local cluster story
#   make test    install what is missing, build, run every suite (and again under ASan+UBSan),
#                and each libFuzzer harness briefly (build-fuzz/, clang)
#   make fuzz    each libFuzzer harness for FUZZ_SECONDS (600) over its corpus (docs/testing.md)
#   make bench   benchmarks that print figures (docs/performance.md)
#   make chaos   2 hubs, 3 sites, writers everywhere and seeded faults for CHAOS_SECONDS (300),
#                then a history checker (docs/testing.md; CHAOS_SEED= replays a seed; root)
#   make build   just build (build/)
#   make install install under $(DESTDIR)$(PREFIX) (PREFIX=/usr/local)
#   make package the Debian package (.deb) in build/, with CPack
MAKEFLAGS  += --no-print-directory
BUILD      ?= build
ASAN_BUILD ?= build-asan
# The libFuzzer harnesses build with clang alone, in a directory of their own.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= entry frame merge http write_body
# make fuzz writes what it finds here, never into tests/fuzz/corpus/.
FUZZ_SCRATCH ?= $(FUZZ_BUILD)/fuzz-long
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
DESTDIR    ?=

# Debian 12 packages the build, the tests and the demo need.  Every command a
# suite calls is checked with need_cmd COMMAND PACKAGE, and the deps suite
# (tests/check_deps.sh) fails when such a package is missing from this list.
DEPS = gcc make cmake pkg-config libuv1-dev librocksdb-dev libprotobuf-c-dev \
       protobuf-c-compiler libssl-dev openssl libcunit1-dev libhttp-parser-dev \
       libjansson-dev libinih-dev libsystemd-dev dpkg dpkg-dev apt tar libfaketime faketime procps iproute2 iptables \
       coreutils util-linux bsdutils perl-base systemd curl jq chromium stress-ng strace \
       libxml2-utils diffutils python3-jsonschema python3 python3-minimal man-db groff-base file \
       clang clang-14 libclang-rt-14-dev

.PHONY: all deps print-deps build build-asan build-fuzz install package package-check test test-fast \
        test-loaded fuzz demo bench soak chaos clean

all: build

deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run 'make deps' as root)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "all Debian packages present"; fi

print-deps:
	@echo $(DEPS)

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The prefix is given at install time, so the build directory's cache (and
# the unit's ExecStart path) follow whatever PREFIX this install names.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# Installs into a staging root under build/_CPack_Packages with prefix /usr;
# Depends comes from dpkg-shlibdeps.
package: build
	cd $(BUILD) && cpack -G DEB

# Installs the package on THIS machine, runs it, removes it: for a brand-new
# root (../shared/tools/fresh-debian.sh -- make package-check).
package-check: deps build
	bash tests/tools/package_check.sh $(BUILD) --install-here

build-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTS_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# The harnesses only (not the daemon, CLI and suites): clang builds every
# library with the fuzzer's instrumentation and ASan + UBSan.
build-fuzz:
	@command -v clang > /dev/null || { echo "clang is missing: run 'make deps'"; exit 1; }
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DTS_FUZZ=ON -DBUILD_TESTING=OFF \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_harnesses

# The sanitizer pass runs first, the plain build last, so the output ends with
# CTest's summary of the release build.  Between them each fuzz harness runs
# a few seconds over its committed corpus, one at a time.
test: deps build build-asan build-fuzz
	@echo "== every suite under AddressSanitizer + UndefinedBehaviorSanitizer =="
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j2 --timeout 900
	@echo "== each libFuzzer harness over its seed corpus =="
	ctest --test-dir $(FUZZ_BUILD) --output-on-failure -L fuzz
	@echo "== every suite, release build =="
	ctest --test-dir $(BUILD) --output-on-failure -j2 --timeout 900

# The whole suite with both cores kept busy by stress-ng: the suites check
# behaviour, not speed, so they must pass on a machine doing other work.
test-loaded: deps build build-asan
	@stress-ng --cpu $(JOBS) --timeout 7200s --quiet & spid=$$!; \
	trap 'kill $$spid 2>/dev/null' EXIT; \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j2 --timeout 1800 && \
	ctest --test-dir $(BUILD) --output-on-failure -j2 --timeout 1800

test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j2 -L unit

demo: deps build
	bash deploy/demo.sh $(BUILD)

bench: deps build
	bash bench/run.sh $(BUILD)
	bash bench/fanin.sh $(BUILD)
	bash bench/restart.sh $(BUILD)
	bash bench/import.sh $(BUILD)
	bash bench/export.sh $(BUILD)

soak: deps build
	bash tests/fault/soak.sh $(BUILD)

# The seed is printed first and last; CHAOS_SEED=N replays its draws.
CHAOS_SECONDS ?= 300
chaos: deps build
	mkdir -p $(BUILD)/chaos-tmp
	TS_BIN="$(CURDIR)/$(BUILD)" TS_SRC="$(CURDIR)" TS_TEST_TMP="$(CURDIR)/$(BUILD)/chaos-tmp" \
	  CHAOS_SECONDS=$(CHAOS_SECONDS) bash tests/fault/chaos.sh

# Each harness for FUZZ_SECONDS, one after another (FUZZ_TARGETS picks some);
# the corpus each grows in $(FUZZ_SCRATCH)/TARGET/corpus is kept between runs,
# so a second `make fuzz` resumes.  Stops at the first harness that fails.
fuzz: deps build-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  TS_FUZZ_KEEP=1 TS_SRC="$(CURDIR)" bash tests/fuzz/run.sh $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t $$t \
	    $(FUZZ_SECONDS) $(FUZZ_SCRATCH)/$$t || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
