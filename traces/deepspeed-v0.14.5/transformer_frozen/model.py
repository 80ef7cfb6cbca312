"""TinyGPT (../models/tiny_gpt.py); the case freezes pos.weight and blocks.0.mlp.fc.weight, bucket 3000."""
import os
import sys

MODELS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'models'))
if MODELS not in sys.path:
    sys.path.insert(0, MODELS)
from tiny_gpt import LEAF_CLASSES, loss_fn, make_batch  # noqa: E402,F401
import tiny_gpt  # noqa: E402


def build_model():
    return tiny_gpt.build_model(frozen=['pos.weight', 'blocks.0.mlp.fc.weight'])
