"""DIP-VAE-I and DIP-VAE-II (Kumar, Sattigeri & Balakrishnan 2018, "Variational inference of disentangled latent
concepts from unlabeled observations", eqs. 6-9): match the covariance of the aggregate posterior to the identity.

    DIP-I : Cov = Cov_p(x)[mu(x)]                                  (eq. 7)
    DIP-II: Cov = E_p(x)[diag sigma^2(x)] + Cov_p(x)[mu(x)]        (eq. 8, the law of total covariance of q(z))
    penalty = lambda_od sum_{i != j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2
dlib's defaults: lambda_d = 10 lambda_od for DIP-I and lambda_d = lambda_od for DIP-II.
"""
import gin
import torch

from .base import register_objective
from .composite import Composite, Regularizer
from .dip import batch_covariance, dip_penalty

DIAGONAL_FACTOR = {"i": 10.0, "ii": 1.0}


def dip_covariance(mu, logvar, kind: str):
    """The covariance DIP-VAE penalises, from a batch of posterior means and log-variances."""
    if kind not in DIAGONAL_FACTOR:
        raise ValueError(f"DIP-VAE kind {kind!r} is unknown: expected 'i' or 'ii'")
    cov = batch_covariance(mu.float())
    if kind == "ii":
        cov = cov + torch.diag(logvar.float().exp().mean(0))
    return cov


@gin.configurable
class DIPRegularizer(Regularizer):
    name = "dip"

    def __init__(self, kind: str = "i", lambda_od: float = 10.0, lambda_d: float = None):
        super().__init__()
        if kind not in DIAGONAL_FACTOR:
            raise ValueError(f"DIPRegularizer.kind {kind!r} is unknown: expected 'i' or 'ii'")
        self.kind, self.lambda_od = kind, float(lambda_od)
        self.lambda_d = DIAGONAL_FACTOR[kind] * self.lambda_od if lambda_d is None else float(lambda_d)

    def forward(self, out, model, x, factors, step):
        cov = dip_covariance(out["mu"], out["logvar"], self.kind)
        return {"dip": dip_penalty(cov, self.lambda_od, self.lambda_d)}


@register_objective("dipvae_i")
@gin.configurable
class DIPVAEI(Composite):
    name = "dipvae_i"

    def __init__(self, lambda_od: float = 10.0, lambda_d: float = None, beta=1.0):
        super().__init__(regularizers=[DIPRegularizer("i", lambda_od, lambda_d)], beta=beta)


@register_objective("dipvae_ii")
@gin.configurable
class DIPVAEII(Composite):
    name = "dipvae_ii"

    def __init__(self, lambda_od: float = 10.0, lambda_d: float = None, beta=1.0):
        super().__init__(regularizers=[DIPRegularizer("ii", lambda_od, lambda_d)], beta=beta)
