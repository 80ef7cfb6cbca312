"""Adapter from the oracle's model-file contract to zeroplan's exporter contract, for every case.

The oracle (run_zero3.py) calls make_batch(step, rank, batch=, seq=) -> (inputs, targets);
tools/export_model.py calls make_batch(batch, seq) -> inputs. This file imports model.py from the case
folder named by the environment variable GOLDEN_CASE and offers the exporter's contract:

  * build_model(): model.build_model();
  * make_batch(batch, seq): the inputs of model.make_batch(0, 0, batch=batch, seq=seq) (the targets
    are dropped). When the case's ds_config.json sets driver.input_requires_grad, the floating-point
    inputs are marked requires_grad, as the oracle's driver does, so that the exported calls'
    inputs_require_grad matches the traced run.

Usage: GOLDEN_CASE=<case> /usr/bin/python3 tools/export_model.py traces/deepspeed-v0.14.5/export_adapter.py \
           --out <case>/model.json --batch 2 --seq 8 --name <case name>
"""
import importlib.util
import json
import os

import torch

CASE = os.environ.get('GOLDEN_CASE', '')
if not CASE:
    raise RuntimeError('GOLDEN_CASE is not set: set it to the case folder to export, e.g. '
                       'GOLDEN_CASE=traces/deepspeed-v0.14.5/module_reuse')
CASE = os.path.abspath(CASE)
if not os.path.isfile(os.path.join(CASE, 'model.py')):
    raise RuntimeError(f'GOLDEN_CASE={CASE} is not a case folder: it has no model.py')
_spec = importlib.util.spec_from_file_location('zeroplan_golden_case_model', os.path.join(CASE, 'model.py'))
_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model)


def _input_requires_grad():
    try:
        with open(os.path.join(CASE, 'ds_config.json')) as f:
            return bool((json.load(f).get('driver') or {}).get('input_requires_grad'))
    except (OSError, ValueError):
        return False


def build_model():
    return _model.build_model()


def make_batch(batch, seq):
    inputs, _targets = _model.make_batch(0, 0, batch=batch, seq=seq)
    if _input_requires_grad():
        for t in (inputs if isinstance(inputs, (tuple, list)) else (inputs, )):
            if torch.is_tensor(t) and t.is_floating_point():
                t.requires_grad_(True)
    return inputs
