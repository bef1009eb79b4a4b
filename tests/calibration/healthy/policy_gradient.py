"""REINFORCE on a contextual bandit: the loss is -log_prob * advantage, which goes negative.

Healthy: a policy-gradient loss is not a quantity that falls to zero; it is negative whenever the
sampled actions did better than the baseline, and its sign flips from batch to batch. What
matters is the reward, which climbs from chance (0.25) towards 1.
"""

import torch
import torch.nn as nn


def main() -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 4))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    baseline = 0.0
    for step in range(300):
        context = torch.randn(32, 6)
        best = context[:, :4].argmax(dim=1)
        dist = torch.distributions.Categorical(logits=policy(context))
        action = dist.sample()
        reward = (action == best).float()
        advantage = reward - baseline
        loss = -(dist.log_prob(action) * advantage).mean() - 0.01 * dist.entropy().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        baseline = 0.9 * baseline + 0.1 * reward.mean().item()
        if step % 50 == 0 or step == 299:
            print(f"step {step}: loss {loss.item():+.4f} reward {reward.mean().item():.2f}")


if __name__ == "__main__":
    main()
