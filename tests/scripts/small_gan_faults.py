"""The calibration corpus's small GAN (an MLP generator learning a ring of eight Gaussians), with
the classic GAN mistakes one flag away: `--fault not_detached|wrong_optimizer|shared_noise`."""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def real_batch(n: int) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,)).float() * (2 * math.pi / 8)
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * 2 + torch.randn(n, 2) * 0.05


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", default="none")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    netG = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    netD = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    opt_d = torch.optim.Adam(netD.parameters(), lr=1e-3, betas=(0.5, 0.999))
    held = netD if args.fault == "wrong_optimizer" else netG
    opt_g = torch.optim.Adam(held.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
    for step in range(args.steps):
        real = real_batch(64)
        noise = torch.randn(1, 8).expand(64, 8) if args.fault == "shared_noise" else torch.randn(64, 8)
        fake = netG(noise)
        opt_d.zero_grad()
        seen = fake if args.fault == "not_detached" else fake.detach()
        d_loss = (F.binary_cross_entropy_with_logits(netD(real), ones)
                  + F.binary_cross_entropy_with_logits(netD(seen), zeros))
        d_loss.backward(retain_graph=args.fault == "not_detached")
        opt_d.step()
        opt_g.zero_grad()
        g_loss = F.binary_cross_entropy_with_logits(netD(fake), ones)
        g_loss.backward()
        opt_g.step()
        if step % 50 == 0:
            print(f"step {step}: d {d_loss.item():.3f} g {g_loss.item():.3f}")


if __name__ == "__main__":
    main()
