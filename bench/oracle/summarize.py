#!/usr/bin/env python3
"""Print the medians in results.jsonl (written by run_all.sh) and the ratios a/c, b/c."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else 'results.jsonl')]
by = {}
for r in rows:
    by.setdefault(r['label'][0], []).append(r)
print('%-6s %-10s %-12s %-8s %s' % ('run', 'wall med s', 'rank0 cpu s', 'trace', 'loadavg'))
for r in rows:
    print('%-6s %-10.3f %-12.3f %-8s %s' % (r['label'], r['median_s'], r['median_cpu_s'], r.get('trace', '-'),
                                           r['loadavg']))
med = {k: statistics.median(x['median_s'] for x in v) for k, v in by.items()}
cpu = {k: statistics.median(x['median_cpu_s'] for x in v) for k, v in by.items()}
for k in sorted(med):
    print(f'{k}: median of medians wall {med[k]:.3f} s, rank0 process CPU {cpu[k]:.3f} s')
for k in ('a', 'b'):
    if k in med and 'c' in med:
        per = [x['median_s'] / y['median_s'] for x, y in zip(by[k], by['c'])]
        print(f'{k}/c wall {med[k] / med["c"]:.3f} (per repetition {", ".join("%.3f" % p for p in per)}); '
              f'cpu {cpu[k] / cpu["c"]:.3f}')
