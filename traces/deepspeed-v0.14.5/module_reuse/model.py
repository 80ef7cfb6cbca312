"""ReuseMLP (../models/reuse_mlp.py); the case sets stage3_prefetch_bucket_size 1100."""
import os
import sys

MODELS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'models'))
if MODELS not in sys.path:
    sys.path.insert(0, MODELS)
from reuse_mlp import build_model, make_batch  # noqa: E402,F401
