"""ChainNet (../models/chain_net.py); the case sets reduce_scatter false, reduce_bucket_size 3000."""
import os
import sys

MODELS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'models'))
if MODELS not in sys.path:
    sys.path.insert(0, MODELS)
from chain_net import build_model, make_batch  # noqa: E402,F401
