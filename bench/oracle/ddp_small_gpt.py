#!/usr/bin/env python3
"""Baseline for the ZeRO-3 timing: plain data parallelism (torch DistributedDataParallel over Gloo, 2 ranks, CPU)
on small_gpt.py, with the same model init, data and client SGD as run_zero3.py.

  * model: torch.manual_seed(seed); small_gpt.build_model()   (as the driver does)
  * data: before each make_batch(step, rank, batch, seq) call, torch.manual_seed(seed*1000 + step*10 + rank),
    all steps' batches generated before training (as the driver does)
  * optimizer: torch.optim.SGD(lr=0.05), gradients averaged over the ranks by DDP (default bucket sizes)
  * OMP_NUM_THREADS=1 and torch.set_num_threads(1) in each rank

Step time = wall time of rank 0 for forward + loss + backward + optimizer.step() (+ zero_grad(set_to_none)),
i.e. the same span the ZeRO-3 timing uses.  Prints per-step times and 'MEDIAN_STEP_S x' (median over steps >=
warmup).  The script starts the ranks itself (subprocess, re-executing this file with RANK/WORLD_SIZE set).

Usage: /usr/bin/python3 ddp_small_gpt.py [--steps 12] [--warmup 2] [--batch 4] [--seq 128] [--port 29544]
           [--times-json F] [--label L]
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model-file', default=os.path.join(HERE, 'small_gpt.py'))
    ap.add_argument('--steps', type=int, default=12)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--seq', type=int, default=128)
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--lr', type=float, default=0.05)
    ap.add_argument('--world-size', type=int, default=2)
    ap.add_argument('--port', type=int, default=29544)
    ap.add_argument('--out', default='/tmp/ddp_small_gpt', help='prefix of the per-rank result files and logs')
    ap.add_argument('--times-json', default=None, help='append a JSON line with the result to this file')
    ap.add_argument('--label', default='')
    return ap.parse_args()


def loadavg():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def worker(a):
    rank, ws = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location('small_gpt_model', a.model_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loss_fn = mod.loss_fn

    dist.init_process_group('gloo', rank=rank, world_size=ws)
    rng = torch.get_rng_state()
    batches = []
    for step in range(a.steps):
        torch.manual_seed(a.seed * 1000 + step * 10 + rank)
        batches.append(mod.make_batch(step, rank, batch=a.batch, seq=a.seq))
    torch.set_rng_state(rng)
    torch.manual_seed(a.seed)
    model = mod.build_model()
    ddp = DDP(model)  # broadcasts rank 0's parameters (identical anyway: same seed)
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr)
    rows = []
    dist.barrier()
    for step in range(a.steps):
        x, y = batches[step]
        t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_fn(ddp(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3, c3 = time.perf_counter(), time.process_time()
        rows.append(dict(step=step, total=t3 - t0, forward=t1 - t0, backward=t2 - t1, optimizer_step=t3 - t2,
                         cpu=c3 - c0, loss=float(loss.item())))
    with torch.no_grad():
        csum = float(sum(p.double().sum().item() for p in model.parameters()))
    with open(f'{a.out}.rank{rank}.json', 'w') as f:
        json.dump(dict(rank=rank, steps=rows, param_checksum=csum), f)
    dist.barrier()
    dist.destroy_process_group()


def launch(a):
    procs = []
    for r in range(a.world_size):
        env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(a.port), RANK=str(r),
                   WORLD_SIZE=str(a.world_size), OMP_NUM_THREADS='1')
        log = open(f'{a.out}.rank{r}.log', 'w')
        procs.append((subprocess.Popen([sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    rcs = [p.wait() for p, _ in procs]
    for _, log in procs:
        log.close()
    if any(rcs):
        for r in range(a.world_size):
            print(f'==== rank {r} rc={rcs[r]} ====')
            print(open(f'{a.out}.rank{r}.log').read()[-4000:])
        sys.exit(1)
    res = [json.load(open(f'{a.out}.rank{r}.json')) for r in range(a.world_size)]
    r0 = res[0]['steps']
    for row in r0:
        print('rank0 step %2d  total %.4f s  (fwd+loss %.4f, bwd %.4f, opt %.4f)  process cpu %.4f s  loss %.6f / %.6f'
              % (row['step'], row['total'], row['forward'], row['backward'], row['optimizer_step'], row['cpu'],
                 row['loss'], res[1]['steps'][row['step']]['loss'] if len(res) > 1 else float('nan')))
    kept = [row['total'] for row in r0 if row['step'] >= a.warmup]
    med = statistics.median(kept)
    med1 = statistics.median([row['total'] for row in res[-1]['steps'] if row['step'] >= a.warmup])
    med_cpu = statistics.median([row['cpu'] for row in r0 if row['step'] >= a.warmup])
    print('param checksum %.10f' % res[0]['param_checksum'])
    print('MEDIAN_STEP_S %.4f  (rank0, steps %d..%d; rank1 median %.4f; rank0 median process CPU %.4f s; loadavg %s)'
          % (med, a.warmup, len(r0) - 1, med1, med_cpu, loadavg()))
    if a.times_json:
        with open(a.times_json, 'a') as f:
            f.write(json.dumps(dict(kind='ddp', label=a.label, median_s=med, median_rank1_s=med1, median_cpu_s=med_cpu,
                                    loadavg=loadavg(), warmup=a.warmup, rank0_steps=r0,
                                    param_checksum=res[0]['param_checksum'])) + '\n')


if __name__ == '__main__':
    args = parse()
    if 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:
        worker(args)
    else:
        launch(args)
