#!/usr/bin/env python3
"""Cross-check one golden-trace case folder: the oracle's trace.jsonl against zeroplan's model.json.

Usage: python3 verify_case.py CASE_DIR [CASE_DIR ...]
       python3 verify_case.py --sanitize RAW_TRACE OUT_TRACE

--sanitize copies a freshly recorded trace, naming the model file and the DeepSpeed source in its
meta events relative to the case rather than by where they were on the recording machine.

For each case folder (model.py, ds_config.json, trace.jsonl, model.json) it checks that
  1. the trace is complete: a meta, modules, final event and a step_summary for every (rank, step),
     and no error event;
  2. model.json's parameters (names, shapes; requires_grad where the trace can tell) equal the
     oracle's meta.params (named_parameters() order, which is also DeepSpeed's ds_id order);
  3. model.json's module tree, walked depth first in registration order (the order of named_modules()),
     gives the same qualified names, types and directly registered parameters as the oracle's modules
     event, in the same order (a tied weight is listed under every module holding it in both);
  4. the oracle's ZeRO module ids are DeepSpeed's registration order: 0, 1, 2, ... over that walk,
     skipping the modules inside a z3 leaf (they get no id), and the z3 leaf flags agree with
     meta.z3_leaf_modules;
  5. model.json's forward calls (module and parent call) equal the oracle's exec_order of every step
     and rank;
  6. both ranks recorded the same modules event and exec_order.
Prints one line per case (OK or the first problems) and exits 1 if any case failed.
"""
import json
import os
import sys


def load_trace(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def qualified_modules(model):
    """[(qualified name, type, [param names])] in depth-first registration order from module 0"""
    mods, params = model['modules'], model['parameters']
    out = []

    def walk(i, qname):
        m = mods[i]
        out.append((qname or '<root>', m['type'], [params[s['param']]['name'] for s in m['params']], i))
        for c in m['children']:
            walk(c, f"{qname}.{mods[c]['name']}" if qname else mods[c]['name'])

    walk(0, '')
    return out


def check_case(case):
    problems = []
    trace = load_trace(os.path.join(case, 'trace.jsonl'))
    with open(os.path.join(case, 'model.json')) as f:
        model = json.load(f)

    errors = [r for r in trace if r['ev'] == 'error']
    if errors:
        problems.append(f"trace has an error event: {errors[0]['error']}: {errors[0]['message'][:200]}")
    meta = {r['rank']: r for r in trace if r['ev'] == 'meta'}
    if 0 not in meta:
        return ['no meta event for rank 0']
    ws, steps = meta[0]['world_size'], meta[0]['steps']
    summaries = {(r['rank'], r['step']) for r in trace if r['ev'] == 'step_summary'}
    missing = [(rk, s) for rk in range(ws) for s in range(-1, steps) if (rk, s) not in summaries]
    if missing:
        problems.append(f'missing step_summary for (rank, step) {missing}')
    if sum(1 for r in trace if r['ev'] == 'final') != ws:
        problems.append('missing final event')

    # 2. parameters
    mp = [(p['name'], list(p['shape'])) for p in model['parameters']]
    tp = [(p['name'], list(p['shape'])) for p in meta[0]['params']]
    if mp != tp:
        problems.append(f'parameters differ: model.json {mp[:4]}... vs trace meta {tp[:4]}...')
    reduced = set()
    for r in trace:
        if r['ev'] == 'grad_reduce_scatter':
            reduced.update(p['name'] for p in r['params'])
    frozen_json = {p['name'] for p in model['parameters'] if not p.get('requires_grad', True)}
    if reduced and frozen_json & reduced:
        problems.append(f'params frozen in model.json but reduced in the trace: {sorted(frozen_json & reduced)}')
    never = {p['name'] for p in model['parameters']} - reduced
    if never != frozen_json:
        problems.append(f'params never reduced in the trace {sorted(never)} != frozen in model.json '
                        f'{sorted(frozen_json)}')

    # 3. modules
    modev = {r['rank']: r for r in trace if r['ev'] == 'modules'}
    tm = modev[0]['modules']
    qm = qualified_modules(model)
    if [(n, t, ps) for n, t, ps, _ in qm] != [(m['name'], m['type'], m['params']) for m in tm]:
        for a, b in zip(qm, tm):
            if (a[0], a[1], a[2]) != (b['name'], b['type'], b['params']):
                problems.append(f"module differs: model.json {a[:3]} vs trace {b['name'], b['type'], b['params']}")
                break
        else:
            problems.append(f'module count differs: model.json {len(qm)} vs trace {len(tm)}')

    # 4. ZeRO ids = registration order, skipping the inside of z3 leaves
    leaves = set(meta[0].get('z3_leaf_modules') or [])
    expect, next_id = [], 0
    inside = []  # names of leaf modules whose subtree we are in
    for m in tm:
        n = m['name']
        in_leaf = any(n.startswith(leaf + '.') for leaf in inside)
        if in_leaf:
            expect.append(None)
        else:
            expect.append(next_id)
            next_id += 1
            if m['z3_leaf']:
                inside.append(n)
    got = [m['id'] for m in tm]
    if got != expect:
        problems.append(f'ZeRO module ids {got} != registration order {expect}')
    flagged = {m['name'] for m in tm if m['z3_leaf']}
    if flagged != leaves:
        problems.append(f'z3_leaf flags {sorted(flagged)} != meta.z3_leaf_modules {sorted(leaves)}')

    # 5. forward calls
    names = [q[0] for q in qm]
    jcalls = [(names[[q[3] for q in qm].index(c['module'])], c['parent']) for c in model['calls']]
    for r in trace:
        if r['ev'] == 'exec_order':
            tcalls = list(zip(r['modules'], r['parent']))
            if tcalls != jcalls:
                problems.append(f"calls differ at rank {r['rank']} step {r['step']}: model.json {jcalls[:6]}... "
                                f"vs exec_order {tcalls[:6]}...")
                break

    # 6. ranks agree
    for rk in range(1, ws):
        if modev.get(rk, {}).get('modules') != tm:
            problems.append(f'modules event of rank {rk} differs from rank 0')
    orders = {}
    for r in trace:
        if r['ev'] == 'exec_order':
            orders.setdefault(r['step'], []).append(r['modules'])
    for s, lst in orders.items():
        if any(o != lst[0] for o in lst):
            problems.append(f'exec_order differs between ranks at step {s}')
    return problems


def sanitize(raw, out):
    with open(raw) as src:
        lines = src.readlines()
    with open(out + '.tmp', 'w') as dst:
        for line in lines:
            event = json.loads(line)
            if event.get('ev') == 'meta':
                if event.get('model_file'):
                    event['model_file'] = os.path.basename(event['model_file'])
                if event.get('deepspeed_src'):
                    event['deepspeed_src'] = 'deepspeed-src (v%s)' % event.get('deepspeed_src_version', '?')
                line = json.dumps(event) + '\n'
            dst.write(line)
    os.replace(out + '.tmp', out)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == '--sanitize':
        sanitize(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bad = 0
    for case in sys.argv[1:]:
        if not os.path.exists(os.path.join(case, 'ds_config.json')):
            continue  # not a case folder (models/, ...)
        try:
            problems = check_case(case)
        except (OSError, ValueError, KeyError, IndexError) as e:
            problems = [f'{type(e).__name__}: {e}']
        name = os.path.basename(os.path.normpath(case))
        if problems:
            bad += 1
            print(f'{name}: FAIL')
            for p in problems:
                print(f'  {p}')
        else:
            print(f'{name}: OK (model.json params, modules, ZeRO ids and calls match the trace)')
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
