#!/usr/bin/env bash
# ysb from a broker topic into SQLite: the generator's events as JSON lines
# (ysb --emit-json), shuffled within 100 ms of event time, produced to a
# 3-partition topic of a fresh broker directory; ysb --topic --delay 200
# --sqlite must fill the table with exactly the results of ysb --input on
# the same lines (--out), for --parallelism 1 and 3, with nothing late; a
# second run into the same table (a replay) changes nothing; a table of
# another shape is a one-line error naming the column. The table is read
# with python3's sqlite3 module. Also: the JSON lines read back by --input
# give what the generator itself gives (ad ids map to the same campaigns).
# Run by ctest as: bash ysb_sqlite.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SLUICE_DIR="$tmp/broker"
n=300000

"$bin" run ysb --emit-json --events $n > "$tmp/ev.json"
[ "$(wc -l < "$tmp/ev.json")" -eq $n ]
# The generator and its JSON lines give the same results.
"$bin" run ysb --events $n --out "$tmp/gen" 2> /dev/null
"$bin" run ysb --input "$tmp/ev.json" --out "$tmp/ref" 2> /dev/null
sort "$tmp/gen" > "$tmp/gen.s"
sort "$tmp/ref" > "$tmp/ref.s"
cmp "$tmp/gen.s" "$tmp/ref.s"
[ "$(wc -l < "$tmp/ref.s")" -ge 300 ]

# Disorder: lines shuffled within blocks of 1000 events (100 ms of event
# time at the default 10,000 events/s), deterministically; the blocks start
# 50 ms into a window, so that some straddle the 10 s window ends (with
# --delay 0 views are late there: the test of --delay has teeth).
python3 - "$tmp/ev.json" "$tmp/evs.json" << 'EOF'
import random, sys
lines = open(sys.argv[1]).readlines()
rng = random.Random(7)
out = lines[:500]
for i in range(500, len(lines), 1000):
    block = lines[i:i + 1000]
    rng.shuffle(block)
    out += block
open(sys.argv[2], "w").writelines(out)
EOF
cmp -s "$tmp/ev.json" "$tmp/evs.json" && { echo "the shuffle changed nothing" >&2; exit 1; }
"$bin" run ysb --input "$tmp/evs.json" --delay 200 --out "$tmp/ref2" 2> "$tmp/err"
sort "$tmp/ref2" > "$tmp/ref2.s"
cmp "$tmp/ref.s" "$tmp/ref2.s"
"$bin" run ysb --input "$tmp/evs.json" --delay 0 --out "$tmp/late" 2> "$tmp/err"
grep -q "late view" "$tmp/err"

"$bin" topic create ev --partitions 3
"$bin" produce ev < "$tmp/evs.json"

# campaign_id,window_start,count lines of a table, sorted; window_end must be
# window_start + 10 s.
dump() {
    python3 - "$1" "$2" << 'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute('SELECT campaign_id, window_start, window_end, count FROM "%s"' % sys.argv[2])
lines = []
for c, s, e, n in rows:
    if e != s + 10000:
        sys.exit("window_end %d for window_start %d" % (e, s))
    lines.append("%s,%d,%d" % (c, s, n))
print("\n".join(sorted(lines)))
EOF
}

for par in 1 3; do
    db="$tmp/out$par.db"
    "$bin" run ysb --topic ev --delay 200 --sqlite "$db" --table counts --parallelism $par \
        --threads 2 2> "$tmp/err"
    if ! grep -q " 0 late, 0 dead letters," "$tmp/err"; then
        cat "$tmp/err" >&2
        exit 1
    fi
    dump "$db" counts > "$tmp/sq$par"
    sort "$tmp/sq$par" > "$tmp/sq$par.s"
    cmp "$tmp/ref.s" "$tmp/sq$par.s"
    # A replay into the same table overwrites every row with itself.
    "$bin" run ysb --topic ev --delay 200 --sqlite "$db" --table counts --parallelism $par \
        2> /dev/null
    dump "$db" counts | sort > "$tmp/again"
    cmp "$tmp/ref.s" "$tmp/again"
done

# A table of another shape: one line naming the column, exit 1.
python3 -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('CREATE TABLE counts (campaign_id TEXT, window_start INTEGER, count INTEGER, PRIMARY KEY (campaign_id, window_start))')
db.commit()" "$tmp/other.db"
rc=0
"$bin" run ysb --topic ev --sqlite "$tmp/other.db" --table counts 2> "$tmp/err" || rc=$?
[ $rc -eq 1 ]
[ "$(wc -l < "$tmp/err")" -eq 1 ]
grep -q "column 3 is 'count INTEGER', the sink writes 'window_end INTEGER'" "$tmp/err"
grep -q "other.db" "$tmp/err"
echo "ysb sqlite test passed"
