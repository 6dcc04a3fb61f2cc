#!/usr/bin/env bash
# `sluice bench NAME --plot FILE.svg` (bench/plot.c): a quick bench core run
# writes an SVG that python3's XML parser reads, with the title, every
# variant of the run (loop, engine), a ratio label against the loop and the
# thread groups; the table on stdout is the one printed without --plot
# (--plot is taken out of the bench's own options, --plot=FILE too). A path
# that cannot be opened is one line "sluice bench core: --plot FILE: <why>"
# and exit 1, before the bench runs (nothing on stdout); --plot without a
# file is a usage error (exit 2); --help makes no plot. Never asserts on
# speed.
#
# Run by ctest as: bash bench_plot.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_plot: $*" >&2
  exit 1
}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
parses() { "$py" -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' "$1"; }

"$bin" bench core --events 200000 --repeat 1 --plot "$tmp/core.svg" > "$tmp/out" 2> "$tmp/err" ||
  fail "exit $?: $(cat "$tmp/err")"
[ -s "$tmp/err" ] && fail "stderr: $(cat "$tmp/err")"
grep -q "^  loop  " "$tmp/out" || fail "no table: $(cat "$tmp/out")"
parses "$tmp/core.svg" || fail "the SVG does not parse: $(head -c 2000 "$tmp/core.svg")"
for want in ">sluice bench core</text>" ">loop</text>" ">engine</text>" ">1 thread</text>" \
  ">2 threads</text>" "baseline" "events/s" " CPU"; do
  grep -qF -- "$want" "$tmp/core.svg" || fail "no '$want' in the SVG"
done
grep -q $'\xc3\x97''[0-9][0-9]*[.][0-9][0-9]<' "$tmp/core.svg" || fail "no ratio label in the SVG"

# --plot=FILE, with --csv: the CSV is unchanged by the plot
"$bin" bench core --events 200000 --repeat 1 --csv --plot="$tmp/csv.svg" > "$tmp/csv" 2> "$tmp/err" ||
  fail "--plot=: exit $?: $(cat "$tmp/err")"
[ "$(wc -l < "$tmp/csv")" = 4 ] || fail "--csv with --plot: $(cat "$tmp/csv")"
parses "$tmp/csv.svg" || fail "--plot=FILE: the SVG does not parse"

# a bad path: one line, exit 1, before the bench runs
rc=0
"$bin" bench core --events 100000000 --plot "$tmp/no/such/dir/x.svg" > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 1 ] || fail "bad path: exit $rc"
[ "$(cat "$tmp/err")" = "sluice bench core: --plot $tmp/no/such/dir/x.svg: No such file or directory" ] ||
  fail "bad path: $(cat "$tmp/err")"
[ -s "$tmp/out" ] && fail "bad path: the bench ran: $(cat "$tmp/out")"

# --plot without a file: a usage error
for args in "--plot" "--plot=" "--plot --csv"; do
  rc=0
  # shellcheck disable=SC2086
  "$bin" bench core --events 1000 $args > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "^sluice bench core: --plot" "$tmp/err" ||
    fail "$args: exit $rc: $(cat "$tmp/err")"
done

# --help: the usage, no plot
"$bin" bench core --help --plot "$tmp/help.svg" > "$tmp/out" || fail "--help: exit $?"
grep -q "^usage: sluice bench core" "$tmp/out" || fail "--help: $(cat "$tmp/out")"
[ -e "$tmp/help.svg" ] && fail "--help made a plot"
"$bin" bench --help | grep -q -- "--plot FILE.svg" || fail "sluice bench --help does not name --plot"
exit 0
