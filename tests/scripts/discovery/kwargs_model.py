"""A model called with a keyword argument: model(tokens, mask=mask). At --nan-step one sequence
in the batch is fully masked, so the softmax in the attention module's own forward returns NaN.
--skip-nonfinite: the script calls backward, sees the loss is not finite and skips that step
(it still trains afterwards), a common guard."""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        return self.proj(scores.softmax(-1) @ v)


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.attn = Attention(8)
        self.head = nn.Linear(8, 2)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.attn(self.embed(tokens), mask=mask)
        return self.head(h.mean(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--nan-step", type=int, default=-1)
    parser.add_argument("--skip-nonfinite", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(args.steps):
        tokens = torch.randint(0, 20, (4, 6))
        mask = torch.ones(4, 6, dtype=torch.bool)
        mask[:, 4:] = False  # padding
        if step == args.nan_step:
            mask[1] = False  # an empty sequence: every key is masked
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tokens, mask=mask), torch.randint(0, 2, (4,)))
        loss.backward()
        losses.append(loss.item())
        if args.skip_nonfinite and not torch.isfinite(loss):
            continue
        optimizer.step()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(losses, f)


if __name__ == "__main__":
    main()
