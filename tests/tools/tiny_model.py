"""A tiny language model for tests/tools/export_model_test.cpp.

Small enough that every number the exporter writes can be worked out by hand, and built to exercise
each rule: integer token ids into an Embedding (so its call has inputs_require_grad false), a head
Linear whose weight is the embedding's (a tied parameter), Linears with and without bias, a
LayerNorm, and a ReLU that Block.forward calls twice on tensors of different sizes (so the exporter's
"costs of the first call" rule shows).
"""

import torch
from torch import nn

VOCAB = 11
HIDDEN = 8
FFN = 16


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(HIDDEN, FFN)
        self.act = nn.ReLU()
        self.norm = nn.LayerNorm(FFN)
        self.proj = nn.Linear(FFN, HIDDEN)

    def forward(self, x):
        h = self.norm(self.act(self.fc(x)))
        return self.act(self.proj(h)) + x


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.block = Block()
        self.head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.block(self.embed(ids)))


def build_model():
    return TinyModel()


def make_batch(batch, seq):
    return torch.randint(0, VOCAB, (batch, seq), dtype=torch.int64)
