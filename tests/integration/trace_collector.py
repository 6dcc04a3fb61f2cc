#!/usr/bin/env python3
"""Generator and reference for `sluice run trace-collector` (trace_collector.sh).

  trace_collector.py gen SEED FILE
      writes OTLP/JSON lines: traces of known structure (errors, slow ones,
      orphans, several services, names with escapes), spans out of order,
      split over many lines and many per line, traces of several resources,
      the mapping's variants (numbers or strings, enum names, snake_case
      names, null, unknown fields, whitespace, resource after scopeSpans),
      late spans, event time 0 and huge times, and malformed lines of each
      kind; prints the number of malformed lines it wrote.

  trace_collector.py ref FILE OPTIONS... -- STATS KEPT_OUT LATE_OUT
      computes, independently of the job, what it must print and keep with
      OPTIONS (--trace-gap MS --delay MS [--watermark-step MS] [--keep-errors]
      [--keep-slower-than MS] [--sample-rate R]), and checks the job's
      statistics file STATS (exact text), its kept traces KEPT_OUT (the same
      traces, each span with its resource and scope, every span's text as
      written in the input) and its late spans LATE_OUT. Exit 1 with the
      first difference.

The model (the job's help states it): a span's event time is its end time in
ms; the watermark after a line is max_end_ms_seen - delay - 1 rounded down to
a multiple of the watermark step (default 100 ms); a span whose
trace is not in flight and whose time is <= the watermark is late; a trace is
decided when the watermark reaches last_end_ms + gap - 1.
"""
import json
import random
import sys

HEX = "0123456789abcdef"


def tid(rng):
    return "".join(rng.choice(HEX) for _ in range(32))


def sid(rng):
    return "".join(rng.choice(HEX) for _ in range(16))


def gen(seed, path):
    rng = random.Random(seed)
    services = [("saga", '"saga"'), ("pay\u00e9", '"pay\\u00e9"'), ("tab\there", '"tab\\there"'),
                ("ship", '"ship"')]
    names = [("reserve", '"reserve"'), ("charge", '"charge"'), ("ship/\U0001F600", '"ship/\\ud83d\\ude00"'),
             ("a\\b", '"a\\\\b"')]
    # each span: (end_ms for ordering, text of resource, text of scope, span text)
    spans = []
    base = 1_000_000
    n_traces = 300
    for t in range(n_traces):
        trace = tid(rng)
        start_ms = base + t * 40 + rng.randrange(0, 30)
        n = rng.randrange(1, 9)
        ids = [sid(rng) for _ in range(n)]
        slow = rng.random() < 0.15
        for k in range(n):
            svc_i = rng.randrange(len(services))
            res = ('{"attributes":[{"key":"service.name","value":{"stringValue":%s}},'
                   '{"key":"host","value":{"intValue":"%d"}}]}' % (services[svc_i][1], svc_i))
            if rng.random() < 0.1:
                res = ('{ "droppedAttributesCount": 0, "attributes": [ {"key": "service.name", '
                       '"value": {"stringValue": %s}} ] }' % services[svc_i][1])
            scope = '{"name":"sluice","version":"%d"}' % rng.randrange(2)
            st = start_ms * 1_000_000 + k * 1_000_000 + rng.randrange(0, 999_999)
            dur = rng.randrange(1_000, 50_000_000)
            if slow and k == 0:
                dur = 400_000_000 + rng.randrange(0, 400_000_000)
            en = st + dur
            parent = "" if k == 0 else ids[rng.randrange(k)]
            if k > 0 and rng.random() < 0.05:
                parent = sid(rng)  # orphan: a parent that never comes
            nm = names[rng.randrange(len(names))][1]
            status = ""
            r = rng.random()
            if r < 0.06:
                status = ',"status":{"code":2,"message":"boom"}'
            elif r < 0.09:
                status = ',"status":{"message":"x","code":"STATUS_CODE_ERROR"}'
            elif r < 0.15:
                status = ',"status":{"code":"STATUS_CODE_OK"}'
            elif r < 0.18:
                status = ',"status":null'
            v = rng.random()
            if v < 0.2:
                span = ('{"trace_id":"%s","span_id":"%s","parent_span_id":"%s","name":%s,'
                        '"start_time_unix_nano":%d,"end_time_unix_nano":%d%s}'
                        % (trace.upper(), ids[k], parent, nm, st, en, status))
            elif v < 0.3:
                span = ('{ "name" : %s , "kind" : "SPAN_KIND_SERVER", "traceId" : "%s", '
                        '"spanId":"%s"%s, "endTimeUnixNano" : "%d", "startTimeUnixNano": "%d", '
                        '"attributes":[{"key":"x","value":{"arrayValue":{"values":[{"doubleValue":1.5e3}]}}}],'
                        '"unknownField": {"a": [true, false, null]}%s }'
                        % (nm, trace, ids[k], (', "parentSpanId": "%s"' % parent) if parent else
                           ', "parentSpanId": null', en, st, status))
            else:
                span = ('{"traceId":"%s","spanId":"%s","parentSpanId":"%s","name":%s,"kind":2,'
                        '"startTimeUnixNano":"%d","endTimeUnixNano":"%d"%s}'
                        % (trace, ids[k], parent, nm, st, en, status))
            spans.append((en // 1_000_000 + rng.randrange(-300, 300), res, scope, span))
    # arrival: roughly by end time, out of order by up to ~300 ms
    spans.sort(key=lambda s: s[0])
    lines = []
    i = 0
    while i < len(spans):
        take = rng.choice([1, 1, 2, 3, 5, 8])
        chunk = spans[i:i + take]
        i += take
        groups = []  # (res, scope) -> spans, in order
        for _, res, scope, span in chunk:
            for g in groups:
                if g[0] == res and g[1] == scope:
                    g[2].append(span)
                    break
            else:
                groups.append([res, scope, [span]])
        rs = []
        for res, scope, ss in groups:
            if rng.random() < 0.2:
                rs.append('{"scopeSpans":[{"spans":[%s],"scope":%s}],"resource":%s,"schemaUrl":"u"}'
                          % (",".join(ss), scope, res))
            elif rng.random() < 0.1:
                rs.append('{"resource":%s,"scope_spans":[{"scope":%s,"spans":[%s]}]}'
                          % (res, scope, ",".join(ss)))
            else:
                rs.append('{"resource":%s,"scopeSpans":[{"scope":%s,"spans":[%s]}]}'
                          % (res, scope, ",".join(ss)))
        key = "resource_spans" if rng.random() < 0.1 else "resourceSpans"
        lines.append(' {"%s":[%s]} ' % (key, ",".join(rs)) if rng.random() < 0.1
                     else '{"%s":[%s]}' % (key, ",".join(rs)))
    # event time 0 first: a trace that ends at 0 ms and a root-less one
    t0 = tid(rng)
    lines.insert(0, '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s",'
                 '"name":"zero","startTimeUnixNano":0,"endTimeUnixNano":"999999"},'
                 '{"traceId":"%s","spanId":"%s","parentSpanId":"%s","name":"zero",'
                 '"endTimeUnixNano":"0"}]}]}]}' % (t0, sid(rng), t0, sid(rng), sid(rng)))
    lines.insert(1, '{"resourceSpans":[],"extra":{}}')  # valid, no spans
    lines.insert(2, '{}')  # valid, no spans
    # late spans: of traces decided long ago (their time is behind the watermark)
    early = [json.loads(l) for l in lines[3:40]]
    late_lines = []
    for req in early[:5]:
        s = req.get("resourceSpans", req.get("resource_spans"))[0]
        ss = s.get("scopeSpans", s.get("scope_spans"))[0]["spans"][0]
        t = ss.get("traceId", ss.get("trace_id")).lower()
        late_lines.append('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s",'
                          '"name":"late","startTimeUnixNano":"%d","endTimeUnixNano":"%d"}]}]}]}'
                          % (t, sid(rng), base * 1_000_000, base * 1_000_000 + 5))
    for k, l in enumerate(late_lines):
        lines.insert(len(lines) * (k + 6) // 12, l)
    # huge times at the end: near 2^64 ns
    th = tid(rng)
    lines.append('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s",'
                 '"name":"huge","startTimeUnixNano":"18446744073709551000",'
                 '"endTimeUnixNano":18446744073709551615,"status":{"code":2}}]}]}]}' % (th, sid(rng)))
    bad = [
        'not json',
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s"' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abc","spanId":"%s"}]}]}]}' % sid(rng),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s"}]}]}]}' % tid(rng),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","endTimeUnixNano":"12a"}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","endTimeUnixNano":1.5}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","endTimeUnixNano":-5}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","endTimeUnixNano":"18446744073709551616"}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","status":{"code":"BAD"}}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"0000000000000000"}]}]}]}' % tid(rng),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"00000000000000000000000000000000","spanId":"%s"}]}]}]}' % sid(rng),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","name":"a\x01b"}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","name":"\\q"}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s"}]}]}]} x' % (tid(rng), sid(rng)),
        '{"resourceSpans":{"a":1}}',
        '{"resourceSpans":[{"scopeSpans":[{"spans":[7]}]}]}',
        '{"resourceSpans":[{"resource":[],"scopeSpans":[]}]}',
        '{"a":' + '[' * 70 + ']' * 70 + '}',
        '[1,2]',
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","parentSpanId":"12"}]}]}]}' % (tid(rng), sid(rng)),
        '{"resourceSpans":[tru]}',
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","name":"x\\ud83"}]}]}]}' % (tid(rng), sid(rng)),
        '',
    ]
    for k, b in enumerate(bad):
        lines.insert(3 + k * 37 % (len(lines) - 3), b)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for l in lines:
            f.write(l + "\n")
    print(len(bad))


# --- reference --------------------------------------------------------------------------


class Bad(Exception):
    pass


def depth(v, d=1):
    if d > 64:
        raise Bad("deep")
    if isinstance(v, dict):
        for x in v.values():
            depth(x, d + 1)
    elif isinstance(v, list):
        for x in v:
            depth(x, d + 1)


def get(o, camel, snake=None):
    v = o.get(camel)
    if v is None and snake:
        v = o.get(snake)
    return v


def hexid(v, n, required):
    if v is None or v == "":
        if required:
            raise Bad("id")
        return None
    if not isinstance(v, str) or len(v) != 2 * n or any(c not in "0123456789abcdefABCDEF" for c in v):
        raise Bad("id")
    if int(v, 16) == 0:
        raise Bad("id")
    return v.lower()


def u64(v):
    if v is None:
        return 0
    if isinstance(v, bool):
        raise Bad("u64")
    if isinstance(v, int):
        x = v
    elif isinstance(v, str) and v.isdigit() and v.isascii() and len(v) <= 20:
        x = int(v)
    else:
        raise Bad("u64")
    if x < 0 or x >= 2 ** 64:
        raise Bad("u64")
    return x


def no_float(s):
    # json.loads turns 1.5 into a float: the u64 check refuses it; NaN etc. refused here
    raise Bad("const")


def parse_line(line):
    """The spans of a valid line, or raise Bad."""
    try:
        req = json.loads(line, parse_constant=no_float)
    except (ValueError, RecursionError):
        raise Bad("json")
    if not isinstance(req, dict):
        raise Bad("not an object")
    depth(req)
    out = []
    rss = get(req, "resourceSpans", "resource_spans")
    if rss is None:
        return out
    if not isinstance(rss, list):
        raise Bad("rs")
    for rs in rss:
        if not isinstance(rs, dict):
            raise Bad("rs")
        res = rs.get("resource")
        if res is not None and not isinstance(res, dict):
            raise Bad("res")
        res = res or {}
        svc = "unknown_service"
        attrs = res.get("attributes")
        if attrs is not None:
            if not isinstance(attrs, list):
                raise Bad("attrs")
            for a in attrs:
                if not isinstance(a, dict):
                    raise Bad("attr")
                if a.get("key") == "service.name" and isinstance(a.get("value"), dict):
                    v = get(a["value"], "stringValue", "string_value")
                    if isinstance(v, str):
                        svc = v
        sss = get(rs, "scopeSpans", "scope_spans")
        if sss is None:
            continue
        if not isinstance(sss, list):
            raise Bad("ss")
        for ss in sss:
            if not isinstance(ss, dict):
                raise Bad("ss")
            scope = ss.get("scope")
            if scope is not None and not isinstance(scope, dict):
                raise Bad("scope")
            sp = ss.get("spans")
            if sp is None:
                continue
            if not isinstance(sp, list):
                raise Bad("spans")
            for s in sp:
                if not isinstance(s, dict):
                    raise Bad("span")
                t = hexid(get(s, "traceId", "trace_id"), 16, True)
                i = hexid(get(s, "spanId", "span_id"), 8, True)
                p = hexid(get(s, "parentSpanId", "parent_span_id"), 8, False)
                st, en = u64(get(s, "startTimeUnixNano", "start_time_unix_nano")), u64(
                    get(s, "endTimeUnixNano", "end_time_unix_nano"))
                name = s.get("name")
                if name is None:
                    name = ""
                if not isinstance(name, str):
                    raise Bad("name")
                code = 0
                stt = s.get("status")
                if stt is not None:
                    if not isinstance(stt, dict):
                        raise Bad("status")
                    c = stt.get("code")
                    if isinstance(c, str):
                        names = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]
                        if c not in names:
                            raise Bad("code")
                        code = names.index(c)
                    elif isinstance(c, int) and not isinstance(c, bool):
                        code = c
                    elif c is not None:
                        raise Bad("code")
                # a lone surrogate escape decodes to U+FFFD, as the job does it
                svc = "".join("\ufffd" if 0xD800 <= ord(ch) < 0xE000 else ch for ch in svc)
                name = "".join("\ufffd" if 0xD800 <= ord(ch) < 0xE000 else ch for ch in name)
                out.append(dict(trace=t, span=i, parent=p, start=st, end=en, name=name, svc=svc,
                                err=code == 2, res=res, scope=scope or {}, obj=s))
    return out


def esc(s):
    """The job's rendering: bytes below 0x20, 0x7f and backslash as \\xNN."""
    out = bytearray()
    for c in s.encode("utf-8", "surrogatepass"):
        out += b"\\x%02x" % c if c < 0x20 or c == 0x7f or c == 0x5c else bytes([c])
    return out.decode("utf-8")


def us(ns):
    return "%d.%03d" % (ns // 1000, ns % 1000)


def pct(v, p):
    rank = (p * len(v) + 99) // 100
    return v[max(rank, 1) - 1]


def ref(argv):
    path = argv[0]
    sep = argv.index("--")
    opts, (stats_f, kept_f, late_f) = argv[1:sep], argv[sep + 1:]
    gap, delay, step, keep_err, slower, rate = 5000, 0, 100, False, None, 1.0
    i = 0
    while i < len(opts):
        o = opts[i]
        if o == "--keep-errors":
            keep_err = True
            i += 1
            continue
        v = opts[i + 1]
        i += 2
        if o == "--trace-gap":
            gap = int(v)
        elif o == "--delay":
            delay = int(v)
        elif o == "--watermark-step":
            step = int(v)
        elif o == "--keep-slower-than":
            slower = int(v) * 1_000_000
        elif o == "--sample-rate":
            rate = float(v)
    bound = int(rate * 2.0 ** 63)
    stats = {}
    inflight = {}  # trace -> [last_ms, spans]
    decided = []
    late = []
    wm = -2 ** 63
    max_ts = None
    malformed = 0
    nspans = 0

    def advance(w):
        for t in [t for t, v in inflight.items() if min(v[0] + gap - 1, 2 ** 63 - 2) <= w]:
            decided.append((t, inflight.pop(t)[1]))

    with open(path, "rb") as f:
        data = f.read().decode("utf-8")
    for line in data.split("\n")[:-1]:
        try:
            spans = parse_line(line)
        except Bad:
            malformed += 1
            continue
        for s in spans:
            nspans += 1
            st = stats.setdefault((s["svc"].encode(), s["name"].encode()), [0, 0, []])
            st[0] += 1
            st[1] += s["err"]
            st[2].append(s["end"] - s["start"] if s["end"] > s["start"] else 0)
            ts = s["end"] // 1_000_000
            if s["trace"] in inflight:
                v = inflight[s["trace"]]
                v[0] = max(v[0], ts)
                v[1].append(s)
            elif ts <= wm:
                late.append(s)
            else:
                inflight[s["trace"]] = [ts, [s]]
        if spans:
            m = max(s["end"] // 1_000_000 for s in spans)
            max_ts = m if max_ts is None else max(max_ts, m)
            nw = (max_ts - delay - 1) // step * step
            if nw > wm:
                wm = nw
                advance(wm)
    advance(2 ** 63 - 1)
    kept = []  # (trace, spans): a trace id may come back after its gap (a new session)
    by = [0, 0, 0]
    orphans = 0
    kept_spans = 0
    for t, ss in decided:
        ids = {s["span"] for s in ss}
        orphans += sum(1 for s in ss if s["parent"] and s["parent"] not in ids)
        dur = max(s["end"] for s in ss) - min(s["start"] for s in ss)
        if keep_err and any(s["err"] for s in ss):
            by[0] += 1
        elif slower is not None and dur > slower:
            by[1] += 1
        elif (int(t[16:], 16) >> 1) < bound:
            by[2] += 1
        else:
            continue
        kept.append((t, ss))
        kept_spans += len(ss)
    out = ["service\toperation\tspans\terrors\terror_rate\tp50_us\tp95_us\tp99_us"]
    for (svc, name) in sorted(stats):
        c, e, lat = stats[(svc, name)]
        lat.sort()
        out.append("%s\t%s\t%d\t%d\t%.4f\t%s\t%s\t%s" % (esc(svc.decode()), esc(name.decode()), c, e, e / c,
                                                     us(pct(lat, 50)), us(pct(lat, 95)), us(pct(lat, 99))))
    out.append("traces: %d, kept: %d, spans: %d, orphans: %d" % (len(decided), sum(by), nspans, orphans))
    out.append("kept by policy: errors %d, slower-than %d, sample %d; kept spans: %d" % (by[0], by[1], by[2],
                                                                                         kept_spans))
    out.append("late spans: %d, malformed lines: %d" % (len(late), malformed))
    got = open(stats_f, encoding="utf-8").read().split("\n")[:-1]
    if got != out:
        for a, b in zip(got, out):
            if a != b:
                sys.exit("stats differ:\n  job: %r\n  ref: %r" % (a, b))
        sys.exit("stats differ in length: job %d lines, ref %d" % (len(got), len(out)))

    # kept traces: the same set, every span under its own resource and scope
    def canon(spans):
        return sorted(json.dumps([s["res"], s["scope"], s["obj"]], sort_keys=True) for s in spans)

    seen = []
    for line in open(kept_f, encoding="utf-8").read().split("\n")[:-1]:
        spans = parse_line(line)
        ts = {s["trace"] for s in spans}
        if len(ts) != 1:
            sys.exit("a kept line holds %d traces" % len(ts))
        t = ts.pop()
        req = json.loads(line)
        groups = [(json.dumps(rs.get("resource"), sort_keys=True),
                   json.dumps(ss.get("scope"), sort_keys=True))
                  for rs in req["resourceSpans"] for ss in rs["scopeSpans"]]
        if len(groups) != len(set(groups)):
            sys.exit("trace %s: a resource and scope group twice" % t)
        seen.append((t, canon(spans)))
    want = sorted((t, canon(ss)) for t, ss in kept)
    seen.sort()
    if [t for t, _ in seen] != [t for t, _ in want]:
        a, b = {t for t, _ in seen}, {t for t, _ in want}
        sys.exit("kept traces differ: job %d, ref %d; job only %s, ref only %s"
                 % (len(seen), len(want), sorted(a - b)[:3], sorted(b - a)[:3]))
    for x, y in zip(seen, want):
        if x != y:
            sys.exit("trace %s: spans differ" % x[0])
    got_late = []
    for line in open(late_f, encoding="utf-8").read().split("\n")[:-1]:
        got_late += parse_line(line)
    if sorted(canon(got_late)) != sorted(canon(late)):
        sys.exit("late spans differ: job %d, ref %d" % (len(got_late), len(late)))
    print("ok: %d traces, %d kept (%d/%d/%d), %d spans, %d orphans, %d late, %d malformed"
          % (len(decided), sum(by), by[0], by[1], by[2], nspans, orphans, len(late), malformed))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "ref":
        ref(sys.argv[2:])
    else:
        sys.exit("usage: trace_collector.py gen SEED FILE | ref FILE OPTIONS -- STATS KEPT LATE")
