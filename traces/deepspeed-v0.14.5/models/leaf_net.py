"""LeafNet: two small EncBlock containers around a wide two-Linear middle, for z3 leaf selection
by the module-granularity rule.

Golden-trace model for zeroplan (traces/deepspeed-v0.14.5). Float inputs (batch, seq, 16), MSE
against (batch, seq, 4). Module tree:

    <root> LeafNet
      enc  EncBlock   fc Linear(16, 64) 1,088; norm LayerNorm(64) 128; fc2 Linear(64, 32) 2,080
      mix  Linear(32, 256)   8,448
      mix2 Linear(256, 32)   8,224
      dec  EncBlock   fc Linear(32, 64) 2,112; norm LayerNorm(64) 128; fc2 Linear(64, 32) 2,080
      head Linear(32, 4)       132

18 params, 24,420 elements. Granularity (params_in_subtree // layers_in_subtree, as in DeepSpeed
>= 0.16's stage3_module_granularity_threshold): enc 3,296 // 4 = 824, dec 4,320 // 4 = 1,080,
<root> 24,420 // 12 = 2,035. A threshold in [1,080, 2,035) makes enc and dec leaves but not the
root. enc receives the model input, so it needs driver.input_requires_grad (v0.14.5 rejects a leaf
none of whose inputs requires grad).

Oracle contract (run_zero3.py --model-file): build_model(), make_batch(step, rank, batch=, seq=),
LEAF_CLASSES; each case's model.py imports them from here. The zeroplan exporter contract
(make_batch(batch, seq)) is provided by ../export_adapter.py.
"""
import torch
from torch import nn

LEAF_CLASSES = ['EncBlock']


class EncBlock(nn.Module):

    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.fc = nn.Linear(d_in, d_hidden)
        self.norm = nn.LayerNorm(d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.fc2(torch.relu(self.norm(self.fc(x))))


class LeafNet(nn.Module):

    def __init__(self):
        super().__init__()
        self.enc = EncBlock(16, 64, 32)
        self.mix = nn.Linear(32, 256)
        self.mix2 = nn.Linear(256, 32)
        self.dec = EncBlock(32, 64, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.enc(x)
        h = h + self.mix2(torch.relu(self.mix(h)))
        return self.head(torch.relu(self.dec(h)))


def build_model():
    return LeafNet()


def make_batch(step, rank, batch=2, seq=8):
    # the oracle seeds torch's global RNG with seed*1000 + step*10 + rank before this call
    return torch.randn(batch, seq, 16), torch.randn(batch, seq, 4)
