"""Hard-concrete gates (Louizos, Welling & Kingma 2018, "Learning sparse neural networks through L0 regularization",
eqs. 10-12), as used by PVAE to switch latent dimensions off. Pure functions plus one thin module holding log alpha."""
import math

import torch
from torch import nn


def hard_concrete_sample(log_alpha, u, beta: float, gamma: float, zeta: float):
    """s = sigmoid((log u - log(1-u) + log alpha) / beta); m = clamp(s (zeta - gamma) + gamma, 0, 1)."""
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return torch.clamp(s * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_deterministic(log_alpha, gamma: float, zeta: float):
    """The test-time gate: hard-tanh(sigmoid(log alpha) (zeta - gamma) + gamma), clipped to [0, 1]."""
    return torch.clamp(torch.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_open_probability(log_alpha, beta: float, gamma: float, zeta: float):
    """P(gate != 0) = sigmoid(log alpha - beta log(-gamma / zeta)) (Louizos et al. eq. 12)."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


class HardConcreteGate(nn.Module):
    """One learnable log alpha per latent dimension. Random gates while training, the deterministic gate in eval mode;
    both are functions of ``log_alpha`` alone, which lives in the state dict, so a reloaded model gates identically."""

    def __init__(self, latent_dim: int, beta: float = 0.05, gamma: float = -0.1, zeta: float = 1.1,
                 init_log_alpha: float = 3.0):
        super().__init__()
        if not gamma < 0 < 1 < zeta:
            raise ValueError(f"hard-concrete stretch gamma={gamma}, zeta={zeta}: expected gamma < 0 and zeta > 1")
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)
        self.log_alpha = nn.Parameter(torch.full((latent_dim,), float(init_log_alpha)))

    def forward(self, batch_size: int):
        """(batch_size, D) gates: one independent draw per sample and dimension while training (the reference code drew
        one mask per batch, which makes the batch covariance blind to the gate and the log alpha gradient one draw's
        worth of noise); the deterministic gate, repeated, in eval mode."""
        if self.training:
            u = torch.rand(batch_size, self.log_alpha.numel(), device=self.log_alpha.device)
            u = u.clamp(1e-6, 1 - 1e-6)
            return hard_concrete_sample(self.log_alpha, u, self.beta, self.gamma, self.zeta)
        return self.deterministic().expand(batch_size, -1)

    def deterministic(self):
        return hard_concrete_deterministic(self.log_alpha, self.gamma, self.zeta)

    def open_probability(self):
        return hard_concrete_open_probability(self.log_alpha, self.beta, self.gamma, self.zeta)
