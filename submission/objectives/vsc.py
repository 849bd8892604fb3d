"""Variational Sparse Coding (Tonolini et al. 2020, eq. 8): reconstruction + the KL of a spike-and-slab posterior to
the spike-and-slab prior p(z) = prod_j [alpha N(0, 1) + (1 - alpha) delta(z_j)], alpha = the prior sparsity:

    KL = -1/2 sum_j gamma_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
         + sum_j [(1 - gamma_j) log((1 - gamma_j) / (1 - alpha)) + gamma_j log(gamma_j / alpha)]

i.e. gamma * KL(slab || N(0, 1)) + KL(Bernoulli(gamma) || Bernoulli(alpha)). The selection sharpness c warms up
(a ``submission.schedules`` object, linear 50 -> 200 by default) and is written into the model before each forward.
"""
import gin
import torch

from submission.schedules import Linear, value_at

from .base import Objective, register_objective

SPIKE_EPS = 1e-6


def spike_slab_kl(mu, logvar, log_spike, prior_sparsity: float):
    """Tonolini et al. eq. 8, summed over dimensions and averaged over the batch."""
    if not 0.0 < prior_sparsity < 1.0:
        raise ValueError(f"VSC prior sparsity alpha={prior_sparsity}: expected 0 < alpha < 1")
    mu, logvar = mu.float(), logvar.float()
    gamma = torch.exp(log_spike.float()).clamp(SPIKE_EPS, 1.0 - SPIKE_EPS)
    slab = -0.5 * gamma * (1.0 + logvar - mu.pow(2) - logvar.exp())
    spike = ((1.0 - gamma) * torch.log((1.0 - gamma) / (1.0 - prior_sparsity))
             + gamma * torch.log(gamma / prior_sparsity))
    return (slab + spike).sum(1).mean()


@register_objective("vsc")
@gin.configurable
class VariationalSparseCoding(Objective):
    name = "vsc"

    def __init__(self, prior_sparsity: float = 0.2, beta: float = 1.0, sharpness=None):
        super().__init__()
        if not 0.0 < prior_sparsity < 1.0:
            raise ValueError(f"VariationalSparseCoding.prior_sparsity={prior_sparsity}: expected 0 < alpha < 1")
        self.prior_sparsity, self.beta = float(prior_sparsity), float(beta)
        self.sharpness = sharpness if sharpness is not None else Linear(50.0, 200.0, 20000)

    def forward(self, model, x, factors, step):
        if not hasattr(model, "set_sharpness"):
            raise ValueError(f"the vsc objective needs model.kind = 'vsc', got {type(model).__name__}")
        model.set_sharpness(value_at(self.sharpness, step))
        out = model(x)
        kl = spike_slab_kl(out["mu"], out["logvar"], out["log_spike"], self.prior_sparsity)
        spike = torch.exp(out["log_spike"].detach().float())
        self.record(kl=kl.detach(), sharpness=float(model.sharpness), mean_spike=spike.mean(),
                    active_dims=(spike.mean(0) > 0.5).sum())
        return {"reconstruction": self.reconstruction(out["logits"], x), "kl": self.beta * kl}
