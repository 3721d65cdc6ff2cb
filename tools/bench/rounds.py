#!/usr/bin/env python3
"""Per-round ratios of alternate.sh runs, for one run or several pooled.

    tools/bench/rounds.py RUN... -- A/B...

Each RUN is a file of alternate.sh's run lines (round, name, req/s, CPU µs per request or
`-`, tab-separated; its saved output will do: other lines are skipped). For each pair A/B
it prints the median and quartiles of the per-round ratio of A's req/s to B's, with a 95 %
bootstrap interval of that median, and the same for CPU per request the other way up (B's
over A's, so that it reads like req/s). With several runs (alternate.sh run at different
hours, say), the rounds are pooled, and a second interval resamples the runs as well as
their rounds: on a shared machine whose speed drifts over hours, runs differ by more than
one run's interval, and this one says so.
"""
import collections
import random
import statistics
import sys

BOOTSTRAP = 2000


def load(path):
    """One run: {name: {round: req/s}} and {name: {round: CPU µs per request}}."""
    rps = collections.defaultdict(dict)
    cpu = collections.defaultdict(dict)
    for line in open(path):
        fields = line.rstrip('\n').split('\t')
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        r, name, value, us = fields
        rps[name][r] = float(value)
        if us != '-':
            cpu[name][r] = float(us)
    return rps, cpu


def interval(medians):
    medians.sort()
    return medians[BOOTSTRAP // 40], medians[BOOTSTRAP - 1 - BOOTSTRAP // 40]


def summary(runs):
    """`runs`: a list of per-round ratios for each run."""
    ratios = [x for run in runs for x in run]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    rng = random.Random(1)
    lo, hi = interval([statistics.median(rng.choices(ratios, k=len(ratios)))
                       for _ in range(BOOTSTRAP)])
    text = (f'{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}; 95 % interval '
            f'of the median {lo:.3f}-{hi:.3f}; {len(ratios)} rounds')
    if len(runs) > 1:
        def resampled():
            picked = rng.choices(runs, k=len(runs))
            return statistics.median([x for run in picked for x in rng.choices(run, k=len(run))])
        lo, hi = interval([resampled() for _ in range(BOOTSTRAP)])
        medians = ', '.join(f'{statistics.median(run):.3f}' for run in runs)
        text += f' in {len(runs)} runs, whose medians are {medians}; runs resampled too {lo:.3f}-{hi:.3f}'
    return text + ')'


def main(args):
    split = args.index('--') if '--' in args else len(args)
    runs = [load(path) for path in args[:split]]
    pairs = args[split + 1:]
    if len(runs) == 1:
        rps, cpu = runs[0]
        for name, by_round in rps.items():
            line = f'{name}: median {statistics.median(by_round.values()):.0f} req/s'
            if cpu[name]:
                line += f', {statistics.median(cpu[name].values()):.2f} CPU us/request'
            print(line)
    for pair in pairs:
        a, b = pair.split('/')
        ratios = [[rps[a][r] / rps[b][r] for r in rps[a] if r in rps[b]] for rps, _ in runs]
        print(f'{a}/{b}: req/s, per-round median {summary(ratios)}')
        ratios = [[cpu[b][r] / cpu[a][r] for r in cpu[a] if r in cpu[b]] for _, cpu in runs]
        if all(ratios):
            print(f'{a}/{b}: CPU per request, {b} over {a}, per-round median {summary(ratios)}')


if __name__ == '__main__':
    main(sys.argv[1:])
