"""FAULTY: a word-language-model loop that updates weights by hand (no optimizer:
`p.data.add_(p.grad, alpha=-lr)` after backward(), as PyTorch's word_language_model example
does) and accumulates `total_loss += loss` (a tensor, not loss.item()) across steps.

What is wrong: `total_loss` holds the autograd graph of every step since the last report, so
each step's activations stay alive and memory grows step after step. The manual update itself
is fine; the loop is a training loop even without an optimizer.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class RNNModel(nn.Module):
    def __init__(self, ntoken: int, ninp: int, nhid: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        output, hidden = self.rnn(self.encoder(x), hidden)
        return self.decoder(output), hidden


def main() -> None:
    torch.manual_seed(0)
    ntoken, bptt, batch, nhid = 50, 35, 10, 64
    pattern = torch.randint(0, ntoken, (37,))
    stream = pattern.repeat(1500)
    noise = torch.rand(len(stream)) < 0.05
    stream[noise] = torch.randint(0, ntoken, (int(noise.sum()),))
    data = stream[: len(stream) // batch * batch].view(batch, -1).t().contiguous()
    model = RNNModel(ntoken, 64, nhid)
    lr, clip, log_interval = 5.0, 0.25, 1000
    hidden = (torch.zeros(1, batch, nhid), torch.zeros(1, batch, nhid))
    total_loss = 0.0
    for k, i in enumerate(range(0, data.size(0) - 1 - bptt, bptt)):
        x, target = data[i:i + bptt], data[i + 1:i + 1 + bptt]
        hidden = tuple(h.detach() for h in hidden)
        model.zero_grad()
        output, hidden = model(x, hidden)
        loss = F.cross_entropy(output.view(-1, ntoken), target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total_loss += loss  # the leak: should be loss.item()
        if k % 20 == 19:
            print(f"batch {k + 1}: loss {loss.item():.3f}")
        if k % log_interval == log_interval - 1:
            total_loss = 0.0


if __name__ == "__main__":
    main()
