# Cairn: the two commands of the quick start are `make run` and `make test`.
# Every target installs the Debian packages it needs first, so a fresh Debian 12 machine works.
SHELL := /bin/bash
BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
TSAN_DIR  ?= build-tsan
TSAN_TESTS := cairn_conformance_tests cairn_pg_tests cairn_store_tests cairn_subscribe_tests cairn_log_tests cairn_index_tests cairn_project_tests cairn_ledger_tests cairn_privacy_tests
JOBS      ?= $(shell nproc)
DATA      ?= ./data
CAIRN     := $(BUILD_DIR)/src/cli/cairn
CAIRND    := $(BUILD_DIR)/src/server/cairnd

DEB_PACKAGES := g++ cmake ninja-build pkg-config libssl-dev libsimdjson-dev nlohmann-json3-dev \
                libfmt-dev libcli11-dev libxxhash-dev libboost-dev libgtest-dev libgmock-dev curl openssl \
                libluajit2-5.1-dev libabsl-dev libsodium-dev libpq-dev postgresql-15 postgresql-client-15 \
                nodejs prometheus clang-14
# The contract test's npm tools (tests/contract), pinned by its package-lock.json.
CONTRACT_DIR := tests/contract

.PHONY: all deps build build-asan run demo-cli test test-fast test-thread-safety test-asan test-tsan bench crash-long clean

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# npm comes with NodeSource's nodejs; only Debian's own nodejs needs Debian's npm package beside it.
	@command -v npm >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends npm; }
	@# npm ci installs exactly the lockfile (from npm's cache when it has the packages); again only when it changed.
	@if [ ! -f $(CONTRACT_DIR)/node_modules/.package-lock.json ] || \
	    [ $(CONTRACT_DIR)/package-lock.json -nt $(CONTRACT_DIR)/node_modules/.package-lock.json ]; then \
	  echo "installing the contract test's npm tools (npm ci in $(CONTRACT_DIR))"; \
	  (cd $(CONTRACT_DIR) && npm ci --prefer-offline --no-audit --no-fund --loglevel=error); \
	fi

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

$(ASAN_DIR)/build.ninja: | deps
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCAIRN_SANITIZE=ON

build-asan: deps $(ASAN_DIR)/build.ninja
	cmake --build $(ASAN_DIR) -j $(JOBS)

# The main job: cairnd serving ./data, with a small demo workload loaded; Ctrl-C stops it cleanly.
run: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target cairnd cairn_cli
	@CAIRN="$(CAIRN)" bash examples/run-server.sh "$(CAIRND)" "$(DATA)"

# The same demo offline, with the CLI on the embedded store (no server).
demo-cli: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target cairn_cli
	@bash examples/demo.sh "$(CAIRN)" "$(DATA)"

test-fast: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

# The lock discipline, checked at compile time: clang's -Wthread-safety over every file of src/ (the
# CAIRN_GUARDED_BY / CAIRN_REQUIRES annotations of base/mutex.h), and a negative test it must reject.
test-thread-safety: deps $(BUILD_DIR)/build.ninja
	python3 tests/thread_safety/check.py $(BUILD_DIR)

# The concurrent parts (writer pipeline, subscriptions, index flusher) under ThreadSanitizer.
$(TSAN_DIR)/build.ninja: | deps
	cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread

test-tsan: deps $(TSAN_DIR)/build.ninja
	cmake --build $(TSAN_DIR) -j $(JOBS) --target $(TSAN_TESTS)
	@set -e; for t in $(TSAN_TESTS); do \
	  bin=$$(find $(TSAN_DIR)/tests -name $$t -type f | head -1); \
	  echo "== $$t (ThreadSanitizer)"; TSAN_OPTIONS=halt_on_error=1 $$bin --gtest_brief=1; \
	done

# The whole suite: the lock annotations first (no build needed), then the same suite under ASan+UBSan,
# the concurrent parts under TSan, and the optimized build. The optimized suite runs last so that its CTest
# summary closes the output.
test: test-thread-safety test-asan test-tsan test-fast

# Long crash loop for manual runs (kills the writer many more times than `make test` does).
crash-long: build
	CAIRN_CRASH_ITERATIONS=1000 $(BUILD_DIR)/tests/cairn_crash_tests --gtest_filter='CrashLoop.*'

bench: build
	bash bench/run.sh "$(BUILD_DIR)"
	bash bench/run_http.sh "$(BUILD_DIR)"

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR)
