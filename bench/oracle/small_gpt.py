"""Small GPT-2 (the GPT2LMHeadModel architecture) in plain torch, as a --model-file for run_zero3.py.

Config: vocab 4096, n_positions 128, n_embd 256, n_layer 4, n_head 4, n_inner 4*256, activation gelu_new
(tanh approximation), layer_norm_epsilon 1e-5, all dropouts 0, fp32, lm_head tied to wte (no bias).

Module names follow transformers:
  transformer.wte, transformer.wpe, transformer.drop,
  transformer.h.N.{ln_1, attn.{c_attn, c_proj, attn_dropout, resid_dropout}, ln_2, mlp.{c_fc, c_proj, act, dropout}},
  transformer.ln_f, lm_head
Conv1D: weight [in, out], y = x @ W + b.
Initialisation as GPT2PreTrainedModel._init_weights: N(0, 0.02) for Conv1D/Linear/Embedding weights, zero biases,
LayerNorm (1, 0), and N(0, 0.02/sqrt(2*n_layer)) for every block's attn.c_proj.weight and mlp.c_proj.weight.

Data: make_batch returns random tokens [batch, seq] as the input and the same tokens as the target; loss_fn is
next-token cross entropy (logits[:, :-1] against tokens[:, 1:]), mean over batch*(seq-1) tokens.

Run as a script to print the parameter count.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, N_POS, D, N_LAYER, N_HEAD = 4096, 128, 256, 4, 4
D_FF = 4 * D
LN_EPS = 1e-5
BATCH, SEQ = 4, 128

LEAF_CLASSES = ['GPT2Block']


class Conv1D(nn.Module):
    """transformers-style Conv1D(nf, nx): a linear layer whose weight is stored [nx (in), nf (out)]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        shape = x.shape[:-1] + (self.nf, )
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class NewGELUActivation(nn.Module):
    """gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):

    def __init__(self):
        super().__init__()
        self.n_head = N_HEAD
        self.head_dim = D // N_HEAD
        self.c_attn = Conv1D(3 * D, D)
        self.c_proj = Conv1D(D, D)
        self.attn_dropout = nn.Dropout(0.0)
        self.resid_dropout = nn.Dropout(0.0)
        # causal mask (transformers keeps it as a non-persistent buffer; a plain attribute here, so that ZeRO
        # and DDP have no buffer to broadcast)
        self._causal = torch.tril(torch.ones(N_POS, N_POS, dtype=torch.bool)).view(1, 1, N_POS, N_POS)

    def _split(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_dim).permute(0, 2, 1, 3)  # B, H, T, hd

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = self._split(q), self._split(k), self._split(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        mask = self._causal[:, :, :T, :T]
        w = torch.where(mask, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        w = F.softmax(w, dim=-1)
        w = self.attn_dropout(w)
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(a))


class GPT2MLP(nn.Module):

    def __init__(self):
        super().__init__()
        self.c_fc = Conv1D(D_FF, D)
        self.c_proj = Conv1D(D, D_FF)
        self.act = NewGELUActivation()
        self.dropout = nn.Dropout(0.0)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):

    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D, eps=LN_EPS)
        self.attn = GPT2Attention()
        self.ln_2 = nn.LayerNorm(D, eps=LN_EPS)
        self.mlp = GPT2MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D)
        self.wpe = nn.Embedding(N_POS, D)
        self.drop = nn.Dropout(0.0)
        self.h = nn.ModuleList(GPT2Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(D, eps=LN_EPS)

    def forward(self, input_ids):
        T = input_ids.shape[1]
        pos = torch.arange(T, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        h = self.drop(self.wte(input_ids) + self.wpe(pos))
        for blk in self.h:
            h = blk(h)
        return self.ln_f(h)


class GPT2LMHeadModel(nn.Module):

    def __init__(self):
        super().__init__()
        self.transformer = GPT2Model()
        self.lm_head = nn.Linear(D, VOCAB, bias=False)
        self._init_weights()
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, Conv1D)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if getattr(m, 'bias', None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * N_LAYER))

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


def build_model():
    return GPT2LMHeadModel()


def make_batch(step, rank, batch=BATCH, seq=SEQ):
    if seq > N_POS:
        raise ValueError(f'seq {seq} > n_positions {N_POS}')
    tokens = torch.randint(0, VOCAB, (batch, seq))
    return tokens, tokens


def loss_fn(logits, tokens):
    return F.cross_entropy(logits[:, :-1, :].reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))


EXPECTED_NUMEL = (VOCAB * D + N_POS * D + N_LAYER * (2 * D * 2 + D * 3 * D + 3 * D + D * D + D + D * D_FF + D_FF +
                                                   D_FF * D + D) + 2 * D)

if __name__ == '__main__':
    torch.manual_seed(0)
    m = build_model()
    n = sum(p.numel() for p in m.parameters())
    print(f'parameters: {len(list(m.parameters()))} tensors, {n:,} elements (expected {EXPECTED_NUMEL:,})')
    assert n == EXPECTED_NUMEL == 4240896
    assert m.lm_head.weight is m.transformer.wte.weight
    x, y = make_batch(0, 0)
    print('loss at init', float(loss_fn(m(x), y)), 'ln(vocab)', math.log(VOCAB))
