"""A seeded run whose result must be bit-identical with and without torchdoctor: BatchNorm and
Dropout (so a replay that forgot to restore RNG or running statistics would show), a model copy
for an exponential moving average (copy.deepcopy of a module under watch), and, with --nan-step,
a batch with no valid targets: the masked mean is 0/0 = NaN, the script calls backward, sees it
and skips the step. torchdoctor replays that forward to localize the NaN; training must go on
exactly as without it. Everything is saved to --out."""

import argparse
import copy
import io

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--nan-step", type=int, default=-1)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.manual_seed(1234)
model = nn.Sequential(
    nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
    nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1),
)
ema = copy.deepcopy(model)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses, skipped = [], []
for step in range(args.steps):
    x = torch.randn(16, 6)
    y = x[:, :1] * 3 - x[:, 1:2]
    valid = torch.rand(16) > 0.2
    if step == args.nan_step:
        valid[:] = False
    optimizer.zero_grad()
    err = (model(x).squeeze(1) - y.squeeze(1)) ** 2
    loss = (err * valid).sum() / valid.sum()
    loss.backward()
    losses.append(loss.item())
    if not torch.isfinite(loss):
        skipped.append(step)
        continue
    optimizer.step()
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.mul_(0.9).add_(p, alpha=0.1)
buffer = io.BytesIO()
torch.save(model, buffer)  # pickling the whole module must work under watch too
torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "losses": torch.tensor(losses),
            "skipped": skipped, "rng": torch.get_rng_state(), "x": torch.randn(3)}, args.out)
