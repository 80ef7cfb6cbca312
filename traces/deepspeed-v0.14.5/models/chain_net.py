"""ChainNet: five Linear layers of distinct sizes, applied once each, in registration order.

Golden-trace model for zeroplan (traces/deepspeed-v0.14.5). Float inputs (batch, seq, 16), MSE
against (batch, seq, 8). ReLU is applied functionally, so the module tree is exactly

    <root> ChainNet
      l0 Linear(16, 48)    768 + 48
      l1 Linear(48, 48)   2304 + 48
      l2 Linear(48, 96)   4608 + 96
      l3 Linear(96, 48)   4608 + 48
      l4 Linear(48, 8)     384 + 8

10 params, 12,920 elements; ds_ids 0..9 in that order. Forward call order: <root>, l0, l1, l2, l3, l4.
The distinct sizes make every prefetch cut-off and every gradient bucket boundary visible.

Oracle contract (run_zero3.py --model-file): build_model(), make_batch(step, rank, batch=, seq=);
each case's model.py imports them from here. The zeroplan exporter contract (make_batch(batch, seq))
is provided by ../export_adapter.py.
"""
import torch
from torch import nn

WIDTHS = [16, 48, 48, 96, 48, 8]


class ChainNet(nn.Module):

    def __init__(self):
        super().__init__()
        for i in range(len(WIDTHS) - 1):
            setattr(self, f'l{i}', nn.Linear(WIDTHS[i], WIDTHS[i + 1]))

    def forward(self, x):
        n = len(WIDTHS) - 1
        for i in range(n):
            x = getattr(self, f'l{i}')(x)
            if i < n - 1:
                x = torch.relu(x)
        return x


def build_model():
    return ChainNet()


def make_batch(step, rank, batch=2, seq=8):
    # the oracle seeds torch's global RNG with seed*1000 + step*10 + rank before this call
    return torch.randn(batch, seq, WIDTHS[0]), torch.randn(batch, seq, WIDTHS[-1])
