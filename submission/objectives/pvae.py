"""PVAE: masked DIP-VAE-I with hard-concrete gates on the latents and an L0 penalty on the gates (see shared/NOTES.md).

loss = reconstruction + sum_i m_i KL_i + lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - t_i)^2
       + tau sum_i P(m_i != 0),       C = Cov_batch[m * mu(x)]
t_i = 1 as in NOTES (``diagonal_target = "one"``, the default); ``"mask"`` uses the batch mean of gate i instead, so a
closed surplus dimension costs nothing (see ``PVAEObjective.forward``).
(DIP-VAE-I: Kumar et al. 2018, eq. 6; L0 gates: Louizos et al. 2018, eq. 12.)
"""
import gin
import torch

from .base import Objective, bernoulli_reconstruction, gaussian_kl_per_dim, register_objective


def batch_covariance(v):
    """Cov over the batch of (N, D) rows -> (D, D), with the 1/N (maximum-likelihood) normaliser."""
    centred = v - v.mean(0, keepdim=True)
    return centred.T @ centred / v.shape[0]


def dip_penalty(cov, lambda_od: float, lambda_d: float, diagonal_target=1.0):
    """lambda_od * sum of squared off-diagonal entries + lambda_d * sum (diagonal - target)^2 (DIP-VAE, eq. 6;
    the target is 1 in DIP-VAE, and may be a per-dimension tensor)."""
    diagonal = torch.diagonal(cov)
    off_diagonal = cov - torch.diag_embed(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - diagonal_target).pow(2).sum()


@register_objective("pvae")
@gin.configurable
class PVAEObjective(Objective):
    name = "pvae"

    def __init__(self, lambda_od: float = 20.0, lambda_d: float = 2.0, tau: float = 0.1, diagonal_target: str = "one"):
        super().__init__()
        if diagonal_target not in ("mask", "one"):
            raise ValueError(f"PVAEObjective.diagonal_target {diagonal_target!r} is unknown: expected 'mask' or 'one'")
        self.lambda_od, self.lambda_d, self.tau = float(lambda_od), float(lambda_d), float(tau)
        self.diagonal_target = diagonal_target

    def forward(self, model, x, factors, step):
        out = model(x)
        mask = out["mask"]
        # Each sample's KL in each dimension, weighted by that sample's gate, then averaged over the batch.
        mu, logvar = out["mu"].float(), out["logvar"].float()
        kl = (mask * 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0).sum()
        cov = batch_covariance(mask * mu)
        # NOTES' target 1 charges a closed gate lambda_d, while a junk unit-variance code costs only ~0.5 nats of KL;
        # target "mask" (the gate's batch mean) makes a closed dimension free instead.
        target = mask.mean(0) if self.diagonal_target == "mask" else 1.0
        open_probability = model.gate.open_probability()
        self.record(kl=kl.detach(), active_dims=model.active_dimensions(),
                    expected_open=open_probability.detach().sum(),
                    unmasked_kl=gaussian_kl_per_dim(mu, logvar).detach().sum())
        return {"reconstruction": bernoulli_reconstruction(out["logits"], x), "kl": kl,
                "dip": dip_penalty(cov, self.lambda_od, self.lambda_d, target), "l0": self.tau * open_probability.sum()}
