"""The encoder's last layer: how q(z|x) is parameterised. A head maps features to a dict of tensors that always holds
``mu`` and ``logvar`` (N, D); a new parameterisation (a spike head for VSC, a categorical head) is one more class here."""
import torch
import torch.nn.functional as F
from torch import nn

HEADS = {}


def register_head(name):
    def add(cls):
        HEADS[name] = cls
        return cls
    return add


@register_head("logvar")
class LogVarianceHead(nn.Module):
    """Gaussian q(z|x) with a log-variance output (Kingma & Welling 2014)."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(features, 2 * latent_dim)

    def forward(self, h):
        mu, logvar = self.linear(h).chunk(2, dim=1)
        return {"mu": mu, "logvar": logvar}


@register_head("variance")
class VarianceHead(nn.Module):
    """PVAE's L0Pair output: the mean and the variance itself (softplus, plus a small epsilon), not its logarithm."""

    def __init__(self, features: int, latent_dim: int, epsilon: float = 1e-4):
        super().__init__()
        self.linear = nn.Linear(features, 2 * latent_dim)
        self.epsilon = epsilon

    def forward(self, h):
        mu, raw = self.linear(h).chunk(2, dim=1)
        variance = F.softplus(raw.float()) + self.epsilon
        return {"mu": mu, "logvar": torch.log(variance), "variance": variance}


def build_head(name: str, features: int, latent_dim: int):
    if name not in HEADS:
        raise ValueError(f"encoder head {name!r} is unknown: expected one of {sorted(HEADS)}")
    return HEADS[name](features, latent_dim)
