"""TinyGPT: a small causal transformer with tied input/output embeddings and token-id inputs.

Golden-trace model for zeroplan (traces/deepspeed-v0.14.5). Inputs: token ids (batch, seq) int64
in [0, 40); targets: token ids; loss: cross-entropy. No dropout. Module tree (named_modules order,
which is also DeepSpeed's module-id order when no module is a z3 leaf):

    <root> TinyGPT
      tok   Embedding(40, 32)                      tok.weight 1,280 (tied: head.weight is the same Parameter)
      pos   Embedding(8, 32)                       pos.weight 256
      blocks ModuleList
        blocks.{0,1} Block
          ln1  LayerNorm(32)                       32 + 32
          attn CausalSelfAttention
            qkv  Linear(32, 96)                    3,072 + 96
            proj Linear(32, 32)                    1,024 + 32
          ln2  LayerNorm(32)                       32 + 32
          mlp  MLP
            fc   Linear(32, 64)                    2,048 + 64
            act  GELU
            proj Linear(64, 32)                    2,048 + 32
      ln_f  LayerNorm(32)                          32 + 32
      head  Linear(32, 40, bias=False)             weight = tok.weight (no parameter of its own)

28 distinct params, 18,688 elements (the tied weight counted once).
Forward call order per step (25 calls; the ModuleList `blocks` itself is never called): <root>, tok,
pos, then per block: block, ln1, attn, attn.qkv, attn.proj, ln2, mlp, mlp.fc, mlp.act, mlp.proj;
then ln_f, head.

build_model(frozen) sets requires_grad=False on the parameters named in frozen (default: none).
transformer_frozen passes pos.weight (a whole module frozen, fed integer positions) and
blocks.0.mlp.fc.weight (a frozen weight inside the network).

Oracle contract (run_zero3.py --model-file): build_model(frozen=()), make_batch(step, rank, batch=,
seq=), loss_fn, LEAF_CLASSES; each case's model.py imports them from here. The zeroplan exporter
contract (make_batch(batch, seq)) is provided by ../export_adapter.py.
"""
import torch
from torch import nn
from torch.nn import functional as F

VOCAB, D, HEADS, FF, CTX, N_LAYER = 40, 32, 4, 64, 8, 2
LEAF_CLASSES = ['Block']


class CausalSelfAttention(nn.Module):

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q, k, v = (z.reshape(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / (c // HEADS)**0.5)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float('-inf'))
        y = torch.softmax(scores, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D, FF)
        self.act = nn.GELU()
        self.proj = nn.Linear(FF, D)

    def forward(self, x):
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):

    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.attn = CausalSelfAttention()
        self.ln2 = nn.LayerNorm(D)
        self.mlp = MLP()

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(CTX, D)
        self.blocks = nn.ModuleList([Block() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        self.head.weight = self.tok.weight  # tied input/output embedding
        nn.init.normal_(self.tok.weight, std=0.02)  # GPT-style small embedding init (tied logits stay small)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok(ids) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build_model(frozen=()):
    model = TinyGPT()
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return model


def make_batch(step, rank, batch=2, seq=8):
    # the oracle seeds torch's global RNG with seed*1000 + step*10 + rank before this call
    ids = torch.randint(0, VOCAB, (batch, seq), dtype=torch.int64)
    targets = torch.randint(0, VOCAB, (batch, seq), dtype=torch.int64)
    return ids, targets


def loss_fn(logits, targets):
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
