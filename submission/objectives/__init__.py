"""Objectives: one file per method, each only its loss terms. ``make_objective`` is the recipe's entry point."""
import gin

from . import beta_vae, betatcvae, pvae, qlae  # noqa: F401  (registers the methods)
from .base import (OBJECTIVES, Objective, bernoulli_reconstruction, build_objective, gaussian_kl_per_dim,
                   gaussian_reconstruction, register_objective)


@gin.configurable("objective")
def make_objective(name: str = "beta_vae", likelihood: str = "bernoulli") -> Objective:
    """The recipe's method: ``objective.name = "pvae"``; its hyperparameters are bound on its class.
    ``objective.likelihood``: the pixels' distribution, "bernoulli" (default) or "gaussian" (a calibrated scale)."""
    return build_objective(name, likelihood)


__all__ = ["OBJECTIVES", "Objective", "bernoulli_reconstruction", "build_objective", "gaussian_kl_per_dim",
           "gaussian_reconstruction", "make_objective", "register_objective"]
