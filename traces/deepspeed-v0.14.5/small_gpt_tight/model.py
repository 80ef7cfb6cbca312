"""bench/oracle's small GPT (GPT-2 style: 4 blocks, hidden 256, vocabulary 4096, tied head), the model
of exec's speed comparison; the case sets that comparison's tight thresholds."""
import os
import sys

BENCH = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'bench', 'oracle'))
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
from small_gpt import LEAF_CLASSES, build_model, loss_fn, make_batch  # noqa: E402,F401
