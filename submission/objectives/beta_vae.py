"""VAE and beta-VAE (Higgins et al. 2017), optionally with controlled capacity (Burgess et al. 2018): gamma |KL - C|."""
import gin

from .base import Objective, bernoulli_reconstruction, gaussian_kl_per_dim, register_objective
from submission.schedules import LinearRamp


def kl_term(kl, step, beta, capacity_max, capacity_steps, capacity_weight):
    """beta * KL, or capacity_weight * |KL - C(step)| with C rising linearly from 0 to capacity_max."""
    if capacity_max is None:
        return beta * kl, None
    capacity = LinearRamp(0.0, capacity_max, capacity_steps)(step)
    return capacity_weight * (kl - capacity).abs(), capacity


@register_objective("beta_vae")
@gin.configurable
class BetaVAE(Objective):
    name = "beta_vae"

    def __init__(self, beta: float = 1.0, capacity_max: float = None, capacity_steps: int = 100000,
                 capacity_weight: float = 1.0):
        super().__init__()
        self.beta, self.capacity_max = float(beta), capacity_max
        self.capacity_steps, self.capacity_weight = int(capacity_steps), float(capacity_weight)

    def forward(self, model, x, factors, step):
        out = model(x)
        kl = gaussian_kl_per_dim(out["mu"], out["logvar"]).sum()
        kl_loss, capacity = kl_term(kl, step, self.beta, self.capacity_max, self.capacity_steps, self.capacity_weight)
        self.record(kl=kl.detach())
        if capacity is not None:
            self.record(capacity=capacity)
        return {"reconstruction": bernoulli_reconstruction(out["logits"], x), "kl": kl_loss}


@register_objective("vae")
@gin.configurable
class VAE(BetaVAE):
    """The plain ELBO: beta-VAE with beta = 1."""

    name = "vae"

    def __init__(self):
        super().__init__(beta=1.0)
