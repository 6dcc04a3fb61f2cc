#!/usr/bin/env python3
"""tests/integration/status_fixture.py - a stand-in for a job's HTTP endpoint.

Serves ops/status.html at / and a made-up /api/job document (the shape of
ops/json.c: window-agg's plan, counters that grow with time,
checkpoints, and a broker section unless --no-broker) at /api/job, with an
optional token (?token= or Authorization: Bearer). It lets the page and
`sluice status` be developed and screenshotted without a running job; the
committed test (status_page.sh) runs against a real job.

usage: status_fixture.py PAGE PORT_FILE [--token T] [--no-broker]
Binds 127.0.0.1:0 and writes the port to PORT_FILE.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

page_path, port_file = sys.argv[1], sys.argv[2]
token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
broker = "--no-broker" not in sys.argv
start = time.time()

PLAN = [  # name, kind, parallelism, task of instance i, inputs, output share
    ("csv", "source", 2, [0, 1], [], 1.0),
    ("key", "operator", 2, [0, 1], ["csv"], 1.0),
    ("dead-letters", "sink", 2, [0, 1], ["csv"], 0.0),
    ("window", "operator", 4, [2, 3, 4, 5], ["key"], 0.05),
    ("out", "sink", 4, [2, 3, 4, 5], ["window"], 0.05),
    ("diverted", "operator", 1, [6], ["window"], 0.002),
    ("late-out", "sink", 1, [6], ["diverted"], 0.002),
]
EDGES = [("csv", "key", "forward", True), ("key", "window", "hash", False),
         ("window", "out", "forward", True), ("window", "diverted", "forward", False),
         ("diverted", "late-out", "forward", True), ("csv", "dead-letters", "forward", True)]


def document():
    up = time.time() - start
    now_ms = int(time.time() * 1000)
    # The input rate steps every 7 s, so the chart has a shape; records_in is
    # its integral (monotonic, as a job's counters are).
    def rate(sec):
        return 40000 + 15000 * ((sec // 7) % 3)
    n_in = int(sum(rate(k) for k in range(int(up))) + (up - int(up)) * rate(int(up)))
    wm = now_ms - 800 - int(300 * (int(up) % 5))
    nodes, tasks = [], {}
    for name, kind, par, tlist, inputs, share in PLAN:
        insts = []
        for i in range(par):
            out = int(n_in * share / par)
            insts.append({"instance": i, "task": tlist[i], "records_in": out if kind != "source" else 0,
                          "records_out": out if kind != "sink" else 0, "bytes_in": out * 12,
                          "bytes_out": out * 12, "late": 0, "dead_letters": 3 if name == "dead-letters" else 0,
                          "watermark_ms": None if kind == "source" and i == 1 and up < 2 else wm - 50 * i})
            tasks.setdefault(tlist[i], []).append(name)
        if kind == "sink":  # a sink's out is what it wrote
            for x in insts:
                x["records_out"] = x["records_in"] = int(n_in * share / par)
        nodes.append({"name": name, "kind": kind, "parallelism": par, "inputs": inputs, "instances": insts})
    task_list = [{"id": t, "nodes": ns, "queued": (t * 3) % 16, "capacity": 16,
                  "blocked_s": up * (0.35 if t == 1 else 0.04 * (t % 3))} for t, ns in sorted(tasks.items())]
    done = int(up // 2)
    hist = [{"id": i, "ok": i % 9 != 4, "time_ms": now_ms - (done - i) * 2000, "duration_ms": 4.2 + (i % 4),
             "bytes": 4096 + 512 * i, "error": "" if i % 9 != 4 else "task 3 timed out"}
            for i in range(max(1, done - 9), done + 1)] if done else []
    doc = {
        "job": "window-agg", "state": "running", "now_ms": now_ms, "uptime_s": round(up, 3),
        "process": {"cpu_s": round(up * 1.7, 2), "rss_bytes": 48 * 1024 * 1024},
        "totals": {"records_in": n_in, "records_out": int(n_in * 0.05), "late": int(up), "dead_letters": 6,
                   "watermark_ms": wm, "watermark_lag_ms": now_ms - wm},
        "tasks": task_list, "nodes": nodes,
        "edges": [{"from": f, "to": t, "partitioning": p, "chained": c} for f, t, p, c in EDGES],
        "checkpoints": {"completed": done, "failed": done // 9, "last_id": done, "last_bytes": 4096 + 512 * done,
                        "duration_p50_ms": 5.0, "duration_p99_ms": 9.0, "stall_max_ms": 1.0,
                        "history": hist} if done else None,
        "broker": None,
    }
    if broker:
        end = 1000 + int(up * 900)
        doc["broker"] = {"dir": "/var/lib/sluice",
                         "topics": [{"name": "clicks", "partitions": [
                             {"partition": p, "start_offset": 0, "end_offset": end + 37 * p} for p in range(3)]},
                             {"name": "results", "partitions": [{"partition": 0, "start_offset": 0,
                                                                 "end_offset": end // 20}]}],
                         "groups": [{"group": "window-agg", "topic": "clicks", "partition": p,
                                     "committed": end - 120 * (p + 1), "lag": 120 * (p + 1) + 37 * p}
                                    for p in range(3)]}
    return doc


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        u = urlparse(self.path)
        if token is not None:
            q = parse_qs(u.query).get("token", [None])[0]
            if q != token and self.headers.get("Authorization") != "Bearer " + token:
                return self.reply(401, b"unauthorized\n", "text/plain")
        if u.path == "/":
            with open(page_path, "rb") as f:
                return self.reply(200, f.read(), "text/html; charset=utf-8")
        if u.path == "/api/job":
            return self.reply(200, json.dumps(document()).encode(), "application/json")
        self.reply(404, b"not found\n", "text/plain")

    def reply(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402

os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
