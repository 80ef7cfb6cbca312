"""PersistNet: Linear / LayerNorm alternation with many small parameters of distinct sizes.

Golden-trace model for zeroplan (traces/deepspeed-v0.14.5), for ZeRO-3 parameter persistence.
Float inputs (batch, seq, 16), MSE against (batch, seq, 8). Module tree and parameters, in
named_parameters() order (the order DeepSpeed's mark_persistent_parameters walks):

    <root> PersistNet
      fc1   Linear(16, 24)   fc1.weight 384, fc1.bias 24
      norm1 LayerNorm(24)    norm1.weight 24, norm1.bias 24
      fc2   Linear(24, 40)   fc2.weight 960, fc2.bias 40
      norm2 LayerNorm(40)    norm2.weight 40, norm2.bias 40
      fc3   Linear(40, 8)    fc3.weight 320, fc3.bias 8

10 params, 1,864 elements; the seven params of <= 40 elements total 200.

Oracle contract (run_zero3.py --model-file): build_model(), make_batch(step, rank, batch=, seq=);
each case's model.py imports them from here. The zeroplan exporter contract (make_batch(batch, seq))
is provided by ../export_adapter.py.
"""
import torch
from torch import nn


class PersistNet(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 24)
        self.norm1 = nn.LayerNorm(24)
        self.fc2 = nn.Linear(24, 40)
        self.norm2 = nn.LayerNorm(40)
        self.fc3 = nn.Linear(40, 8)

    def forward(self, x):
        h = torch.tanh(self.norm1(self.fc1(x)))
        h = torch.tanh(self.norm2(self.fc2(h)))
        return self.fc3(h)


def build_model():
    return PersistNet()


def make_batch(step, rank, batch=2, seq=8):
    # the oracle seeds torch's global RNG with seed*1000 + step*10 + rank before this call
    return torch.randn(batch, seq, 16), torch.randn(batch, seq, 8)
