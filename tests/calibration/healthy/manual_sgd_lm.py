"""A manual-SGD language model, as PyTorch's word_language_model example trains: no optimizer,
model.zero_grad(), backward(), clip_grad_norm_, then `p.data.add_(p.grad, alpha=-lr)`.

Healthy: that loop is the example's own; the loss is logged with .item() (no graph kept) and the
hidden state is detached between batches (truncated BPTT). The token stream is a noisy repeating
pattern, so the loss falls well below ln(vocab).
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
    ntoken, bptt, batch = 20, 16, 8
    pattern = torch.tensor([3, 7, 1, 9, 4, 4, 12, 0, 15, 2])
    stream = pattern.repeat(400)
    noise = torch.rand(len(stream)) < 0.05
    stream[noise] = torch.randint(0, ntoken, (int(noise.sum()),))
    data = stream[: len(stream) // batch * batch].view(batch, -1).t().contiguous()
    model = RNNModel(ntoken, 32, 64)
    lr, clip = 2.0, 0.25
    for epoch in range(2):
        hidden = (torch.zeros(1, batch, 64), torch.zeros(1, batch, 64))
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
            total_loss += loss.item()
            if k % 10 == 9:
                print(f"epoch {epoch} batch {k + 1}: loss {total_loss / 10:.3f}")
                total_loss = 0.0


if __name__ == "__main__":
    main()
