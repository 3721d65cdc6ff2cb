#!/usr/bin/env python3
"""Hit ratios of eviction/admission policies on the bench's Zipf workload (same stream as
../shared/bench/tools/zipf_lru_sim.py): LRU and CLOCK (segment FIFO with re-insertion of
referenced objects), each with and without admission on the second miss, at 128 MiB of body
bytes. Used to choose the disk store's admission rule.
Usage: benches/zipf_admission_sim.py /tmp/cdnbench/corpus   (after ../shared/bench/ctl.sh start origin)
Measured 2026-11-22: lru 0.738, lru+admit2 0.769, clock 0.747, clock+admit2 0.772."""
import bisect, collections, itertools, os, random, sys
corpus=sys.argv[1]; cache=128*2**20; s=0.9; warm=300000; meas=700000
n=len(os.listdir(os.path.join(corpus,"z")))
size=[os.path.getsize(os.path.join(corpus,"z",f"{i:05d}")) for i in range(n)]
w=[k**-s for k in range(1,n+1)]; cdf=list(itertools.accumulate(w)); tot=cdf[-1]
ids=[((r*48271)+12345)%n for r in range(n)]
def stream():
    rng=random.Random(7)
    for t in range(warm+meas):
        yield t, ids[min(n-1,bisect.bisect_left(cdf,rng.random()*tot))]
def lru(admit2=False, cap=cache):
    c=collections.OrderedDict(); used=0; hits=0; seen=set(); seen_gen=0
    for t,o in stream():
        if o in c: c.move_to_end(o); hits+= t>=warm; continue
        if admit2:
            if o not in seen:
                seen.add(o)
                if len(seen)>50000: seen=set()
                continue
        c[o]=size[o]; used+=size[o]
        while used>cap: _,sz=c.popitem(last=False); used-=sz
    return hits/meas
def fifo_reinsert(admit2=False, cap=cache):
    # segment FIFO with re-append of referenced objects (CLOCK-like)
    q=collections.deque(); inq={}; ref={}; used=0; hits=0; seen=set()
    for t,o in stream():
        if o in inq: ref[o]=1; hits+= t>=warm; continue
        if admit2:
            if o not in seen:
                seen.add(o)
                if len(seen)>50000: seen=set()
                continue
        q.append(o); inq[o]=1; ref[o]=0; used+=size[o]
        while used>cap:
            x=q.popleft()
            if ref[x]: ref[x]=0; q.append(x); continue
            del inq[x]; used-=size[x]
    return hits/meas
print("lru", round(lru(),4)); print("lru+admit2", round(lru(True),4))
print("clock", round(fifo_reinsert(),4)); print("clock+admit2", round(fifo_reinsert(True),4))
