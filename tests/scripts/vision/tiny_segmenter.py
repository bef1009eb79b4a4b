"""A torchvision LR-ASPP (MobileNetV3, no weights) on 64x64 synthetic masks, one short epoch and a
validation pass written by hand (no loss: the IoU is computed from the argmax), as people write
segmentation loops: the model returns {"out": ...}, the mask has a 255 border, ignore_index=255."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import segmentation


def shapes(n: int, g: torch.Generator) -> TensorDataset:
    images = torch.rand(n, 3, 64, 64, generator=g) * 0.3
    masks = torch.zeros(n, 64, 64, dtype=torch.long)
    for i in range(n):
        c = int(torch.randint(1, 3, (1,), generator=g))
        x, y = torch.randint(4, 36, (2,), generator=g).tolist()
        images[i, c - 1, y:y + 24, x:x + 24] += 0.7
        masks[i, y - 1:y + 25, x - 1:x + 25] = 255
        masks[i, y:y + 24, x:x + 24] = c
    return TensorDataset(images, masks)


def main() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = DataLoader(shapes(16, g), batch_size=4, shuffle=True)
    val = DataLoader(shapes(8, g), batch_size=4)
    for epoch in range(2):
        model.train()
        for images, masks in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images)["out"], masks, ignore_index=255)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, masks in val:
                pred = model(images)["out"].argmax(1)
                keep = masks != 255
                correct += (pred[keep] == masks[keep]).sum().item()
                total += keep.sum().item()
        print(f"epoch {epoch}: loss {loss.item():.3f}, val pixel accuracy {correct / total:.3f}")


if __name__ == "__main__":
    main()
