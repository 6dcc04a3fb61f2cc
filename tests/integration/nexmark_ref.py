#!/usr/bin/env python3
"""tests/integration/nexmark_ref.py - a straightforward single-threaded
reference for the NEXMark queries of `sluice run nexmark`, computed from a
dump of events (`sluice run nexmark --dump-events FILE`), and a check of the
generator's properties.

  nexmark_ref.py query Q DUMP      print query Q's result CSV (header first)
  nexmark_ref.py check DUMP        check the generator's properties; exit 1
                                   with one line per problem

Windows are [start, end) in event time (ms). Formats are exact, so the
engine's output must match byte for byte after sorting the lines:
  q1  price * 0.908 as integer thousandths: price * 908 // 1000 "." 3 digits
  q4  a winning bid: the highest of an auction's bids with auction time <=
      bid time < expires; auctions without one are not counted; the average
      with two decimals, rounded half up in integers:
      (200 * sum + n) // (2 * n) hundredths
"""
import sys
from collections import defaultdict

Q7_WINDOW = 10000
Q5_SIZE, Q5_SLIDE = 10000, 2000
Q11_GAP = 10000
Q8_WINDOW = 10000


def read(path):
    people, auctions, bids = [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            x = line.rstrip("\n").split(",")
            if x[0] == "person":
                assert len(x) == 9, "line %d" % n
                people.append(dict(id=int(x[1]), name=x[2], email=x[3], cc=x[4], city=x[5],
                                   state=x[6], t=int(x[7]), extra=x[8]))
            elif x[0] == "auction":
                assert len(x) == 11, "line %d" % n
                auctions.append(dict(id=int(x[1]), item=x[2], desc=x[3], initial=int(x[4]),
                                     reserve=int(x[5]), t=int(x[6]), expires=int(x[7]),
                                     seller=int(x[8]), category=int(x[9]), extra=x[10]))
            elif x[0] == "bid":
                assert len(x) == 8, "line %d" % n
                bids.append(dict(auction=int(x[1]), bidder=int(x[2]), price=int(x[3]),
                                 channel=x[4], url=x[5], t=int(x[6]), extra=x[7]))
            else:
                raise SystemExit("line %d: unknown kind %r" % (n, x[0]))
    return people, auctions, bids


def thousandths(m):
    s = "-" if m < 0 else ""
    m = abs(m)
    return "%s%d.%03d" % (s, m // 1000, m % 1000)


def q0(p, a, b):
    yield "auction,bidder,price,dateTime"
    for x in b:
        yield "%d,%d,%d,%d" % (x["auction"], x["bidder"], x["price"], x["t"])


def q1(p, a, b):
    yield "auction,bidder,price,dateTime"
    for x in b:
        yield "%d,%d,%s,%d" % (x["auction"], x["bidder"], thousandths(x["price"] * 908), x["t"])


def q2(p, a, b):
    yield "auction,price"
    for x in b:
        if x["auction"] % 123 == 0:
            yield "%d,%d" % (x["auction"], x["price"])


def q3(p, a, b):
    yield "name,city,state,auction"
    by_id = defaultdict(list)
    for x in p:
        if x["state"] in ("OR", "ID", "CA"):
            by_id[x["id"]].append(x)
    for y in a:
        if y["category"] == 10:
            for x in by_id.get(y["seller"], ()):
                yield "%s,%s,%s,%d" % (x["name"], x["city"], x["state"], y["id"])


def q4(p, a, b):
    yield "category,avg_price"
    by_auction = defaultdict(list)
    for x in b:
        by_auction[x["auction"]].append(x)
    total = defaultdict(lambda: [0, 0])
    for y in a:
        best = None
        for x in by_auction.get(y["id"], ()):
            if y["t"] <= x["t"] < y["expires"] and (best is None or x["price"] > best):
                best = x["price"]
        if best is not None:
            total[y["category"]][0] += best
            total[y["category"]][1] += 1
    for c, (s, n) in total.items():
        h = (200 * s + n) // (2 * n)
        yield "%d,%d.%02d" % (c, h // 100, h % 100)


def q5(p, a, b):
    yield "window_start,window_end,auction,num"
    counts = defaultdict(lambda: defaultdict(int))
    for x in b:
        last = (x["t"] // Q5_SLIDE) * Q5_SLIDE
        s = last
        while s > x["t"] - Q5_SIZE:
            counts[s][x["auction"]] += 1
            s -= Q5_SLIDE
    for s, c in counts.items():
        m = max(c.values())
        for auc, n in c.items():
            if n == m:
                yield "%d,%d,%d,%d" % (s, s + Q5_SIZE, auc, n)


def q7(p, a, b):
    yield "window_start,auction,price,bidder,dateTime"
    wins = defaultdict(list)
    for x in b:
        wins[(x["t"] // Q7_WINDOW) * Q7_WINDOW].append(x)
    for s, xs in wins.items():
        m = max(x["price"] for x in xs)
        for x in xs:
            if x["price"] == m:
                yield "%d,%d,%d,%d,%d" % (s, x["auction"], x["price"], x["bidder"], x["t"])


def q8(p, a, b):
    yield "person,name,window_start"
    sellers = set((y["seller"], (y["t"] // Q8_WINDOW) * Q8_WINDOW) for y in a)
    seen = set()
    for x in p:
        w = (x["t"] // Q8_WINDOW) * Q8_WINDOW
        if (x["id"], w) in sellers and (x["id"], w) not in seen:
            seen.add((x["id"], w))
            yield "%d,%s,%d" % (x["id"], x["name"], w)


def q11(p, a, b):
    yield "bidder,bid_count,session_start,session_end"
    times = defaultdict(list)
    for x in b:
        times[x["bidder"]].append(x["t"])
    for bidder, ts in times.items():
        ts.sort()
        start, last, n = ts[0], ts[0], 0
        for t in ts:
            if t - last > Q11_GAP:  # sessions [t, t + gap) that touch merge
                yield "%d,%d,%d,%d" % (bidder, n, start, last + Q11_GAP)
                start, n = t, 0
            last = t
            n += 1
        yield "%d,%d,%d,%d" % (bidder, n, start, last + Q11_GAP)


QUERIES = {"q0": q0, "q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q7": q7, "q8": q8,
           "q11": q11}


def check(path):
    problems = []
    people, auctions, bids = read(path)
    n = len(people) + len(auctions) + len(bids)
    if n % 50 == 0 and (len(people), len(auctions), len(bids)) != (n // 50, 3 * n // 50,
                                                                   46 * n // 50):
        problems.append("proportions %d:%d:%d, not 1:3:46" % (len(people), len(auctions),
                                                              len(bids)))
    # kinds by position, times never decrease, ids count up, references exist
    kinds = []
    last_t = None
    person_seen, auction_seen = set(), set()
    with open(path) as f:
        for i, line in enumerate(f):
            if any(c in line for c in "\"'"):
                problems.append("line %d has a quote" % (i + 1))
            x = line.rstrip("\n").split(",")
            want = "person" if i % 50 == 0 else "auction" if i % 50 < 4 else "bid"
            if x[0] != want:
                problems.append("line %d is a %s, expected a %s" % (i + 1, x[0], want))
            t = int(x[{"person": 7, "auction": 6, "bid": 6}[x[0]]])
            if last_t is not None and t < last_t:
                problems.append("line %d: time goes back" % (i + 1))
            last_t = t
            if x[0] == "person":
                pid = int(x[1])
                if pid != 1000 + len(person_seen):
                    problems.append("line %d: person id %d out of sequence" % (i + 1, pid))
                person_seen.add(pid)
            elif x[0] == "auction":
                aid = int(x[1])
                if aid != 1000 + len(auction_seen):
                    problems.append("line %d: auction id %d out of sequence" % (i + 1, aid))
                if int(x[8]) not in person_seen:
                    problems.append("line %d: seller %s does not exist yet" % (i + 1, x[8]))
                if not 10 <= int(x[9]) < 15:
                    problems.append("line %d: category %s" % (i + 1, x[9]))
                if int(x[7]) <= t:
                    problems.append("line %d: expires before its time" % (i + 1))
                auction_seen.add(aid)
            else:
                if int(x[1]) not in auction_seen:
                    problems.append("line %d: auction %s does not exist yet" % (i + 1, x[1]))
                if int(x[2]) not in person_seen:
                    problems.append("line %d: bidder %s does not exist yet" % (i + 1, x[2]))
                if int(x[3]) <= 0:
                    problems.append("line %d: price %s" % (i + 1, x[3]))
            if len(problems) > 20:
                break
    # hot auctions and bidders: the most frequent auction / bidder takes a large share
    if len(bids) >= 10000:
        ca, cb = defaultdict(int), defaultdict(int)
        for x in bids:
            ca[x["auction"]] += 1
            cb[x["bidder"]] += 1
        top_a = sorted(ca.values())[-(len(auctions) // 100 + 1):]
        if sum(top_a) < 0.4 * len(bids):
            problems.append("hot auctions: the top 1 %% take %d of %d bids" % (sum(top_a),
                                                                             len(bids)))
        top_b = sorted(cb.values())[-(len(people) // 100 + 2):]
        if sum(top_b) < 0.6 * len(bids):
            problems.append("hot bidders: the top 1 %% take %d of %d bids" % (sum(top_b),
                                                                            len(bids)))
        states = set(x["state"] for x in people)
        if not {"OR", "ID", "CA"} <= states:
            problems.append("states %s lack OR, ID or CA" % sorted(states))
    for pr in problems[:20]:
        print("nexmark_ref check: " + pr)
    return 1 if problems else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "query" and sys.argv[2] in QUERIES:
        p, a, b = read(sys.argv[3])
        out = sys.stdout
        for line in QUERIES[sys.argv[2]](p, a, b):
            out.write(line + "\n")
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        return check(sys.argv[2])
    sys.stderr.write("usage: nexmark_ref.py query q0|q1|q2|q3|q4|q5|q7|q8|q11 DUMP\n"
                     "       nexmark_ref.py check DUMP\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
