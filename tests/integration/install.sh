#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds examples/hello.c
# against it twice, as a user would: with pkg-config and with find_package.
# Both programs must run and print the expected counts.
set -euo pipefail
bin=$1 src=$2 build=$3
trap 'echo "install test: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
if grep -q '^SLUICE_SANITIZE:STRING=.\+' "$build/CMakeCache.txt"; then
  echo "sanitizer build: the install test runs in the plain build only"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdirs=("$tmp"/prefix/lib*/)
libdir=${libdirs[0]}

# 1. pkg-config, shared library
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Werror -o "$tmp/hello-pc" "$src/examples/hello.c" $(pkg-config --cflags --libs sluice)
LD_LIBRARY_PATH="$libdir" "$tmp/hello-pc" > "$tmp/out1"
grep -q "numbers ending in 0: 100000" "$tmp/out1"
[ "$(wc -l < "$tmp/out1")" -eq 5 ]
# jemalloc really is the allocator of the user's program too
# (captured first: `ldd | grep -q` would fail under pipefail when grep exits early)
linked=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/hello-pc")
[[ $linked == *jemalloc* ]]

# 2. find_package(sluice)
mkdir -p "$tmp/proj"
cp "$src/examples/hello.c" "$tmp/proj/"
cat > "$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(hello C)
find_package(sluice REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE sluice::sluice)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/proj/build/hello" > "$tmp/out2"
cmp "$tmp/out1" <(sort "$tmp/out2" | sort) >/dev/null || diff <(sort "$tmp/out1") <(sort "$tmp/out2")
echo "install test passed"
