#!/usr/bin/env bash
# --http on a job and on `sluice broker serve` (sluice/http.h, ops/): the
# Prometheus exposition passes `promtool check metrics`; every instance of
# every node is exposed; counters never go down between scrapes; a real
# Prometheus (Debian's) scrapes the job and its query API shows the series
# growing; /api/job is JSON of the documented shape; unknown paths are 404;
# a client that stalls mid-request and 200 concurrent scrapes do not disturb
# the job, whose results equal those of a run without --http; a token is
# checked on every request and a non-loopback address needs one; the broker
# shows its topics' offsets and a consumer group's lag; jobs that run several
# pipelines (--group, saga, crdt-replicas) show them all on one endpoint, each
# node as PIPELINE/NODE. Never asserts on time.
#
# Run by ctest as: bash metrics_http.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
pids=()
cleanup() {
  exec 3>&- 4>&- 5>&- # the FIFOs' writers: a job reading one ends
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "metrics_http: $*" >&2
  exit 1
}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
for tool in curl promtool prometheus; do
  command -v "$tool" > /dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done

# The URL a command printed on stderr ("... at http://HOST:PORT/ ...").
url_of() {
  local f=$1
  for _ in $(seq 1 600); do
    if grep -qo 'http://[^ ]*/' "$f" 2> /dev/null; then
      grep -o 'http://[^ ]*/' "$f" | head -1
      return 0
    fi
    sleep 0.05
  done
  fail "no URL printed: $(cat "$f")"
}
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The input: 3000 lines of ts,key,value over 7 keys, with one bad line.
for i in $(seq 1 3000); do printf '%d,k%d,%d\n' $((i * 100)) $((i % 7)) "$i"; done > "$tmp/in.csv"
sed -i '1500i not,a,line' "$tmp/in.csv"

# The reference: the same job without --http.
"$bin" run window-agg --threads 2 --parallelism 2 --input "$tmp/in.csv" 2> /dev/null | sort > "$tmp/ref"

# --- 1. the job, fed slowly through a FIFO so that it runs while we look ----------------
mkfifo "$tmp/fifo"
"$bin" run window-agg --threads 2 --parallelism 2 --input "$tmp/fifo" --http 127.0.0.1:0 \
  > "$tmp/out" 2> "$tmp/err" &
job=$!
pids+=("$job")
exec 3> "$tmp/fifo"
head -n 1000 "$tmp/in.csv" >&3
url=$(url_of "$tmp/err")

curl -sf "${url}healthz" | grep -qx ok || fail "/healthz"
code=$(curl -s -o /dev/null -w '%{http_code}' "${url}nope")
[ "$code" = 404 ] || fail "an unknown path answered $code, expected 404"

curl -sf "${url}metrics" > "$tmp/m1" || fail "GET /metrics failed"
promtool check metrics < "$tmp/m1" > "$tmp/lint" 2>&1 || fail "promtool: $(cat "$tmp/lint")"
curl -sf "${url}api/job" > "$tmp/j1" || fail "GET /api/job failed"

# the JSON's shape, and every instance of every node in the exposition
"$py" - "$tmp/j1" "$tmp/m1" << 'EOF' || fail "/api/job or /metrics: see above"
import json, sys
j = json.load(open(sys.argv[1]))
m = open(sys.argv[2]).read()
for k in ("job", "state", "now_ms", "uptime_s", "process", "totals", "tasks", "nodes",
          "edges", "dead_letters", "checkpoints", "broker"):
    assert k in j, "no key %s" % k
assert j["job"] == "window-agg" and j["state"] == "running", (j["job"], j["state"])
assert j["broker"] is None
names = {n["name"] for n in j["nodes"]}
for n in j["nodes"]:
    assert n["kind"] in ("source", "operator", "sink"), n
    assert len(n["instances"]) == n["parallelism"], n
    for i in n["instances"]:
        for fam in ("sluice_records_in_total", "sluice_records_out_total",
                    "sluice_bytes_out_total", "sluice_late_records_total"):
            s = '%s{job="window-agg",node="%s",instance="%d"} ' % (fam, n["name"], i["instance"])
            assert s in m, "no sample " + s
for e in j["edges"]:
    assert e["from"] in names and e["to"] in names, e
    assert e["partitioning"] in ("forward", "hash", "rebalance", "broadcast"), e
for t in j["tasks"]:
    assert t["queued"] <= t["capacity"] or t["capacity"] == 0, t
assert any(n["parallelism"] == 2 for n in j["nodes"])
EOF

# a real Prometheus scrapes the job every second
hostport=${url#http://}
hostport=${hostport%/}
cat > "$tmp/prom.yml" << EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: sluice
    honor_labels: true
    static_configs:
      - targets: ['$hostport']
EOF
promtool check config "$tmp/prom.yml" > "$tmp/lint" 2>&1 || fail "promtool check config: $(cat "$tmp/lint")"
# start_prometheus: on a port free_port found; another process may take that port before
# Prometheus binds it (it then exits, "address already in use"): the wait below starts
# it again on another.
start_prometheus() {
  pport=$(free_port)
  prometheus --config.file="$tmp/prom.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address="127.0.0.1:$pport" > "$tmp/prom.log" 2>&1 3>&- &
  prom=$!
  pids+=($prom)
}
start_prometheus
query() {
  { curl -s "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" 2> /dev/null || true; } |
    "$py" -c 'import json,sys
try:
    r = json.load(sys.stdin)["data"]["result"]
    print(sum(float(x["value"][1]) for x in r) if r else "")
except Exception:
    print("")'
}
first=""
for _ in $(seq 1 600); do
  first=$(query 'sum(sluice_records_in_total{node="csv"})')
  [ -n "$first" ] && break
  if ! kill -0 "$prom" 2> /dev/null && grep -q 'address already in use' "$tmp/prom.log"; then
    start_prometheus
  fi
  sleep 0.1
done
[ -n "$first" ] || fail "Prometheus never got sluice_records_in_total: $(tail -5 "$tmp/prom.log")"
[ -n "$(query 'sluice_process_resident_memory_bytes')" ] || fail "Prometheus: no process RSS series"

# feed more; the counter must grow in Prometheus too
sed -n '1001,2000p' "$tmp/in.csv" >&3
second=$first
for _ in $(seq 1 600); do
  second=$(query 'sum(sluice_records_in_total{node="csv"})')
  "$py" -c "import sys; sys.exit(0 if float('${second:-0}') > float('$first') else 1)" && break
  sleep 0.1
done
"$py" -c "import sys; sys.exit(0 if float('${second:-0}') > float('$first') else 1)" ||
  fail "Prometheus: records in did not grow ($first -> $second)"

# counters never go down between two scrapes
curl -sf "${url}metrics" > "$tmp/m2"
"$py" - "$tmp/m1" "$tmp/m2" << 'EOF' || fail "a counter went down"
import sys
def samples(path):
    d = {}
    for l in open(path):
        if l.startswith("#") or not l.strip():
            continue
        k, v = l.rsplit(" ", 1)
        d[k] = float(v)
    return d
a, b = samples(sys.argv[1]), samples(sys.argv[2])
n = 0
for k, v in a.items():
    name = k.split("{")[0]
    if name.endswith("_total") or name.endswith("_bucket") or name.endswith("_count"):
        assert k in b, "series vanished: " + k
        assert b[k] >= v, "%s: %g -> %g" % (k, v, b[k])
        n += 1
assert n > 20, n
EOF

# a client that sends half a request and stalls, and 200 concurrent scrapes
exec 4<> "/dev/tcp/${hostport%:*}/${hostport##*:}"
printf 'GET /metrics HTTP/1.1\r\nHost: x\r\n' >&4
codes=$(seq 1 200 | xargs -P 200 -I{} curl -s -o /dev/null -w '%{http_code}\n' "${url}metrics")
[ "$(echo "$codes" | grep -c '^200$')" = 200 ] || fail "200 concurrent scrapes: $(echo "$codes" | sort | uniq -c)"
curl -sf "${url}api/job" > /dev/null || fail "GET /api/job with a stalled client open"
exec 4>&-

# the rest of the input; the job's results equal the run without --http
sed -n '2001,$p' "$tmp/in.csv" >&3
exec 3>&-
wait "$job" || fail "the job failed: $(cat "$tmp/err")"
sort "$tmp/out" | cmp -s - "$tmp/ref" || fail "results differ from the run without --http"
grep -q '1 dead letters' "$tmp/err" || fail "summary: $(tail -1 "$tmp/err")"

# --- 2. tokens ------------------------------------------------------------------------
printf 's3cret-token\n' > "$tmp/token"
if "$bin" run window-agg --input "$tmp/in.csv" --http 0.0.0.0:0 > /dev/null 2> "$tmp/e"; then
  fail "a non-loopback --http without a token was accepted"
fi
grep -q 'non-loopback address needs --http-token' "$tmp/e" || fail "message: $(cat "$tmp/e")"
if "$bin" run window-agg --input "$tmp/in.csv" --http-token "$tmp/token" > /dev/null 2> "$tmp/e"; then
  fail "--http-token without --http was accepted"
fi
grep -q -- '--http-token needs --http' "$tmp/e" || fail "message: $(cat "$tmp/e")"
mkfifo "$tmp/fifo2"
"$bin" run window-agg --input "$tmp/fifo2" --http 127.0.0.1:0 --http-token "$tmp/token" \
  > /dev/null 2> "$tmp/err2" &
pids+=($!)
job2=$!
exec 5> "$tmp/fifo2"
url2=$(url_of "$tmp/err2")
[ "$(curl -s -o /dev/null -w '%{http_code}' "${url2}metrics")" = 401 ] || fail "no token: not 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "${url2}metrics")" = 401 ] ||
  fail "a wrong token: not 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer s3cret-token' "${url2}metrics")" = 200 ] ||
  fail "the token: not 200"
[ "$(curl -s -o /dev/null -w '%{http_code}' "${url2}api/job?token=s3cret-token")" = 200 ] ||
  fail "?token=: not 200"
exec 5>&-
wait "$job2" || fail "the token job failed: $(cat "$tmp/err2")"

# --- 3. the broker -----------------------------------------------------------------------
export SLUICE_DIR=$tmp/broker
"$bin" topic create events --partitions 2 > /dev/null
seq 1 100 | sed 's/^/k\t/' | awk '{print "k" NR % 5 "\t" NR}' | "$bin" produce events -K $'\t' > /dev/null
"$bin" consume events -G readers -e -c 30 > /dev/null
"$bin" broker serve --listen 127.0.0.1:0 --http 127.0.0.1:0 > /dev/null 2> "$tmp/berr" &
pids+=($!)
burl=$(url_of "$tmp/berr")
curl -sf "${burl}metrics" > "$tmp/bm" || fail "broker: GET /metrics"
promtool check metrics < "$tmp/bm" > "$tmp/lint" 2>&1 || fail "broker: promtool: $(cat "$tmp/lint")"
curl -sf "${burl}api/job" > "$tmp/bj" || fail "broker: GET /api/job"
"$py" - "$tmp/bj" "$tmp/bm" << 'EOF' || fail "broker: see above"
import json, sys
j = json.load(open(sys.argv[1]))
m = open(sys.argv[2]).read()
b = j["broker"]
assert j["job"] == "broker" and j["nodes"] == [] and j["checkpoints"] is None, j
t = [t for t in b["topics"] if t["name"] == "events"]
assert t and len(t[0]["partitions"]) == 2, b
ends = {p["partition"]: p["end_offset"] for p in t[0]["partitions"]}
assert sum(ends.values()) == 100, ends
g = [g for g in b["groups"] if g["group"] == "readers" and g["topic"] == "events"]
assert g, b["groups"]
assert sum(x["committed"] for x in g) == 30, g
for x in g:
    assert x["lag"] == ends[x["partition"]] - x["committed"], (x, ends)
for p, e in ends.items():
    s = 'sluice_broker_log_end_offset{job="broker",topic="events",partition="%d"} %d' % (p, e)
    assert s in m, "no " + s
for x in g:
    s = 'sluice_broker_group_lag{job="broker",group="readers",topic="events",partition="%d"} %d' % (
        x["partition"], x["lag"])
    assert s in m, "no " + s
EOF
# --- 4. jobs that run several pipelines: one endpoint shows them all -----------------------
# --group runs a pipeline per partition it holds (it follows its input until SIGTERM, so
# the test waits for the three partitions, not for time); each node is PARTITION/NODE.
# (the server prints its port after the status page's URL, which is all url_of waited for)
bport=
for _ in $(seq 1 600); do
  bport=$(sed -n 's/.* on port \([0-9][0-9]*\)$/\1/p' "$tmp/berr" | head -1)
  [ -n "$bport" ] && break
  sleep 0.05
done
[ -n "$bport" ] || fail "broker: no port line: $(cat "$tmp/berr")"
K=127.0.0.1:$bport
"$bin" topic create gin --partitions 3 -b "$K" > /dev/null
"$bin" topic create gout --partitions 1 -b "$K" > /dev/null
"$bin" run generate --events 3000 --keys 10 --topic gin --kafka "$K" 2> "$tmp/gen.err" ||
  fail "generate: $(cat "$tmp/gen.err")"
"$bin" run window-agg --kafka "$K" --group gm --topic gin --out-topic gout --session-timeout 20s \
  --checkpoint-dir "$tmp/gwork" --http 127.0.0.1:0 > /dev/null 2> "$tmp/gerr" &
gjob=$!
pids+=("$gjob")
gurl=$(url_of "$tmp/gerr")
took() { grep -c 'took partition' "$tmp/gerr" || true; }
for _ in $(seq 1 1200); do
  [ "$(took)" -ge 3 ] && break
  kill -0 "$gjob" 2> /dev/null || fail "--group --http ended: $(cat "$tmp/gerr")"
  sleep 0.1
done
[ "$(took)" -ge 3 ] || fail "--group took $(took) of 3 partitions: $(cat "$tmp/gerr")"
curl -sf "${gurl}api/job" > "$tmp/gj" || fail "--group: GET /api/job"
curl -sf "${gurl}metrics" > "$tmp/gm" || fail "--group: GET /metrics"
promtool check metrics < "$tmp/gm" > "$tmp/lint" 2>&1 || fail "--group: promtool: $(cat "$tmp/lint")"
"$py" - "$tmp/gj" "$tmp/gm" << 'EOF' || fail "--group: see above"
import json, sys
j = json.load(open(sys.argv[1]))
m = open(sys.argv[2]).read()
names = {n["name"] for n in j["nodes"]}
for p in range(3):
    mine = [n for n in names if n.startswith("partition-%d/" % p)]
    assert mine, "no node of partition %d in %s" % (p, sorted(names))
    assert all('node="%s"' % n in m for n in mine), mine
assert all("/" in n for n in names), names
assert j["state"] == "running", j["state"]
tasks = {t["id"] for t in j["tasks"]}
assert len(tasks) == len(j["tasks"]), "task ids repeat"
for n in j["nodes"]:
    for i in n["instances"]:
        assert i["task"] in tasks, i
EOF
# the Kafka source's lag per partition (librdkafka's high watermark): reported for each
# partition, and 0 once everything is read
lag_done() {
  curl -sf "${gurl}api/job" > "$tmp/gl" 2> /dev/null || return 1
  "$py" -c '
import json, sys
lag = json.load(open(sys.argv[1]))["source_lag"]
got = {(l["node"].split("/")[0], l["topic"], l["partition"]): l["lag"] for l in lag}
want = {("partition-%d" % p, "gin", p): 0 for p in range(3)}
sys.exit(0 if got == want else 1)' "$tmp/gl"
}
for _ in $(seq 1 600); do lag_done && break || sleep 0.1; done
lag_done || fail "--group: source lag not 0 on each partition: $(cat "$tmp/gl")"
kill -TERM "$gjob"
wait "$gjob" || fail "--group --http: exit $? after SIGTERM: $(tail -n 5 "$tmp/gerr")"

# saga: two pipelines (orchestrator, participants); scraped until a reading shows both
# (the job cannot end before both have run).
"$bin" run saga --orders 300000 --out "$tmp/saga.out" --http 127.0.0.1:0 > /dev/null 2> "$tmp/serr" &
sjob=$!
pids+=("$sjob")
surl=$(url_of "$tmp/serr")
seen=0
while [ $seen = 0 ] && kill -0 "$sjob" 2> /dev/null; do
  curl -sf "${surl}api/job" > "$tmp/sj" 2> /dev/null || continue
  if "$py" - "$tmp/sj" << 'EOF'; then seen=1; fi
import json, sys
names = {n["name"] for n in json.load(open(sys.argv[1]))["nodes"]}
sys.exit(0 if "orchestrator/saga" in names and "participants/participants" in names else 1)
EOF
done
wait "$sjob" || fail "saga --http: exit $?: $(tail -n 3 "$tmp/serr")"
[ $seen = 1 ] || fail "saga --http: ended before a scrape showed both pipelines"
[ "$(wc -l < "$tmp/saga.out")" -eq 300000 ] || fail "saga --http: $(wc -l < "$tmp/saga.out") outcomes"
# crdt-replicas: its phases' pipelines, one after another
"$bin" run crdt-replicas --events 2000 --http 127.0.0.1:0 > /dev/null 2> "$tmp/cerr" ||
  fail "crdt-replicas --http: $(tail -n 3 "$tmp/cerr")"
grep -q 'status page at http://' "$tmp/cerr" || fail "crdt-replicas --http: $(cat "$tmp/cerr")"
echo "metrics_http: ok"
