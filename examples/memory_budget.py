"""An image CNN with large activations: will a step fit on a smaller GPU?

Ask from any machine, CPU included:

    torchdoctor run --memory-budget 96MiB examples/memory_budget.py --batch-size 64

and torchdoctor answers with the batch size that fits and the blocks worth checkpointing;
`--batch-size N` and `--checkpoint block1.0,block2` try its advice.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Checkpointed(nn.Module):
    """Recomputes `inner` in backward instead of keeping its activations."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.inner, x, use_reentrant=False)


def apply_checkpointing(model: nn.Module, names: list[str]) -> None:
    """Wrap each named submodule (`block2`, `block1.0`) in a checkpoint."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Checkpointed(getattr(parent, child)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_block(3, 16)
        self.block1 = nn.Sequential(conv_block(16, 16), conv_block(16, 16))
        self.block2 = nn.Sequential(conv_block(16, 32), conv_block(32, 32))
        self.block3 = nn.Sequential(conv_block(32, 64), conv_block(64, 64))
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in (self.block1, self.block2, self.block3):
            x = F.max_pool2d(block(x), 2)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--checkpoint", default="", help="comma-separated blocks to checkpoint")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Net()
    apply_checkpointing(model, [name for name in args.checkpoint.split(",") if name])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(args.steps):
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        y = torch.randint(0, 10, (args.batch_size,))
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
