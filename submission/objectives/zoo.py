"""Imports every method of the zoo beyond the core ones, so each registers its objective, model kind and gin names.

A recipe loads it with the gin line ``import submission.objectives.zoo``; code with ``import submission.objectives.zoo``.
"""
from submission.models import conditional, joint, sparse_coding  # noqa: F401  (model kinds cvae, pjvae, vsc)
from submission import schedules  # noqa: F401  (gin: Constant, Linear, Cyclical, Exponential, TorchLRSchedule)

from . import composite, cvae, decomposition, dipvae, factorvae, grouped_vae, infovae, pjvae, vsc  # noqa: F401

ZOO_OBJECTIVES = ("composite", "dipvae_i", "dipvae_ii", "factorvae", "infovae", "decomposition", "vsc", "grouped_vae",
                  "pjvae", "cvae", "ifcvae")
