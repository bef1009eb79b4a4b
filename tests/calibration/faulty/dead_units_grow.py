"""FAULTY: an MLP with nn.ReLU trained by Adam at lr=0.05 (50x Adam's usual 1e-3).

What is wrong: the large updates push the second ReLU layer's units, one after another, into the
region where no input activates them; the dead share grows from 0 at the start past half the
layer, and the loss stalls well above what the same net reaches at lr 1e-3 (93% accuracy where
lr 1e-3 reaches 97%). Units that die during training (not dead from initialization), in a run
whose loss stops improving.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(10, 20)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    correct = 0
    for step in range(400):
        y = torch.randint(0, 10, (64,))
        x = centers[y] + torch.randn(64, 20)
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == y).sum().item()
        if step % 50 == 49:
            print(f"step {step + 1}: loss {loss.item():.4f} acc {correct / (50 * 64):.3f}")
            correct = 0


if __name__ == "__main__":
    main()
