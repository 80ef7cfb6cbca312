"""ReuseMLP: a five-Linear MLP whose `mid` layer is applied twice in every forward.

Golden-trace model for zeroplan (traces/deepspeed-v0.14.5). Float inputs (batch, seq, 16), MSE
against (batch, seq, 4). ReLU is applied functionally, so the module tree is exactly

    <root> ReuseMLP
      inp  Linear(16, 32)   512 + 32
      mid  Linear(32, 32)  1024 + 32   <- called twice: after inp and again after back
      big  Linear(32, 96)  3072 + 96
      back Linear(96, 32)  3072 + 32
      out  Linear(32, 4)    128 + 4

10 params, 8,004 elements. Forward call order: <root>, inp, mid, big, back, mid, out.
Between the two calls of `mid` the forward touches big and back: 3,168 + 3,104 = 6,272 elements.

Oracle contract (run_zero3.py --model-file): build_model(), make_batch(step, rank, batch=, seq=);
each case's model.py imports them from here. The zeroplan exporter contract (make_batch(batch, seq))
is provided by ../export_adapter.py.
"""
import torch
from torch import nn

D_IN, D, D_BIG, D_OUT = 16, 32, 96, 4


class ReuseMLP(nn.Module):

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(D_IN, D)
        self.mid = nn.Linear(D, D)
        self.big = nn.Linear(D, D_BIG)
        self.back = nn.Linear(D_BIG, D)
        self.out = nn.Linear(D, D_OUT)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = torch.relu(self.mid(h))          # first call of mid
        h = torch.relu(self.big(h))
        h = torch.relu(self.back(h))
        h = torch.relu(self.mid(h))          # second call of mid (same parameters)
        return self.out(h)


def build_model():
    return ReuseMLP()


def make_batch(step, rank, batch=2, seq=8):
    # the oracle seeds torch's global RNG with seed*1000 + step*10 + rank before this call
    return torch.randn(batch, seq, D_IN), torch.randn(batch, seq, D_OUT)
