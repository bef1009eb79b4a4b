"""A tiny GAN, DCGAN-tutorial style: netD.zero_grad(), two backward calls and optimizerD.step(),
then netG.zero_grad(), one backward and optimizerG.step(), once per batch."""

import argparse
import json

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
args = parser.parse_args()
torch.manual_seed(0)
real_data = TensorDataset(torch.randn(40, 2) * 0.5 + 2)
loader = DataLoader(real_data, batch_size=8, shuffle=True)
netG, netD = Generator(), Discriminator()
criterion = nn.BCEWithLogitsLoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-3, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-3, betas=(0.5, 0.999))
d_losses = []
for (real,) in loader:
    netD.zero_grad()
    errD_real = criterion(netD(real), torch.ones(len(real), 1))
    errD_real.backward()
    fake = netG(torch.randn(len(real), 4))
    errD_fake = criterion(netD(fake.detach()), torch.zeros(len(real), 1))
    errD_fake.backward()
    optimizerD.step()
    netG.zero_grad()
    errG = criterion(netD(fake), torch.ones(len(real), 1))
    errG.backward()
    optimizerG.step()
    d_losses.append(errD_real.item() + errD_fake.item())
with open(args.out, "w") as f:
    json.dump(d_losses, f)
