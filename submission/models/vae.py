"""VAE wrappers: an encoder body + a head (q(z|x)) + a decoder (Bernoulli logits). ``config()`` rebuilds the model.

Contract (ARCHITECTURE.md, Models): ``model(x)`` -> dict with at least mu, logvar, z, logits;
``model.representation(x)`` -> deterministic float32 (N, D).
"""
import torch
from torch import nn

from .architectures import build_architecture
from .gates import HardConcreteGate
from .heads import build_head

MODELS = {}


def register_model(kind):
    def add(cls):
        cls.kind = kind
        MODELS[kind] = cls
        return cls
    return add


@register_model("vae")
class GaussianVAE(nn.Module):
    """A VAE with a diagonal Gaussian posterior and a N(0, I) prior (Kingma & Welling 2014)."""

    default_head = "logvar"

    def __init__(self, architecture: str = "higgins", latent_dim: int = 10, channels: int = 3, head: str = None):
        super().__init__()
        self.architecture, self.latent_dim, self.channels = architecture, int(latent_dim), int(channels)
        self.head_name = head or self.default_head
        self.encoder, features, self.decoder = build_architecture(architecture, self.channels, self.latent_dim)
        self.head = build_head(self.head_name, features, self.latent_dim)

    def config(self) -> dict:
        return {"kind": self.kind, "architecture": self.architecture, "latent_dim": self.latent_dim,
                "channels": self.channels, "head": self.head_name}

    def encode(self, x):
        return self.head(self.encoder(x))

    def sample_latent(self, posterior):
        """Reparameterised z = mu + sigma * eps while training; the mean in eval mode."""
        mu = posterior["mu"].float()
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * posterior["logvar"].float()) * torch.randn_like(mu)

    def forward(self, x):
        out = dict(self.encode(x))
        out["z"] = self.sample_latent(out)
        out["logits"] = self.decoder(out["z"])
        return out

    def representation(self, x):
        return self.encode(x)["mu"].float()


@register_model("pvae")
class PrunedVAE(GaussianVAE):
    """PVAE: a Gaussian VAE whose latent dimensions pass through hard-concrete gates m (one log alpha per dimension).

    z = m * (mu + sigma * eps); the representation is the masked mean m * mu with the deterministic test-time gate.
    """

    default_head = "variance"

    def __init__(self, architecture: str = "higgins", latent_dim: int = 10, channels: int = 3, head: str = None,
                 gate_beta: float = 0.05, gate_gamma: float = -0.1, gate_zeta: float = 1.1,
                 init_log_alpha: float = 3.0):
        super().__init__(architecture, latent_dim, channels, head)
        self.gate = HardConcreteGate(self.latent_dim, gate_beta, gate_gamma, gate_zeta, init_log_alpha)
        self.init_log_alpha = float(init_log_alpha)

    def config(self) -> dict:
        return dict(super().config(), gate_beta=self.gate.beta, gate_gamma=self.gate.gamma,
                    gate_zeta=self.gate.zeta, init_log_alpha=self.init_log_alpha)

    def forward(self, x):
        out = dict(self.encode(x))
        mu = out["mu"].float()
        out["mask"] = mask = self.gate(mu.shape[0])
        out["z"] = mask * self.sample_latent(out)
        out["logits"] = self.decoder(out["z"])
        return out

    def representation(self, x):
        return self.encode(x)["mu"].float() * self.gate.deterministic()

    def open_gates(self, threshold: float = 0.0):
        """How many test-time gates are open, as a tensor on the device (an objective records it every step)."""
        return (self.gate.deterministic() > threshold).sum()

    def active_dimensions(self, threshold: float = 0.0) -> int:
        """The estimated intrinsic dimension: latents whose test-time gate is open."""
        return int(self.open_gates(threshold))
