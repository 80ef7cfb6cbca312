"""LeafNet (../models/leaf_net.py); the case sets granularity threshold 1100, input_requires_grad, bucket 6000."""
import os
import sys

MODELS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'models'))
if MODELS not in sys.path:
    sys.path.insert(0, MODELS)
from leaf_net import LEAF_CLASSES, build_model, make_batch  # noqa: E402,F401
