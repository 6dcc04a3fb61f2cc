#!/usr/bin/env bash
# The shared library exports exactly the public API: every symbol in
# `nm -D libsluice.so` is declared in include/sluice/ with SL_API, and every
# SL_API declaration is exported. Internals (sli_, slb_) and test switches
# (fault injection) must not appear.
# Run by ctest as: bash abi.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$2
build=$3
if grep -q '^SLUICE_SANITIZE:STRING=.\+' "$build/CMakeCache.txt"; then
    echo "sanitizer build: the ABI is checked in the plain build only (the runtime adds symbols)"
    exit 0
fi
so=$(find "$build" -maxdepth 1 -name 'libsluice.so.*.*.*' -type f | head -1)
[ -n "$so" ] || { echo "no libsluice.so under $build" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported"
# names declared with SL_API (the declaration may wrap onto the next lines)
cat "$src"/include/sluice/*.h | awk '/^SL_API/ {d = 1} d {print} /;/ {d = 0}' | tr '\n' ' ' |
    grep -oE 'SL_API[^;]*;' | grep -oE '\b(sl_[A-Za-z0-9_]+)[[:space:]]*(\(|;|\[)' |
    sed -E 's/[[:space:]]*(\(|;|\[)$//' | sort -u > "$tmp/declared"
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
if [ -n "$extra" ]; then
    echo "exported but not declared with SL_API in include/sluice/:" >&2
    echo "$extra" | head -20 >&2
    exit 1
fi
if [ -n "$missing" ]; then
    echo "declared with SL_API but not exported (not defined?):" >&2
    echo "$missing" | head -20 >&2
    exit 1
fi
# a public declaration without SL_API would be silently hidden
bare=$(grep -nE '^(extern [^"]|(const |unsigned |struct )*[A-Za-z_][A-Za-z0-9_]* \**sl_[A-Za-z0-9_]+\()' \
    "$src"/include/sluice/*.h || true)
if [ -n "$bare" ]; then
    echo "public declarations without SL_API:" >&2
    echo "$bare" | head -20 >&2
    exit 1
fi
n=$(wc -l < "$tmp/exported")
[ "$n" -gt 100 ] || { echo "only $n symbols exported: the check read nothing" >&2; exit 1; }
echo "abi: $n symbols exported, all of them public"
