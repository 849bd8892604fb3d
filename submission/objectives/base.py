"""What every objective shares: the contract, a registry, and the two terms nearly all of them use.

An objective is an ``nn.Module``: ``objective(model, x, factors, step)`` returns a dict name -> scalar tensor, and the
trainer minimises their sum. Optional hooks: ``setup(dataset)`` once before training (e.g. the dataset size),
``diagnostics()`` numbers from the last call, ``after_step(step)`` after each optimiser step (e.g. a discriminator).

KL per dimension for the training curves: an objective computes its closed-form Gaussian KL through
``self.gaussian_kl(mu, logvar)``, which keeps the first result of each call (before any gate weighting or sum),
detached and on the device, as ``objective.kl_per_dim()``; the trainer averages it over each logging window. Objectives
without a Gaussian posterior KL (VSC's spike-and-slab, a non-Gaussian prior) have none.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

OBJECTIVES = {}


def register_objective(name):
    def add(cls):
        OBJECTIVES[name] = cls
        return cls
    return add


def bernoulli_reconstruction(logits, x):
    """-log p(x|z) for Bernoulli pixels: binary cross-entropy summed over pixels, averaged over the batch."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    return per_pixel.flatten(1).sum(1).mean()


# The calibrated Gaussian's scale never falls below this (0.1% of the pixel range): a decoder that reproduces a batch
# exactly would otherwise send log sigma to minus infinity.
MIN_GAUSSIAN_SIGMA = 1e-3


def gaussian_reconstruction(logits, x):
    """-log p(x|z) for Gaussian pixels with mean sigmoid(logits) and one scale for every pixel, set to its maximum-
    likelihood value on the batch: sigma^2 = the batch's mean squared error (the calibrated decoder, "optimal sigma", of
    Rybkin, Daniilidis and Levine 2021, Sec. 4), floored at MIN_GAUSSIAN_SIGMA. Summed over pixels, averaged over the
    batch. sigma^2 is held constant in the gradient: at its optimum the loss's derivative in sigma is zero, so the
    gradient is the same either way.

    Against Bernoulli pixels, the pull toward detail grows as the error falls (1 / (2 sigma^2) per squared error), so
    small regions that a blurry reconstruction gives up are worth more (docs/methods.md, "Likelihoods").
    """
    mean = torch.sigmoid(logits.float())
    squared = (x.float() - mean).pow(2)
    variance = squared.mean().detach().clamp_min(MIN_GAUSSIAN_SIGMA ** 2)
    per_pixel = 0.5 * (squared / variance + variance.log() + math.log(2 * math.pi))
    return per_pixel.flatten(1).sum(1).mean()


LIKELIHOODS = {"bernoulli": bernoulli_reconstruction, "gaussian": gaussian_reconstruction}


def gaussian_kl_per_dim(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each latent dimension, averaged over the batch -> (D,).

    Closed form (Kingma & Welling 2014, appendix B): 0.5 (mu^2 + sigma^2 - 1 - log sigma^2).
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)


class LossModule(nn.Module):
    """What objectives and regularizers share: the hooks the trainer calls (they do nothing unless a method needs
    them) and the numbers of the last call (``record`` keeps them as given, tensors on their device; ``diagnostics``
    converts them when the trainer reads them, once per log window, so a step never waits for the device)."""

    def __init__(self):
        super().__init__()
        self._diagnostics = {}

    def setup(self, dataset) -> None:
        """Called once by the trainer before the first step with the training dataset."""

    def after_step(self, step: int) -> None:
        """Called after each optimiser step."""

    def diagnostics(self) -> dict:
        return {k: float(v) for k, v in self._diagnostics.items()}

    def record(self, **numbers) -> None:
        self._diagnostics.update({k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in numbers.items()})


class Objective(LossModule):
    """Base class of every method: a LossModule that also keeps the last call's KL per dimension."""

    name = "objective"
    likelihood = "bernoulli"          # p(x|z): a key of LIKELIHOODS (the recipe's ``objective.likelihood``)

    def __init__(self):
        super().__init__()
        self._kl_per_dim = None

    def reconstruction(self, logits, x):
        """-log p(x|z) under the objective's likelihood, summed over pixels, averaged over the batch."""
        return LIKELIHOODS[self.likelihood](logits, x)

    def __call__(self, *args, **kwargs):
        self._kl_per_dim = None         # this call's, from its first gaussian_kl
        return super().__call__(*args, **kwargs)

    def gaussian_kl(self, mu, logvar):
        """``gaussian_kl_per_dim``, the first result of each call kept for ``kl_per_dim()``."""
        kl = gaussian_kl_per_dim(mu, logvar)
        if self._kl_per_dim is None and kl.dim() == 1:
            self._kl_per_dim = kl.detach()
        return kl

    def kl_per_dim(self):
        """The last call's KL(q(z_d|x) || N(0, 1)) per latent dimension, batch mean: a detached (D,) tensor on the
        model's device (no host sync), or None when the objective computed no Gaussian KL."""
        return getattr(self, "_kl_per_dim", None)


def build_objective(name: str, likelihood: str = "bernoulli") -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is unknown: expected one of {sorted(OBJECTIVES)}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r} is unknown: expected one of {sorted(LIKELIHOODS)}")
    objective = OBJECTIVES[name]()
    objective.likelihood = likelihood
    return objective
