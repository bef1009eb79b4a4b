"""A sibling module the scripts import: it is found through sys.path[0], the script's folder."""

import torch
from torch.utils.data import TensorDataset


def make_dataset(n: int, features: int = 6, classes: int = 3, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, features, generator=g) + y.unsqueeze(1).float()
    return TensorDataset(x, y)
