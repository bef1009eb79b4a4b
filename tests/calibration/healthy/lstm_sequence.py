"""An LSTM classifies noisy sine waves by frequency (three classes), from the last hidden state.

Healthy: a batch_first LSTM, gradient clipping at 1.0 (the usual RNN habit), Adam at 2e-2; the
loss falls from ln 3 to near zero. (At 5e-3 it learned on one CPU and was back at chance by step
200 on another, an AMD one with AVX2 only: too few steps for that rate, a true plateau there.)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SeqClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 32, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


def make_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 3, (n,))
    t = torch.linspace(0, 6.28, 30).unsqueeze(0)
    phase = torch.rand(n, 1) * 6.28
    x = torch.sin(t * (1 + y.unsqueeze(1).float()) + phase) + torch.randn(n, 30) * 0.2
    return x.unsqueeze(-1), y


def main() -> None:
    torch.manual_seed(0)
    model = SeqClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for step in range(200):
        x, y = make_batch(32)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 40 == 0 or step == 199:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
