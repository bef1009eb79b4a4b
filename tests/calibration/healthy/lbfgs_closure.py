"""LBFGS with a closure: full-batch logistic regression on a linearly separable-ish task.

Healthy: the documented LBFGS pattern (the closure zeroes the gradients, computes the loss and
calls backward; optimizer.step(closure) may call it several times per step). Few steps, each a
big one: the loss drops fast and then sits at its minimum.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    w_true = torch.randn(12)
    x = torch.randn(1000, 12)
    y = ((x @ w_true + 0.5 * torch.randn(1000)) > 0).float()
    model = nn.Linear(12, 1)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=10, history_size=10)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x).squeeze(1), y) + 1e-3 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    for step in range(20):
        loss = optimizer.step(closure)
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
