"""Knowledge distillation: a trained teacher MLP (frozen, in eval mode, under no_grad) teaches a
smaller student with KL divergence at temperature 4 plus hard-label cross entropy.

Healthy: the teacher's forward builds no graph and has no optimizer; only the student trains. The
KL term at T=4 is scaled by T^2, as in Hinton et al.; the combined loss falls.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(6, 16) * 1.5
    y = torch.randint(0, 6, (2048,))
    x = centers[y] + torch.randn(2048, 16)
    teacher = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 6))
    opt_t = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for i in range(0, 2048, 64):
        opt_t.zero_grad()
        F.cross_entropy(teacher(x[i:i + 64]), y[i:i + 64]).backward()
        opt_t.step()
    teacher.eval()
    student = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 6))
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    T = 4.0
    for epoch in range(4):
        perm = torch.randperm(2048)
        for i in range(0, 2048, 64):
            idx = perm[i:i + 64]
            with torch.no_grad():
                soft = F.softmax(teacher(x[idx]) / T, dim=1)
            logits = student(x[idx])
            kd = F.kl_div(F.log_softmax(logits / T, dim=1), soft, reduction="batchmean") * T * T
            loss = 0.5 * kd + 0.5 * F.cross_entropy(logits, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
