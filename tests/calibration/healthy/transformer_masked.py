"""A small transformer encoder with a key-padding mask: classify variable-length token sequences
by whether token 1 appears more often than token 2.

Healthy: padded positions are masked out of attention (src_key_padding_mask) and of the mean
pool; AdamW with a short linear warmup, the usual transformer recipe.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Classifier(nn.Module):
    def __init__(self, vocab: int = 12, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, 24, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == 0
        h = self.encoder(self.embed(tokens) + self.pos[:, : tokens.size(1)], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1))


def make_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(1, 12, (n, 24))
    lengths = torch.randint(6, 25, (n,))
    tokens[torch.arange(24).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    label = ((tokens == 1).sum(1) > (tokens == 2).sum(1)).long()
    return tokens, label


def main() -> None:
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    for step in range(200):
        tokens, label = make_batch(32)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tokens), label)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 40 == 0 or step == 199:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
