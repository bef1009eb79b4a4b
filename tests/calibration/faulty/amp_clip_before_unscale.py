"""FAULTY: mixed precision with a GradScaler, the gradients clipped before scaler.unscale_
(`--fixed`: unscale_ first, the documented recipe). float16 autocast on CPU, torch.amp.GradScaler("cpu").

What is wrong: clip_grad_norm_(max_norm=1.0) measures gradients still multiplied by the loss scale
(65536 and up), so it shrinks them by about the scale; scaler.step then divides by the scale again.
The true update is max_norm / scale = 1.5e-5 in norm: with SGD the model barely moves (the loss
stays at 1.93 over 4 epochs, 128 steps) while the fixed twin is at 0.22 after one epoch.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true", help="scaler.unscale_(optimizer) before the clip")
    args = parser.parse_args()
    torch.manual_seed(0)
    centers = torch.randn(6, 24) * 1.5
    y = torch.randint(0, 6, (2048,))
    x = centers[y] + torch.randn(2048, 24)
    model = nn.Sequential(nn.Linear(24, 128), nn.GELU(), nn.Linear(128, 6))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu")
    for epoch in range(4):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x[idx]), y[idx])
            scaler.scale(loss).backward()
            if args.fixed:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            scaler.step(optimizer)
            scaler.update()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4f} scale {scaler.get_scale():.0f}")


if __name__ == "__main__":
    main()
