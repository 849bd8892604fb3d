"""VAE and beta-VAE (Higgins et al. 2017), optionally with controlled capacity (Burgess et al. 2018): gamma |KL - C|,
or with a KL floor per dimension (free bits, ``Composite.kl_floor``).

Both are a ``Composite`` with no regularizer: ``beta`` and ``capacity`` take a number or a schedule.
"""
import gin

from .base import register_objective
from .composite import Composite


@register_objective("beta_vae")
@gin.configurable
class BetaVAE(Composite):
    name = "beta_vae"

    def __init__(self, beta=1.0, capacity=None, capacity_weight: float = 1.0, kl_floor: float = 0.0):
        super().__init__(regularizers=(), beta=beta, capacity=capacity, capacity_weight=capacity_weight,
                         kl_floor=kl_floor)


@register_objective("vae")
@gin.configurable
class VAE(BetaVAE):
    """The plain ELBO: beta-VAE with beta = 1."""

    name = "vae"

    def __init__(self):
        super().__init__(beta=1.0)
