"""AMP with a GradScaler on CPU: float16 autocast, torch.amp.GradScaler("cpu"), unscale_ then clip.

Healthy: the documented AMP recipe (scale, backward, unscale_, clip, step, update). The scaler may
skip a step or two early while it finds its scale; that is its job.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(6, 24) * 1.5
    y = torch.randint(0, 6, (2048,))
    x = centers[y] + torch.randn(2048, 24)
    model = nn.Sequential(nn.Linear(24, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 6))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
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
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            scaler.step(optimizer)
            scaler.update()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / 32:.4f} scale {scaler.get_scale():.0f}")


if __name__ == "__main__":
    main()
