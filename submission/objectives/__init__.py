"""Objectives: one file per method, each only its loss terms. ``make_objective`` is the recipe's entry point."""
import gin

from . import beta_vae, betatcvae, pvae, qlae  # noqa: F401  (registers the methods)
from .base import (OBJECTIVES, Objective, bernoulli_reconstruction, build_objective, gaussian_kl_per_dim,
                   register_objective)


@gin.configurable("objective")
def make_objective(name: str = "beta_vae") -> Objective:
    """The recipe's method: ``objective.name = "pvae"``; its hyperparameters are bound on its class."""
    return build_objective(name)


__all__ = ["OBJECTIVES", "Objective", "bernoulli_reconstruction", "build_objective", "gaussian_kl_per_dim",
           "make_objective", "register_objective"]
