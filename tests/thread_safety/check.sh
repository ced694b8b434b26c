#!/usr/bin/env bash
# make test-thread-safety: clang's thread-safety analysis over every source file of src/ (two at a time),
# then the negative test (unguarded.cc), which must be rejected. GCC builds Cairn; clang only checks here
# (-fsyntax-only), so the annotations of base/mutex.h cost nothing in the build.
# Usage: tests/thread_safety/check.sh (from the repository root). CLANGXX overrides the compiler.
set -uo pipefail
cd "$(dirname "$0")/../.."
export CLANGXX="${CLANGXX:-clang++-14}"
# The project's include paths and definitions (src/CMakeLists.txt); the version string is only a placeholder.
export TSA_FLAGS="-std=c++20 -fsyntax-only -Wthread-safety -Iinclude -Isrc -isystem /usr/include/postgresql
  -isystem /usr/include/luajit-2.1 -DFMT_SHARED -DSIMDJSON_THREADS_ENABLED=1 -DCAIRN_VERSION=\"0\""
command -v "$CLANGXX" >/dev/null || { echo "test-thread-safety: $CLANGXX not found (make deps installs clang-14)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

check_one() {
  local f=$1 log
  log="$out/$(echo "$f" | tr / _).log"
  # shellcheck disable=SC2086
  if ! $CLANGXX $TSA_FLAGS -Werror=thread-safety "$f" >"$log" 2>&1; then
    echo "== $f"
    cat "$log"
    touch "$out/failed"
  fi
}
export -f check_one
export out

start=$SECONDS
find src -name '*.cc' | sort | xargs -P2 -n1 bash -c 'check_one "$0"'
if [ -e "$out/failed" ]; then
  echo "test-thread-safety: FAILED: the files above break the lock discipline (or do not compile with clang)"
  exit 1
fi
echo "test-thread-safety: $(find src -name '*.cc' | wc -l) files clean ($((SECONDS - start)) s)"

# The check must be able to fail: each marked line of unguarded.cc must be reported (clang -verify).
# shellcheck disable=SC2086
if ! $CLANGXX $TSA_FLAGS -Xclang -verify tests/thread_safety/unguarded.cc >"$out/negative.log" 2>&1; then
  cat "$out/negative.log"
  echo "test-thread-safety: FAILED: clang did not report the deliberate violations of tests/thread_safety/unguarded.cc"
  echo "  (are the macros of src/base/thread_annotations.h expanding to nothing under clang?)"
  exit 1
fi
echo "test-thread-safety: the negative test is rejected as it should be"
