"""DCGAN: PyTorch's examples/dcgan, shrunk to 16x16 synthetic blobs, with a choice of GAN bugs.

The real images are single-channel 16x16 pictures of one or two soft Gaussian blobs at random
places. Generator (ConvTranspose2d/BatchNorm/ReLU, Tanh) and Discriminator (Conv2d/LeakyReLU,
Sigmoid) train with BCELoss and Adam(lr 2e-4, betas (0.5, 0.999)), the loop of the PyTorch example.
With ``--fault none`` neither side wins: both losses stay in a band (200 steps: D 1.24 -> 0.95,
G 0.64 -> 0.85) and the generated batch stays diverse (diversity = per-pixel std across the batch /
overall std: 0.68 -> 0.81). The faults:

- ``overpowering``: D gets 10x the learning rate and 5 steps per G step; D's loss goes to ~0 and
  G's loss climbs (D 0.18 -> 0.015 -> 0.0018, G 2.6 -> 5.4 -> 6.8 at steps 0/50/100); with this
  non-saturating G loss G's gradient norm grows (26 -> 90-150) rather than vanishing. It runs 120
  steps unless ``--steps`` says otherwise: past step 100 G starts to recover, how soon depends on
  the CPU's float kernels (by step 150 on an AVX2-only AMD CPU, D 0.035 and G 4.7 there; near
  step 199 on an AVX-512 one), and a finding must not hang on that. 5x the D work: ~10-25 s.
- ``mode_collapse``: one noise vector repeated over the whole batch (``noise[:1].expand``), a
  realistic sampling bug; every generated image is the same and diversity is 0.000 from step 0
  while both losses look normal (D 1.24 -> 0.69, G 0.67 -> 1.15).
- ``not_detached``: D's fake loss uses ``netD(fake)`` without ``.detach()``; to keep it from crashing
  the backward keeps the graph (``retain_graph=True``), so D's step also writes gradients into G
  (which are then zeroed before G's own step: wasted work, not wrong numbers: the losses are
  exactly those of the healthy run).
- ``wrong_optimizer``: ``optimizerG = Adam(netD.parameters(), ...)``; G never moves, D gets two
  updates a step (one of them pushing it the wrong way), and the images stay noise: D's loss
  settles at ~0.53 and G's at ~0.92 from step 50 on, diversity flat at 0.68.

    python examples/dcgan.py                  # healthy, ~4 s of training on 1 CPU thread
    python examples/dcgan.py --fault overpowering
"""

import argparse
import time

import torch
import torch.nn as nn

NZ, NGF, NDF, NC, SIZE = 16, 16, 16, 1, 16


def real_batch(n: int, g: torch.Generator) -> torch.Tensor:
    """1-2 Gaussian blobs per image, scaled to [-1, 1] like the Tanh output."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    img = torch.zeros(n, 1, SIZE, SIZE)
    for k in range(2):
        c = torch.rand(n, 2, generator=g) * (SIZE - 6) + 3
        sigma = torch.rand(n, generator=g) * 1.5 + 1.5
        d2 = (xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2
        blob = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2))
        keep = (torch.rand(n, generator=g) < 0.5) if k else torch.ones(n, dtype=torch.bool)
        img[:, 0] = torch.maximum(img[:, 0], blob * keep[:, None, None])
    return img * 2 - 1


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),  # 4x4
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),  # 8x8
            nn.ConvTranspose2d(NGF * 2, NC, 4, 2, 1, bias=False), nn.Tanh(),  # 16x16
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(NC, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 8x8
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid(),  # 1x1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def weights_init(m: nn.Module) -> None:
    if "Conv" in type(m).__name__:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in type(m).__name__:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def grad_norm(model: nn.Module) -> float:
    return sum(p.grad.norm().item() for p in model.parameters() if p.grad is not None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=None, help="200; 120 with --fault overpowering")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--fault", choices=["none", "overpowering", "mode_collapse", "not_detached", "wrong_optimizer"], default="none"
    )
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 120 if args.fault == "overpowering" else 200

    # Adam and BatchNorm drive some values into the subnormal range (in ``overpowering`` and
    # ``mode_collapse`` especially), where CPU float math is ~100x slower: flush them to zero.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    netG, netD = Generator(), Discriminator()
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    lr_d = args.lr * 10 if args.fault == "overpowering" else args.lr
    d_steps = 5 if args.fault == "overpowering" else 1
    optimizerD = torch.optim.Adam(netD.parameters(), lr=lr_d, betas=(0.5, 0.999))
    g_params = netD.parameters() if args.fault == "wrong_optimizer" else netG.parameters()
    optimizerG = torch.optim.Adam(g_params, lr=args.lr, betas=(0.5, 0.999))
    real_label, fake_label = 1.0, 0.0
    b = args.batch_size

    start = time.perf_counter()
    for step in range(args.steps):
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        for _ in range(d_steps):
            netD.zero_grad()
            real = real_batch(b, g)
            label = torch.full((b,), real_label)
            errD_real = criterion(netD(real), label)
            errD_real.backward()
            noise = torch.randn(b, NZ, 1, 1)
            if args.fault == "mode_collapse":
                noise = noise[:1].expand(b, -1, -1, -1)  # bug: one latent for the whole batch
            fake = netG(noise)
            label.fill_(fake_label)
            if args.fault == "not_detached":
                errD_fake = criterion(netD(fake), label)  # bug: no .detach()
                errD_fake.backward(retain_graph=True)  # "fixes" the crash in G's backward
            else:
                errD_fake = criterion(netD(fake.detach()), label)
                errD_fake.backward()
            errD = errD_real + errD_fake
            optimizerD.step()

        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)
        errG = criterion(netD(fake), label)
        errG.backward()
        g_norm = grad_norm(netG)
        optimizerG.step()

        if step % 50 == 0 or step == args.steps - 1:
            with torch.no_grad():
                diversity = (fake.std(dim=0).mean() / fake.std()).item()
            print(
                f"step {step}: Loss_D {errD.item():.4f}  Loss_G {errG.item():.4f}  G grad norm {g_norm:.4f}  "
                f"diversity {diversity:.3f}  ({time.perf_counter() - start:.1f}s)"
            )


if __name__ == "__main__":
    main()
