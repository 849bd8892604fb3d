"""PVAE: masked DIP-VAE-I with hard-concrete gates on the latents and an L0 penalty on the gates (docs/methods.md).

loss = reconstruction + beta sum_i m_i KL_i + lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - t_i)^2
       + tau sum_i P(m_i != 0),       C = Cov_batch[m * mu(x)],  m ~ HardConcrete(log alpha), one draw per sample
(DIP-VAE-I: Kumar et al. 2018, eq. 6; L0 gates: Louizos et al. 2018, eq. 12.)  beta is 1 in the paper's objective
and in the recipe; a larger one adds beta-VAE's pressure toward axis-aligned codes (a float or a schedule).

The diagonal target t_i (``diagonal_target = "mask"``, the default) is the batch mean of m_i, the variance that a
zero-mean unit-variance code has after its gate: DIP-I's "unit variance" applies to the dimensions the gate keeps, and a
shut dimension (m_i = 0, so C_ii = t_i = 0) costs nothing. With the literal t_i = 1 (``"one"``) closing gate i costs
lambda_d (C_ii - 1)^2 = lambda_d nats while a junk code open costs at most ~0.5 nat of KL, so the gates cannot prune
(tests/test_pvae_pruning.py: with "one" all six gates stay open; with "mask" the four surplus gates shut).

Also on purpose: tau = 0.1 per gate is an MDL-like threshold in nats per example, not rescaled by the image size (what
decides a gate is the marginal reconstruction its dimension buys); the L0 term is the closed form P(m != 0); the mask is
drawn per sample, not once per batch, so C and E[m_i] see the gate's randomness; a shut sample's KL does not count.

Speed: Adam moves log alpha by at most ~lr per step, and a surplus gate must travel from its start (log alpha 6 in the
recipe) to below -log 11 ~ -2.4 for the test-time gate hard-tanh(sigma(log alpha)(zeta - gamma) + gamma) to shut, hence
the recipe's own, faster rate for log alpha (submission/configs/pvae.gin).
"""
import gin

from submission.schedules import value_at

from .base import Objective, register_objective
from .dip import batch_covariance, dip_penalty


DIAGONAL_TARGETS = ("mask", "mask_detached", "one")


@register_objective("pvae")
@gin.configurable
class PVAEObjective(Objective):
    """See the module docstring; ``diagonal_target`` is "mask" (t_i = batch mean of m_i, the default: gates can prune),
    "mask_detached" (the same target held constant in the gradient: the DIP term never shuts a gate, only the L0 term
    and the KL do) or "one" (the literal t_i = 1, kept for comparison: gates never shut)."""

    name = "pvae"

    def __init__(self, lambda_od=20.0, lambda_d=2.0, tau=0.1, diagonal_target: str = "mask", beta=1.0):
        super().__init__()
        if diagonal_target not in DIAGONAL_TARGETS:
            raise ValueError(f"PVAEObjective.diagonal_target {diagonal_target!r} is unknown: expected one of "
                             f"{', '.join(DIAGONAL_TARGETS)}")
        if isinstance(beta, (int, float)) and not beta >= 0:
            raise ValueError(f"PVAEObjective.beta {beta!r} is invalid: expected a KL weight >= 0 "
                             f"(a number or a schedule)")
        self.lambda_od, self.lambda_d, self.tau = lambda_od, lambda_d, tau     # numbers or schedules
        self.diagonal_target, self.beta = diagonal_target, beta

    def forward(self, model, x, factors, step):
        out = model(x)
        mask = out["mask"]                       # (N, D): one hard-concrete draw per sample and dimension
        # Each sample's KL in each dimension, weighted by that sample's gate, then averaged over the batch.
        mu, logvar = out["mu"].float(), out["logvar"].float()
        kl = (mask * 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0).sum()
        cov = batch_covariance(mask * mu)
        # "mask": the gated unit-variance target E[m_i] (not detached: its gradient is what shuts an unused gate).
        # "mask_detached": the same target as a constant, so the only pull the DIP term has on a gate is through C_ii,
        # and that pull opens a gate whose code varies: only the L0 term and the KL can shut it.
        target = 1.0 if self.diagonal_target == "one" else mask.mean(0)
        if self.diagonal_target == "mask_detached":
            target = target.detach()
        open_probability = model.gate.open_probability()
        tau = value_at(self.tau, step)
        self.record(kl=kl.detach(), active_dims=model.open_gates(),
                    expected_open=open_probability.detach().sum(),
                    unmasked_kl=self.gaussian_kl(mu, logvar).detach().sum(), tau=tau)
        dip = dip_penalty(cov, value_at(self.lambda_od, step), value_at(self.lambda_d, step), target)
        return {"reconstruction": self.reconstruction(out["logits"], x), "kl": value_at(self.beta, step) * kl,
                "dip": dip, "l0": tau * open_probability.sum()}
