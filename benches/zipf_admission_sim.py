#!/usr/bin/env python3
"""Hit ratios of eviction/admission policies on the bench's Zipf workload (same stream as
../shared/bench/tools/zipf_lru_sim.py), used to choose the disk store's admission and
retention rules. Two models:

- object-level: LRU, and CLOCK (FIFO with re-insertion of referenced objects), each with and
  without admission on the second miss, counting body bytes only (128 MiB of bodies);
- segment-level, as `src/store/disk` works: records (body + a per-record overhead of head,
  key and metadata) appended to segments of SEG bytes in `floor(128 MiB / SEG)` slots, one
  slot kept free, the oldest segment reclaimed when a new one starts; at reclaim, objects
  chosen by the retention rule are re-appended (within a budget of bytes per reclaimed
  segment) and the rest dropped. Admission once the store is full, by rule:
    all      every miss is stored;
    2miss    doorkeeper: a new key on its second miss (main before this change);
    tinylfu  a count-min sketch (4 rows, 4-bit counters, conservative update, halved every
             AGE x objects-in-store accesses) counts every access; a new key is stored if
             its estimate >= the median estimate of the objects the last reclaims dropped.
  Retention: `ref` = referenced since written; `freq` = referenced, or estimate >= the
  admission threshold.

Usage: benches/zipf_admission_sim.py /tmp/cdnbench/corpus [policy ...]
(after ../shared/bench/ctl.sh start origin). Without policies, runs the table in
docs/store.md."""
import bisect, collections, itertools, os, random, statistics, sys

corpus = sys.argv[1]
CACHE = 128 * 2**20; S = 0.9; WARM = 300000; MEAS = 700000
n = len(os.listdir(os.path.join(corpus, "z")))
size = [os.path.getsize(os.path.join(corpus, "z", f"{i:05d}")) for i in range(n)]
w = [k ** -S for k in range(1, n + 1)]; cdf = list(itertools.accumulate(w)); tot = cdf[-1]
ids = [((r * 48271) + 12345) % n for r in range(n)]
_rng = random.Random(7)
STREAM = [ids[min(n - 1, bisect.bisect_left(cdf, _rng.random() * tot))] for _ in range(WARM + MEAS)]


def lru(admit2=False, cap=CACHE):
    c = collections.OrderedDict(); used = 0; hits = 0; seen = set()
    for t, o in enumerate(STREAM):
        if o in c:
            c.move_to_end(o); hits += t >= WARM; continue
        if admit2 and o not in seen:
            seen.add(o)
            if len(seen) > 50000: seen = set()
            continue
        c[o] = size[o]; used += size[o]
        while used > cap:
            _, sz = c.popitem(last=False); used -= sz
    return hits / MEAS


def clock(admit2=False, cap=CACHE):
    q = collections.deque(); ref = {}; used = 0; hits = 0; seen = set()
    for t, o in enumerate(STREAM):
        if o in ref:
            ref[o] = 1; hits += t >= WARM; continue
        if admit2 and o not in seen:
            seen.add(o)
            if len(seen) > 50000: seen = set()
            continue
        q.append(o); ref[o] = 0; used += size[o]
        while used > cap:
            x = q.popleft()
            if ref[x]: ref[x] = 0; q.append(x); continue
            del ref[x]; used -= size[x]
    return hits / MEAS


class Sketch:
    """Count-min, 4 rows of `width` 4-bit counters, conservative update, halving."""
    def __init__(self, width, age_after):
        self.w = width; self.rows = [[0] * width for _ in range(4)]
        self.age_after = age_after; self.adds = 0
        m = width - 1
        self.idx = [[(((o + 1) * p) >> 7) & m for o in range(n)]
                    for p in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)]

    def add(self, o):
        r = self.rows; i = self.idx
        a, b, c, d = i[0][o], i[1][o], i[2][o], i[3][o]
        m = min(r[0][a], r[1][b], r[2][c], r[3][d])
        if m < 15:
            if r[0][a] == m: r[0][a] = m + 1
            if r[1][b] == m: r[1][b] = m + 1
            if r[2][c] == m: r[2][c] = m + 1
            if r[3][d] == m: r[3][d] = m + 1
        self.adds += 1
        if self.adds >= self.age_after:
            self.adds = 0
            self.rows = [[v >> 1 for v in row] for row in self.rows]

    def est(self, o):
        r = self.rows; i = self.idx
        return min(r[0][i[0][o]], r[1][i[1][o]], r[2][i[2][o]], r[3][i[3][o]])


def segments(seg=2 << 20, admit="tinylfu", retain="freq", budget=1.0, ovh=480, age=32,
             width=1 << 16, drops_window=8, per_byte=True, cmp=">=", keep_cmp=">"):
    """The segment-level model (see the module doc). `per_byte`: compare estimate per byte
    of record instead of the estimate; `cmp`/`keep_cmp`: how a score meets the bar for
    admission / retention."""
    nslots = CACHE // seg
    rec = [((64 + ovh + 7) // 8) * 8 + ((size[o] + 7) // 8) * 8 for o in range(n)]
    segs = collections.deque()  # (generation, objects) per sealed segment, oldest first
    gen = 1; active = []; pos = 64
    where = {}  # object -> generation of the segment holding its current record
    ref = {}
    full = False; hits = 0; seen = set()
    sk = Sketch(width, 1 << 62)
    drops = collections.deque(maxlen=drops_window)  # per reclaim: list of dropped scores
    thr = 0.0

    def score(o):
        e = sk.est(o)
        return (e << 22) // rec[o] if per_byte else e

    def push(o):
        nonlocal pos
        active.append(o); pos += rec[o]; where[o] = gen

    for t, o in enumerate(STREAM):
        if admit == "tinylfu":
            sk.add(o)
            if t % 4096 == 0:
                sk.age_after = max(4096, age * len(where))
        if o in where:
            ref[o] = 1; hits += t >= WARM; continue
        if full:
            if admit == "2miss":
                if o not in seen:
                    seen.add(o)
                    if len(seen) > 50000: seen = set()
                    continue
            elif admit == "tinylfu":
                s = score(o)
                if not (s >= thr if cmp == ">=" else s > thr):
                    continue
        if pos + rec[o] > seg:
            # roll: seal active, start a new one, reclaim the oldest when no slot is free
            segs.append((gen, active)); active = []; pos = 64; gen += 1
            if len(segs) + 1 >= nslots:
                full = True
                vid, victim = segs.popleft()
                b = budget * seg; dropped = []
                for x in victim:
                    if where.get(x) != vid:
                        continue
                    sx = score(x)
                    keep = ref.get(x, 0) or (retain == "freq" and thr > 0 and (sx >= thr if keep_cmp == ">=" else sx > thr))
                    if retain == "none": keep = False
                    if keep and rec[x] <= b and pos + rec[x] <= seg:
                        b -= rec[x]; ref[x] = 0; push(x)
                    else:
                        del where[x]; ref.pop(x, None)
                        if admit == "tinylfu": dropped.append(sx)
                if dropped:
                    drops.append(statistics.median(dropped))
                    thr = statistics.median(drops) if drops else 0
        push(o); ref[o] = 0
    return hits / MEAS


def main():
    args = sys.argv[2:]
    if args:
        for a in args:
            print(a, round(eval(a), 4), flush=True)
        return
    rows = [
        ("lru()", "exact LRU, body bytes only (no per-record overhead)"),
        ("clock()", "CLOCK, body bytes only"),
        ("lru(True)", "LRU + store on 2nd miss, body bytes only"),
        ("segments(seg=8<<20, admit='2miss', retain='ref', budget=0.5)", "log, 8 MiB segments, 2nd-miss admission, keep read objects (1/2 segment): main before"),
        ("segments(seg=2<<20, admit='2miss', retain='ref', budget=0.5)", "same, 2 MiB segments"),
        ("segments(per_byte=False, retain='ref')", "2 MiB, TinyLFU admission by count, keep read objects"),
        ("segments(per_byte=False)", "2 MiB, TinyLFU by count, keep read or above the bar"),
        ("segments(retain='ref')", "2 MiB, TinyLFU by count per byte, keep read objects"),
        ("segments()", "**2 MiB, TinyLFU by count per byte, keep read or above the bar (chosen)**"),
        ("segments(budget=0.5)", "chosen, re-append budget 1/2 segment"),
        ("segments(seg=8<<20)", "chosen, 8 MiB segments"),
        ("segments(ovh=300)", "chosen, 300 B per-record overhead instead of 480"),
    ]
    print("| policy | expression | hit ratio |")
    print("|---|---|---|")
    for expr, what in rows:
        print(f"| {what} | `{expr}` | {eval(expr):.4f} |", flush=True)


main()
