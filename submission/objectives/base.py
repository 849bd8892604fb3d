"""What every objective shares: the contract, a registry, and the two terms nearly all of them use.

An objective is an ``nn.Module``: ``objective(model, x, factors, step)`` returns a dict name -> scalar tensor, and the
trainer minimises their sum. Optional hooks: ``setup(dataset)`` once before training (e.g. the dataset size),
``diagnostics()`` numbers from the last call, ``after_step(step)`` after each optimiser step (e.g. a discriminator).

KL per dimension for the training curves: an objective computes its closed-form Gaussian KL through
``self.gaussian_kl(mu, logvar)``, which keeps the first result of each call (before any gate weighting or sum),
detached and on the device, as ``objective.kl_per_dim()``; the trainer averages it over each logging window. Objectives
without a Gaussian posterior KL (VSC's spike-and-slab, a non-Gaussian prior) have none.
"""
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

    def __init__(self):
        super().__init__()
        self._kl_per_dim = None

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


def build_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is unknown: expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]()
