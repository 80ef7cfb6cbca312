"""TinyGPT (../models/tiny_gpt.py); the case sets nothing beyond the common settings (prefetch off)."""
import os
import sys

MODELS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'models'))
if MODELS not in sys.path:
    sys.path.insert(0, MODELS)
from tiny_gpt import LEAF_CLASSES, build_model, loss_fn, make_batch  # noqa: E402,F401
