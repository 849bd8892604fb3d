"""Variational Sparse Coding (Tonolini, Jensen & Murray-Smith 2020, "Variational sparse coding", sec. 3):
a spike-and-slab posterior q(z|x) = prod_j [gamma_j N(mu_j, sigma_j^2) + (1 - gamma_j) delta(z_j)].

The head adds a spike log-probability log gamma = -relu(.) <= 0, so gamma <= 1. Training samples use the paper's
relaxed selection z = sigmoid(c (eta + gamma - 1)) (mu + sigma eps), eta ~ U(0, 1), where the sharpness c is a buffer
the objective warms up. The representation is the posterior mean gamma * mu.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .heads import register_head
from .vae import GaussianVAE, register_model


@register_head("spike")
class SpikeSlabHead(nn.Module):
    """mu, log sigma^2 and log gamma (<= 0) for each latent dimension."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(features, 3 * latent_dim)

    def forward(self, h):
        mu, logvar, raw = self.linear(h).chunk(3, dim=1)
        return {"mu": mu, "logvar": logvar, "log_spike": -F.relu(raw.float())}


def spike_slab_sample(mu, logvar, log_spike, sharpness: float, eta, eps):
    """Tonolini et al. eq. 9: sigmoid(c (eta + gamma - 1)) * (mu + sigma eps)."""
    selection = torch.sigmoid(sharpness * (eta + torch.exp(log_spike) - 1.0))
    return selection * (mu + torch.exp(0.5 * logvar) * eps)


@register_model("vsc")
class SparseCodingVAE(GaussianVAE):
    default_head = "spike"

    def __init__(self, architecture: str = "higgins", latent_dim: int = 10, channels: int = 3, head: str = None,
                 initial_sharpness: float = 50.0):
        super().__init__(architecture, latent_dim, channels, head)
        if self.head_name != "spike":
            raise ValueError(f"a VSC model needs the 'spike' head, got head {self.head_name!r}")
        self.initial_sharpness = float(initial_sharpness)
        self.register_buffer("sharpness", torch.tensor(self.initial_sharpness))

    def config(self) -> dict:
        return dict(super().config(), initial_sharpness=self.initial_sharpness)

    def set_sharpness(self, value: float) -> None:
        self.sharpness.fill_(float(value))

    def forward(self, x):
        out = dict(self.encode(x))
        mu, logvar, log_spike = out["mu"].float(), out["logvar"].float(), out["log_spike"]
        if self.training:
            out["z"] = spike_slab_sample(mu, logvar, log_spike, self.sharpness, torch.rand_like(mu),
                                         torch.randn_like(mu))
        else:
            out["z"] = torch.exp(log_spike) * mu
        out["logits"] = self.decoder(out["z"])
        return out

    def representation(self, x):
        out = self.encode(x)
        return (torch.exp(out["log_spike"]) * out["mu"].float()).float()
