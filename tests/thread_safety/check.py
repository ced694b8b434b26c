#!/usr/bin/env python3
"""make test-thread-safety: clang's thread-safety analysis over every source file of src/, then the negative
test (unguarded.cc), which must be rejected.

Each file is checked with the flags CMake compiles it with (compile_commands.json of the build directory),
so the include paths and definitions are never written twice. GCC builds Cairn; clang only checks here
(-fsyntax-only), so the annotations of base/mutex.h cost nothing in the build.
Usage: check.py BUILD_DIR (from the repository root). CLANGXX overrides the compiler (default clang++-14).
"""
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

CHECK = ["-fsyntax-only", "-Wthread-safety"]


def clang_args(entry, clang):
    """The entry's compile command for clang: same flags, no compiler launcher, no output, syntax only."""
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out = [clang]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a == entry["file"] or os.path.basename(a) in ("c++", "g++", "gcc"):
            continue
        out.append(a)
    if os.path.basename(args[0]) == "ccache" and len(out) > 1 and os.path.basename(out[1]) in ("c++", "g++"):
        del out[1]
    return out + CHECK


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check.py BUILD_DIR")
    clang = os.environ.get("CLANGXX", "clang++-14")
    if not shutil.which(clang):
        sys.exit(f"test-thread-safety: {clang} not found (make deps installs clang-14)")
    db_path = os.path.join(sys.argv[1], "compile_commands.json")
    if not os.path.exists(db_path):
        sys.exit(f"test-thread-safety: {db_path} is missing (configure the build first: make build)")
    root = os.getcwd()
    entries = [e for e in json.load(open(db_path))
               if os.path.relpath(e["file"], root).startswith("src" + os.sep) and e["file"].endswith(".cc")]
    if not entries:
        sys.exit(f"test-thread-safety: {db_path} lists no file of src/")
    start = time.time()

    def check(entry):
        r = subprocess.run(clang_args(entry, clang) + ["-Werror=thread-safety", entry["file"]],
                           cwd=entry["directory"], capture_output=True, text=True)
        return entry["file"], r.returncode, r.stdout + r.stderr

    failed = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for path, code, text in pool.map(check, entries):
            if code != 0:
                failed = True
                print(f"== {os.path.relpath(path, root)}\n{text}", end="")
    if failed:
        sys.exit("test-thread-safety: FAILED: the files above break the lock discipline (or do not compile with clang)")
    print(f"test-thread-safety: {len(entries)} files clean ({time.time() - start:.0f} s)")

    # The check must be able to fail: each marked line of unguarded.cc must be reported (clang -verify),
    # compiled with the flags of a file of src/base.
    base = next(e for e in entries if os.sep + "base" + os.sep in e["file"])
    r = subprocess.run(clang_args(base, clang) + ["-Xclang", "-verify", os.path.join(root, "tests/thread_safety/unguarded.cc")],
                       cwd=base["directory"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout + r.stderr, end="")
        sys.exit("test-thread-safety: FAILED: clang did not report the deliberate violations of "
                 "tests/thread_safety/unguarded.cc\n  (are the macros of src/base/thread_annotations.h expanding "
                 "to nothing under clang?)")
    print("test-thread-safety: the negative test is rejected as it should be")


if __name__ == "__main__":
    main()
