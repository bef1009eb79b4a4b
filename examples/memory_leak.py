"""Training loops that keep memory from one step to the next, and the loop that does not.

    torchdoctor run examples/memory_leak.py --leak total    # total_loss += loss
    torchdoctor run examples/memory_leak.py --leak append   # losses.append(loss)
    torchdoctor run examples/memory_leak.py --leak retain   # backward(retain_graph=True) + total_loss += loss
    torchdoctor run examples/memory_leak.py --leak eval     # a held-out loss summed without no_grad
    torchdoctor run examples/memory_leak.py --leak none     # .item(): the healthy twin
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes, each a brighter channel pattern: learnable, so a healthy loop's loss falls."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (32,), generator=g)
    x = torch.randn(32, 3, 32, 32, generator=g)
    x[torch.arange(32), y % 3] += 1.0 + 0.5 * (y // 3).float().view(-1, 1, 1)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leak", choices=["total", "append", "retain", "eval", "none"], default="total")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = [make_batch(seed) for seed in range(8)]
    held_out = make_batch(100)
    total_loss, losses, held_out_loss = 0.0, [], 0.0
    for step in range(args.steps):
        x, y = batches[step % len(batches)]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward(retain_graph=args.leak == "retain")
        optimizer.step()
        if args.leak in ("total", "retain"):
            total_loss += loss
        elif args.leak == "append":
            losses.append(loss)
        else:
            total_loss += loss.item()
        if args.leak == "eval":
            held_out_loss += F.cross_entropy(model(held_out[0]), held_out[1])
        if step % 20 == 19 and args.leak != "append":
            mean = total_loss / (step + 1)
            print(f"step {step + 1}: mean loss {mean.item() if torch.is_tensor(mean) else mean:.3f}")


if __name__ == "__main__":
    main()
