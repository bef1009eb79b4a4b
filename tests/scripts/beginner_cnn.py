"""The beginner's CNN: a class with its own forward, its first Linear sized for 32x32 images
(16 * 5 * 5) and fed 128x128 ones, flattened by hand. It dies at the first forward."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


net = Net()
optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
images, labels = torch.randn(4, 3, 128, 128), torch.randint(0, 10, (4,))
optimizer.zero_grad()
loss = F.cross_entropy(net(images), labels)
loss.backward()
optimizer.step()
