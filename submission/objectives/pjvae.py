"""PJVAE: the PVAE objective on the continuous latents (docs/methods.md, PVAE) plus JointVAE's discrete term
(Dupont 2018, eq. 7): discrete_weight * |KL(q(c|x) || Uniform(K)) - C_c(step)|, with KL(q(c|x) || U) = log K +
sum_k alpha_k log alpha_k and the discrete capacity C_c rising linearly from 0 to log K (a schedule).
"""
import math

import gin
import torch

from submission.schedules import Linear, value_at

from .base import Objective, register_objective
from .dip import batch_covariance, dip_penalty


def categorical_kl_to_uniform(alpha):
    """KL(Cat(alpha) || Uniform(K)) = log K + sum_k alpha_k log alpha_k, averaged over the batch."""
    alpha = alpha.float()
    k = alpha.shape[1]
    return (math.log(k) + torch.special.xlogy(alpha, alpha).sum(1)).mean()


@register_objective("pjvae")
@gin.configurable
class PJVAEObjective(Objective):
    name = "pjvae"

    def __init__(self, lambda_od: float = 20.0, lambda_d: float = 2.0, tau: float = 0.1,
                 discrete_weight: float = 30.0, discrete_capacity=None, discrete_capacity_steps: int = 20000):
        super().__init__()
        self.lambda_od, self.lambda_d, self.tau = float(lambda_od), float(lambda_d), float(tau)
        self.discrete_weight = float(discrete_weight)
        self.discrete_capacity = discrete_capacity
        self.discrete_capacity_steps = int(discrete_capacity_steps)

    def forward(self, model, x, factors, step):
        out = model(x)
        if "alpha" not in out or "mask" not in out:
            raise ValueError(f"the pjvae objective needs model.kind = 'pjvae', got {type(model).__name__}")
        mask, mu, logvar = out["mask"], out["mu"].float(), out["logvar"].float()
        kl = (mask * 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0).sum()
        open_probability = model.gate.open_probability()
        discrete_kl = categorical_kl_to_uniform(out["alpha"])
        schedule = self.discrete_capacity or Linear(0.0, math.log(out["alpha"].shape[1]), self.discrete_capacity_steps)
        capacity = value_at(schedule, step)
        self.record(kl=kl.detach(), discrete_kl=discrete_kl.detach(), discrete_capacity=capacity,
                    active_dims=model.open_gates(), unmasked_kl=self.gaussian_kl(mu, logvar).detach().sum())
        return {"reconstruction": self.reconstruction(out["logits"], x), "kl": kl,
                "dip": dip_penalty(batch_covariance(mask * mu), self.lambda_od, self.lambda_d),
                "l0": self.tau * open_probability.sum(),
                "discrete_kl": self.discrete_weight * (discrete_kl - capacity).abs()}
