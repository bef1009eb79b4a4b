"""A converged run with one hard batch: an MLP converges on a clean stream, then at step 600 one
batch with six mislabeled examples spikes the gradient norm (logged with clip_grad_norm_).

Healthy: the spike (1.3) is about 1000x the converged norms just before it (0.001), but inside
the norms the run had in its own first steps (1.9); the loss recovers at once. One hard batch is
data, not an explosion.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(4, 16) * 1.5
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(800):
        y = torch.randint(0, 4, (64,))
        x = centers[y] + torch.randn(64, 16)
        if step == 600:  # one hard batch: six of its examples mislabeled
            y[:6] = (y[:6] + 1) % 4
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=float("inf"))
        optimizer.step()
        if step % 100 == 0 or step in (599, 600, 601, 799):
            print(f"step {step}: loss {loss.item():.4f} grad norm {norm.item():.4f}")


if __name__ == "__main__":
    main()
