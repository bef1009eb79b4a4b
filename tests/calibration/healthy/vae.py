"""A small VAE on 8x8 "digit-like" patterns: reconstruction (BCE, summed) plus KL, per sample.

Healthy: the ELBO loss is large in absolute terms (summed over 64 pixels) and falls quickly, then
slowly; the KL term rising while reconstruction falls is the VAE trading off, as it should.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class VAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
        self.mu, self.logvar = nn.Linear(64, 4), nn.Linear(64, 4)
        self.dec = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64))

    def forward(self, x: torch.Tensor):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar


def make_batch(n: int, templates: torch.Tensor) -> torch.Tensor:
    pick = templates[torch.randint(0, len(templates), (n,))]
    flip = torch.rand(n, 64) < 0.05
    return torch.where(flip, 1 - pick, pick)


def main() -> None:
    torch.manual_seed(0)
    templates = (torch.rand(6, 64) < 0.4).float()
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        x = make_batch(64, templates)
        optimizer.zero_grad()
        logits, mu, logvar = model(x)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        loss = recon + kl
        loss.backward()
        optimizer.step()
        if step % 60 == 0 or step == 299:
            print(f"step {step}: loss {loss.item():.2f} recon {recon.item():.2f} kl {kl.item():.2f}")


if __name__ == "__main__":
    main()
