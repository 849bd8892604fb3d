"""PJVAE: PVAE's hard-concrete gates on the continuous latents plus one discrete latent with K categories, relaxed with
Gumbel-softmax as in JointVAE (Dupont 2018, "Learning disentangled joint continuous and discrete representations",
sec. 3; Jang et al. 2017 and Maddison et al. 2017 for the relaxation).

``latent_dim`` counts both parts (continuous = latent_dim - categories), so the decoder's input and the representation
have the same width: representation = [gated means, softmax(category logits)].
"""
import torch
import torch.nn.functional as F
from torch import nn

from .architectures import build_architecture
from .gates import HardConcreteGate
from .heads import build_head
from .vae import PrunedVAE, register_model


@register_model("pjvae")
class JointPrunedVAE(PrunedVAE):
    default_head = "variance"

    def __init__(self, architecture: str = "higgins", latent_dim: int = 20, channels: int = 3, head: str = None,
                 categories: int = 10, temperature: float = 0.67, gate_beta: float = 0.05, gate_gamma: float = -0.1,
                 gate_zeta: float = 1.1, init_log_alpha: float = 3.0):
        nn.Module.__init__(self)
        if not 2 <= int(categories) < int(latent_dim):
            raise ValueError(f"PJVAE categories={categories} with latent_dim={latent_dim}: expected 2 <= categories "
                             f"< latent_dim (latent_dim counts the continuous and the discrete part)")
        self.architecture, self.latent_dim, self.channels = architecture, int(latent_dim), int(channels)
        self.categories, self.temperature = int(categories), float(temperature)
        self.continuous_dim = self.latent_dim - self.categories
        self.head_name = head or self.default_head
        self.encoder, features, self.decoder = build_architecture(architecture, self.channels, self.latent_dim)
        self.head = build_head(self.head_name, features, self.continuous_dim)
        self.category_head = nn.Linear(features, self.categories)
        self.gate = HardConcreteGate(self.continuous_dim, gate_beta, gate_gamma, gate_zeta, init_log_alpha)
        self.init_log_alpha = float(init_log_alpha)

    def config(self) -> dict:
        return dict(super().config(), categories=self.categories, temperature=self.temperature)

    def encode(self, x):
        features = self.encoder(x)
        out = dict(self.head(features))
        out["category_logits"] = self.category_head(features).float()
        return out

    def forward(self, x):
        out = self.encode(x)
        mu = out["mu"].float()
        out["mask"] = mask = self.gate(mu.shape[0])
        out["z_continuous"] = mask * self.sample_latent(out)
        logits = out["category_logits"]
        out["alpha"] = F.softmax(logits, dim=1)
        if self.training:
            out["c"] = F.gumbel_softmax(logits, tau=self.temperature, hard=False)
        else:
            out["c"] = F.one_hot(logits.argmax(1), self.categories).float()
        out["z"] = torch.cat([out["z_continuous"], out["c"]], dim=1)
        out["logits"] = self.decoder(out["z"])
        return out

    def representation(self, x):
        out = self.encode(x)
        return torch.cat([out["mu"].float() * self.gate.deterministic(), F.softmax(out["category_logits"], 1)], 1)
