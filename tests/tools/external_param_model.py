"""A model whose submodule returns its own parameter: the caller uses it (DeepSpeed registers it on
the caller as an external parameter)."""
import torch
import torch.nn as nn


class Gain(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))

    def forward(self):
        return self.weight


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.gain = Gain()

    def forward(self, x):
        return self.proj(x) * self.gain()


def build_model():
    return Net()


def make_batch(batch, seq):
    return torch.randn(batch, seq, 4)
