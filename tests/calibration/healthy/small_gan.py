"""A small GAN: an MLP generator learns a 2-D ring of eight Gaussians against an MLP discriminator.

Healthy: the standard alternating recipe (fake.detach() for D, non-saturating loss for G, Adam
with beta1=0.5). GAN losses do not fall monotonically; they settle around an equilibrium
(D near ln 4 = 1.39 in sum, G near ln 2 = 0.69) while the samples spread over the modes.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def real_batch(n: int) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,)).float() * (2 * math.pi / 8)
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * 2 + torch.randn(n, 2) * 0.05


def main() -> None:
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    discriminator = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2),
                                  nn.Linear(64, 1))
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
    for step in range(400):
        real = real_batch(64)
        fake = generator(torch.randn(64, 8))
        opt_d.zero_grad()
        d_loss = (F.binary_cross_entropy_with_logits(discriminator(real), ones)
                  + F.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
        g_loss.backward()
        opt_g.step()
        if step % 100 == 0 or step == 399:
            radius = fake.detach().norm(dim=1).mean().item()
            print(f"step {step}: d {d_loss.item():.3f} g {g_loss.item():.3f} mean radius {radius:.2f}")


if __name__ == "__main__":
    main()
