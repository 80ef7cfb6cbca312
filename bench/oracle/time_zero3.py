#!/usr/bin/env python3
"""Per-step wall time of the oracle's run_zero3.py ($ORACLE/run_zero3.py) (real DeepSpeed ZeRO-3, CPU, Gloo), without editing it.

The driver is imported as a module and patched at run time:
  * Tracer.emit is wrapped to take time.perf_counter() at the driver's own step markers: 'phase_begin' of the
    forward / backward / optimizer_step phases and 'step_end'.  Step time = step_end - forward phase_begin,
    i.e. engine(x) + loss_fn + engine.backward(loss) + engine.step() for one step, on each rank.
  * The launcher is the driver's own launch(); the driver module's __file__ is pointed at this file so that the
    spawned ranks run this wrapper (which then calls the driver's main()).
  * --no-trace (default: on; --trace keeps the full trace): the driver's ZeRO-3 tracing wrappers, the JSON
    trace output, the per-collective records and the global forward hooks are not installed/written, so that
    the timing is DeepSpeed's own.  The Gloo collective shims (synchronous collectives, all_gather and
    all_reduce+slice emulations) are always kept: DeepSpeed cannot run on torch 1.13 Gloo without them.

Usage (all driver options pass through):
  DS_SRC=/tmp/deepspeed-src /usr/bin/python3 time_zero3.py [--trace] [--warmup 2] [--times-json F] \
      --config zero3_defaults.json --model-file small_gpt.py --batch 4 --seq 128 --steps 12 --out /tmp/t.jsonl
Prints per-step times of rank 0 and 'MEDIAN_STEP_S <x>' (median over steps >= warmup).
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

DRIVER = os.path.join(os.environ.get('ORACLE', ''), 'run_zero3.py')
HERE = os.path.abspath(__file__)


def load_driver():
    if not os.path.isfile(DRIVER):
        sys.exit('time_zero3.py: set ORACLE to the oracle folder (the one holding run_zero3.py)')
    spec = importlib.util.spec_from_file_location('run_zero3', DRIVER)
    rz = importlib.util.module_from_spec(spec)
    sys.modules['run_zero3'] = rz
    spec.loader.exec_module(rz)
    rz.__file__ = HERE  # launch() re-executes os.path.abspath(__file__) for each rank -> this wrapper
    return rz


def patch_worker(rz):
    notrace = os.environ.get('ZERO3_TIMER_NOTRACE') == '1'
    times = {}  # step -> {marker: perf_counter}
    cpu = {}  # step -> {marker: process_time} (CPU time of this rank's process, all threads)
    orig_emit = rz.Tracer.emit

    def emit(self, ev, **kw):
        if ev == 'phase_begin' or ev == 'step_end':
            key = self.phase if ev == 'phase_begin' else 'end'
            times.setdefault(self.step, {})[key] = time.perf_counter()
            cpu.setdefault(self.step, {})[key] = time.process_time()
        if notrace and ev not in ('meta', 'final', 'error'):
            return
        return orig_emit(self, ev, **kw)

    rz.Tracer.emit = emit

    if notrace:
        rz.install_zero3_tracing = lambda: None
        rz.Tracer.coll = lambda self, *a, **k: None

        class NoExecOrder:

            def __init__(self, *a, **k):
                pass

            def start(self):
                pass

            def stop(self):
                return {}

        rz.ExecOrderRecorder = NoExecOrder

    orig_worker = rz.worker

    def worker(args):
        try:
            orig_worker(args)
        finally:
            rank = int(os.environ['RANK'])
            rows = []
            for step in sorted(s for s in times if s >= 0):
                t = times[step]
                if 'forward' in t and 'end' in t:
                    rows.append(dict(step=step, total=t['end'] - t['forward'],
                                     forward=t.get('backward', t['end']) - t['forward'],
                                     backward=t.get('optimizer_step', t['end']) - t.get('backward', t['forward']),
                                     optimizer_step=t['end'] - t.get('optimizer_step', t['end']),
                                     cpu=cpu[step]['end'] - cpu[step]['forward']))
            with open(os.path.abspath(args.out) + f'.steptimes.rank{rank}.json', 'w') as f:
                json.dump(dict(rank=rank, notrace=notrace, steps=rows), f)

    rz.worker = worker


def loadavg():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def main():
    if 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:  # a rank spawned by the driver's launch()
        rz = load_driver()
        patch_worker(rz)
        rz.main()
        return
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument('--trace', action='store_true', help='keep the driver full tracing (slower)')
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--times-json', default=None, help='append a JSON line with the result to this file')
    ap.add_argument('--label', default='')
    own, rest = ap.parse_known_args()
    sys.argv = [sys.argv[0]] + rest
    os.environ['ZERO3_TIMER_NOTRACE'] = '0' if own.trace else '1'
    rz = load_driver()
    args = rz.parse_args()
    wall0 = time.time()
    rz.launch(args)
    out = os.path.abspath(args.out)
    res = {}
    for r in range(args.world_size):
        p = f'{out}.steptimes.rank{r}.json'
        with open(p) as f:
            res[r] = json.load(f)['steps']
    r0 = res[0]
    for row in r0:
        print('rank0 step %2d  total %.4f s  (fwd+loss %.4f, bwd %.4f, opt %.4f)  process cpu %.4f s' %
              (row['step'], row['total'], row['forward'], row['backward'], row['optimizer_step'], row['cpu']))
    kept = [row['total'] for row in r0 if row['step'] >= own.warmup]
    med = statistics.median(kept)
    med1 = statistics.median([row['total'] for row in res.get(1, r0) if row['step'] >= own.warmup])
    med_cpu = statistics.median([row['cpu'] for row in r0 if row['step'] >= own.warmup])
    print('MEDIAN_STEP_S %.4f  (rank0, steps %d..%d; rank1 median %.4f; rank0 median process CPU %.4f s; '
          'trace=%s; loadavg %s)' % (med, own.warmup, len(r0) - 1, med1, med_cpu, own.trace, loadavg()))
    if own.times_json:
        with open(own.times_json, 'a') as f:
            f.write(json.dumps(dict(kind='zero3', label=own.label, config=args.config, trace=own.trace,
                                    median_s=med, median_rank1_s=med1, median_cpu_s=med_cpu, loadavg=loadavg(), warmup=own.warmup,
                                    rank0_steps=r0, started=wall0)) + '\n')


if __name__ == '__main__':
    main()
