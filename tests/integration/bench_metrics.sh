#!/usr/bin/env bash
# `sluice bench metrics` (bench/bench_metrics.c): a short run prints its
# table (core and scraped, 1 and 2 threads), the overhead lines and the
# scrape count with at least one answered scrape; --csv prints the
# convention's header and four rows. Never asserts on speed.
#
# Run by ctest as: bash bench_metrics.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_metrics: $*" >&2
  exit 1
}
"$bin" bench metrics --events 10000000 --repeat 2 > "$tmp/out" 2> "$tmp/err" ||
  fail "exit $?: $(cat "$tmp/err")"
for want in "^  core  *1 " "^  scraped  *1 " "^  core  *2 " "^  scraped  *2 " \
  "overhead of scraping, 1 thread" "overhead of scraping, 2 threads"; do
  grep -q "$want" "$tmp/out" || fail "no '$want' in: $(cat "$tmp/out")"
done
grep -Eq 'scrapes: [1-9][0-9]* answered, 0 failed' "$tmp/out" || fail "scrapes: $(cat "$tmp/out")"
grep -q "one scrape.s round trip: [0-9]* us" "$tmp/out" || fail "no round trip: $(cat "$tmp/out")"
"$bin" bench metrics --events 1000000 --repeat 1 --csv > "$tmp/csv" 2> "$tmp/err" ||
  fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -1 "$tmp/csv")"
[ "$(grep -c '^metrics,' "$tmp/csv")" = 4 ] || fail "--csv rows: $(cat "$tmp/csv")"
echo "bench_metrics: ok"
