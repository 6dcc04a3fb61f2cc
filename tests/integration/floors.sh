#!/usr/bin/env bash
# tests/integration/floors.sh - the application floors keep their direction:
#   cli/ -> examples/ and bench/ -> the library's public API (include/sluice/).
# examples/ (pipelines a user can read and copy) includes only system headers,
# public <sluice/...> headers and its own headers; bench/ adds its own and
# examples/ (it runs the jobs), never cli/; cli/ may use all three but no
# library internals (engine/, operators/, connectors/).
#
# Run by ctest as: bash floors.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -u
SRC=$2
fail=0
bad() { printf 'FAIL: %s\n' "$*" >&2; fail=1; }

# includes "FILE" of a source, one per line (quoted form only)
quoted() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"; }
angled() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p' "$1"; }

for f in "$SRC"/examples/*.[ch]; do
    while read -r inc; do
        [ -z "$inc" ] && continue
        [ -f "$SRC/examples/$inc" ] || bad "$f includes \"$inc\": examples/ may include only its own headers"
    done < <(quoted "$f")
    while read -r inc; do
        case $inc in
        sluice/*) [ -f "$SRC/include/$inc" ] || bad "$f includes <$inc>, not a public header" ;;
        esac
    done < <(angled "$f")
done
for f in "$SRC"/bench/*.[ch]; do
    while read -r inc; do
        case $inc in
        bench/* | examples/* | sluice/*) ;;
        *) bad "$f includes \"$inc\": bench/ may use only bench/, examples/ and the public API" ;;
        esac
    done < <(quoted "$f")
done
for f in "$SRC"/cli/*.[ch]; do
    while read -r inc; do
        case $inc in
        cli/* | bench/* | examples/* | sluice/*) ;;
        *) bad "$f includes \"$inc\": cli/ may use cli/, bench/, examples/ and the public API" ;;
        esac
    done < <(quoted "$f")
done
# ops/ (the HTTP endpoint) sits above the rest of the library: it reads the
# engine through the public API only (and engine/base/'s clock), and nothing
# below it includes it.
for f in "$SRC"/ops/*.[ch]; do
    while read -r inc; do
        case $inc in
        ops/* | sluice/* | engine/base/*) ;;
        *) bad "$f includes \"$inc\": ops/ may use ops/, engine/base/ and the public API" ;;
        esac
    done < <(quoted "$f")
done
for f in "$SRC"/engine/*.[ch] "$SRC"/engine/base/*.[ch] "$SRC"/operators/*.[ch] \
    "$SRC"/operators/*/*.[ch] "$SRC"/connectors/*.[ch] "$SRC"/connectors/*/*.[ch]; do
    quoted "$f" | grep -q '^ops/' && bad "$f includes ops/: the endpoint is above the library"
done
[ $fail -eq 0 ] && echo "floors: cli -> examples, bench -> public API; ops -> public API"
exit $fail
