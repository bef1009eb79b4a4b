"""A tiny attention classifier over padded token sequences. Padding positions are masked with
masked_fill(mask, -inf) before the softmax, as every transformer does: an intentional -inf that
must not be mistaken for a fault. The run is healthy. (With --min-len 0, empty sequences get
a row of scores that is all -inf, softmax returns NaN: that one is a real bug, found in `attn`.)

    python examples/healthy_masked_attention.py --epochs 3
"""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

VOCAB, PAD, MAX_LEN = 32, 0, 12


def make_data(n: int = 384, min_len: int = 3) -> TensorDataset:
    """Label: does token 7 occur in the (variable length, zero padded) sequence?"""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(min_len, MAX_LEN + 1, (n,), generator=g)
    tokens = torch.randint(1, VOCAB, (n, MAX_LEN), generator=g)
    positions = torch.arange(MAX_LEN).unsqueeze(0)
    tokens = tokens.masked_fill(positions >= lengths.unsqueeze(1), PAD)
    labels = (tokens == 7).any(dim=1).long()
    return TensorDataset(tokens, labels)


class MaskedSelfAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / math.sqrt(x.shape[-1])
        scores = scores.masked_fill(pad.unsqueeze(1), float("-inf"))
        return self.out(torch.softmax(scores, dim=-1) @ v)


class Classifier(nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.attn = MaskedSelfAttention(dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == PAD
        h = self.norm(self.embed(tokens) + self.attn(self.embed(tokens), pad))
        h = h.masked_fill(pad.unsqueeze(-1), 0.0).sum(1) / (~pad).sum(1, keepdim=True)
        return self.head(h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-len", type=int, default=3, help="0 lets empty sequences in: a real bug")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = DataLoader(make_data(min_len=args.min_len), batch_size=32, shuffle=True)
    for epoch in range(args.epochs):
        total = 0.0
        for tokens, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(tokens), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.4f}")


if __name__ == "__main__":
    main()
