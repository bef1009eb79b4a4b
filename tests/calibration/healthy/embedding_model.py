"""An embedding model: a bag-of-words classifier (nn.EmbeddingBag, mean mode) over synthetic
"documents" whose topic decides which words they draw from.

Healthy: sparse-ish embedding gradients (only the words seen get updated) with SGD; the loss falls
from ln 4 well below it.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_batch(n: int, vocab: int = 200, topics: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y = torch.randint(0, topics, (n,))
    lengths = torch.randint(5, 20, (n,))
    words = []
    for label, length in zip(y.tolist(), lengths.tolist(), strict=True):
        topical = torch.randint(label * 50, label * 50 + 50, (length,))
        common = torch.randint(0, vocab, (length,))
        words.append(torch.where(torch.rand(length) < 0.5, topical, common))
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    return torch.cat(words), offsets, y


def main() -> None:
    torch.manual_seed(0)
    embed = nn.EmbeddingBag(200, 32, mode="mean")
    head = nn.Linear(32, 4)
    model = nn.ModuleDict({"embed": embed, "head": head})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(250):
        words, offsets, y = make_batch(32)
        optimizer.zero_grad()
        loss = F.cross_entropy(head(embed(words, offsets)), y)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == 249:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
