# trialsync: a thin Makefile over CMake.
#   make demo    install what is missing, build, run a local cluster story
#   make test    install what is missing, build, run every suite (and again under ASan+UBSan)
#   make bench   benchmarks that print figures (docs/performance.md)
#   make build   just build (build/)
#   make install install under $(DESTDIR)$(PREFIX) (PREFIX=/usr/local)
#   make package the Debian package (.deb) in build/, with CPack
MAKEFLAGS  += --no-print-directory
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
DESTDIR    ?=

# Debian 12 packages the build, the tests and the demo need.  Every command a
# suite calls is checked with need_cmd COMMAND PACKAGE, and the deps suite
# (tests/check_deps.sh) fails when such a package is missing from this list.
DEPS = gcc make cmake pkg-config libuv1-dev librocksdb-dev libprotobuf-c-dev \
       protobuf-c-compiler libssl-dev openssl libcunit1-dev libhttp-parser-dev \
       libjansson-dev libinih-dev libsystemd-dev dpkg dpkg-dev libfaketime faketime procps iproute2 iptables \
       coreutils util-linux bsdutils perl-base systemd curl jq chromium stress-ng strace \
       libxml2-utils python3-jsonschema python3 python3-minimal man-db groff-base file

.PHONY: all deps print-deps build build-asan install package test test-fast test-loaded demo bench soak clean

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

build-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTS_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# The sanitizer pass runs first, the plain build last, so the output ends with
# CTest's summary of the release build.
test: deps build build-asan
	@echo "== every suite under AddressSanitizer + UndefinedBehaviorSanitizer =="
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j2 --timeout 900
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

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
