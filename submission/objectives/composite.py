"""Composable loss terms: the ELBO plus any list of regularizers, in one objective.

    loss = w_rec(step) * reconstruction + beta(step) * KL            (or  gamma |KL - C(step)|, Burgess et al. 2018)
           + sum of every regularizer's terms

With ``kl_floor`` = lambda > 0 ("free bits": Kingma et al. 2016, "Improved Variational Inference with Inverse
Autoregressive Flow", where each group of latents' minibatch KL is replaced by max(lambda, KL)), the KL term is
beta * sum_j max(lambda, KL_j), KL_j each dimension's batch-mean KL: a dimension carries up to lambda nats at no cost,
so the prior cannot switch it off while it holds less.

A regularizer is a small module that reads the model's forward output and returns named terms; it never runs the model
itself, so two regularizers share one forward pass and one reconstruction. Recipe (gin) or CLI:

    objective.name = "composite"
    Composite.regularizers = [@TotalCorrelationRegularizer(), @DIPRegularizer()]

    python -m submission.train --gin_file submission/configs/composite.gin \
        --gin_binding "Composite.regularizers = [@FactorVAERegularizer(), @DIPRegularizer()]" ...

Terms "fit together" when their names differ and the model's output holds every key they read (``requires``);
otherwise the first call fails with one line naming the clash. Each method of the zoo that is "ELBO + one term"
(DIP-VAE-I/II, FactorVAE, InfoVAE, ...) is a ``Composite`` with its one regularizer.
"""
import math

import gin
from torch import nn

from submission.schedules import value_at

from .base import LossModule, Objective, register_objective
from .total_correlation import total_correlation


class Regularizer(LossModule):
    """One or more loss terms computed from the model's output ``out`` (a dict with mu, logvar, z, logits, ...); the
    hooks and diagnostics are every objective's (``LossModule``)."""

    name = "regularizer"
    requires = ("mu", "logvar", "z")

    def forward(self, out, model, x, factors, step) -> dict:
        raise NotImplementedError


def check_compatible(regularizers, out_keys, base_terms) -> None:
    """Two regularizers fit together when their term names differ and the model provides what each reads."""
    seen = dict.fromkeys(base_terms, "the ELBO")
    for reg in regularizers:
        missing = [k for k in reg.requires if k not in out_keys]
        if missing:
            raise ValueError(f"regularizer {reg.name} reads {missing} from the model's output, which holds "
                             f"{sorted(out_keys)}: expected a model kind that provides them")
    for reg in regularizers:
        for term in getattr(reg, "terms", (reg.name,)):
            if term in seen:
                raise ValueError(f"regularizers {seen[term]} and {reg.name} both write the loss term {term!r}: "
                                 f"expected each term once")
            seen[term] = reg.name


@register_objective("composite")
@gin.configurable
class Composite(Objective):
    """ELBO + regularizers. ``beta``, ``reconstruction_weight`` and ``capacity`` take a float or a schedule
    (``submission.schedules``); with a capacity schedule the KL term is ``capacity_weight * |KL - C(step)|``."""

    name = "composite"

    def __init__(self, regularizers=(), beta=1.0, reconstruction_weight=1.0, capacity=None,
                 capacity_weight: float = 1.0, kl_floor: float = 0.0):
        super().__init__()
        if float(kl_floor) < 0 or (kl_floor and capacity is not None):
            raise ValueError(f"kl_floor {kl_floor!r} is invalid: expected nats per dimension >= 0, and not with a "
                             f"capacity schedule")
        self.regularizers = nn.ModuleList(list(regularizers))
        self.beta, self.reconstruction_weight = beta, reconstruction_weight
        self.capacity, self.capacity_weight = capacity, float(capacity_weight)
        self.kl_floor = float(kl_floor)
        self._checked = False

    def setup(self, dataset) -> None:
        for reg in self.regularizers:
            reg.setup(dataset)

    def after_step(self, step: int) -> None:
        for reg in self.regularizers:
            reg.after_step(step)

    def diagnostics(self) -> dict:
        numbers = super().diagnostics()
        for reg in self.regularizers:
            numbers.update(reg.diagnostics())
        return numbers

    def elbo_terms(self, out, x, step) -> dict:
        kl_per_dim = self.gaussian_kl(out["mu"], out["logvar"])
        kl = kl_per_dim.sum()
        self.record(kl=kl.detach())
        if self.capacity is not None:
            capacity = value_at(self.capacity, step)
            self.record(capacity=capacity)
            kl_loss = self.capacity_weight * (kl - capacity).abs()
        elif self.kl_floor > 0:
            kl_loss = value_at(self.beta, step) * kl_per_dim.clamp(min=self.kl_floor).sum()
        else:
            kl_loss = value_at(self.beta, step) * kl
        reconstruction = self.reconstruction(out["logits"], x)
        return {"reconstruction": value_at(self.reconstruction_weight, step) * reconstruction, "kl": kl_loss}

    def forward(self, model, x, factors, step):
        out = model(x)
        terms = self.elbo_terms(out, x, step)
        if not self._checked:
            check_compatible(self.regularizers, out.keys(), terms.keys())
            self._checked = True
        for reg in self.regularizers:
            for name, value in reg(out, model, x, factors, step).items():
                terms[name] = value
        return terms


@gin.configurable
class TotalCorrelationRegularizer(Regularizer):
    """beta-TCVAE's extra term as a regularizer: ``weight * TC`` (Chen et al. 2018, eq. 4; weight = beta - 1), with the
    estimator of ``total_correlation.total_correlation`` (minibatch-stratified by default)."""

    name = "tc"

    def __init__(self, weight=1.0, estimator: str = "mss", dataset_size: int = None):
        super().__init__()
        if estimator not in ("mws", "mss"):
            raise ValueError(f"total-correlation estimator {estimator!r} is unknown: expected 'mws' or 'mss'")
        self.weight, self.estimator, self.dataset_size = weight, estimator, dataset_size

    def setup(self, dataset) -> None:
        if self.dataset_size is None:
            self.dataset_size = int(math.prod(int(v) for v in dataset.factors_num_values))

    def forward(self, out, model, x, factors, step):
        if self.dataset_size is None:
            raise ValueError("TotalCorrelationRegularizer.dataset_size is unset: call setup(dataset) or bind it in gin")
        tc = total_correlation(out["z"], out["mu"], out["logvar"], self.dataset_size, self.estimator)
        self.record(tc=tc.detach())
        return {"tc": value_at(self.weight, step) * tc}
