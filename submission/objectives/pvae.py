"""PVAE: masked DIP-VAE-I with hard-concrete gates on the latents and an L0 penalty on the gates (see shared/NOTES.md).

loss = reconstruction + sum_i m_i KL_i + lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - t_i)^2
       + tau sum_i P(m_i != 0),       C = Cov_batch[m * mu(x)],  m ~ HardConcrete(log alpha), one draw per sample
(DIP-VAE-I: Kumar et al. 2018, eq. 6; L0 gates: Louizos et al. 2018, eq. 12.)

The diagonal target t_i (the one deviation from NOTES' formula, ``diagonal_target = "mask"``, the default):
t_i = mean over the batch of m_i, the variance that a zero-mean unit-variance code has after the gate. DIP-I's "unit
variance" then applies to the dimensions the gate keeps, and a closed dimension (m_i = 0, so C_ii = t_i = 0) costs
nothing. NOTES' literal t_i = 1 (``diagonal_target = "one"``) makes the gates unable to prune: closing gate i sends C_ii
to 0 and costs lambda_d (C_ii - 1)^2 = lambda_d = 2 nats, while keeping a junk code open costs at most ~0.5 nat of KL
(a unit-variance mean with sigma ~ 1), or nothing at all once the encoder collapses it (then C_ii ~ 0 whether the gate is
open or shut, so the DIP term gives log alpha no gradient and only tau's 0.1 is left, against the reconstruction's
noise). With t_i = E[m_i] the DIP term is lambda_d E[m_i]^2 (Var mu_i - 1)^2 for a zero-mean code: an open but unused
(collapsed) dimension pays lambda_d E[m_i]^2 and the gradient through t_i pushes its gate shut, while an informative
dimension (gate open, t_i ~ 1) is penalised exactly as in DIP-VAE-I. Measured end to end (tests/test_pvae_pruning.py,
2 factors, 6 latents): with "one" all six gates stay open; with "mask" the four surplus gates shut.

Kept as in NOTES, on purpose:
  * tau = 0.1 per gate, not rescaled by the 12288-pixel reconstruction. What decides whether a gate shuts is the
    *marginal* reconstruction a dimension buys (zero for a surplus dimension), not the total, so tau is an MDL-like
    threshold in nats per example and does not need the image size; the closing drive comes mostly from the DIP and KL
    terms above. The L0 penalty is the closed form P(m != 0) (Louizos et al. eq. 12), not a sampled count.
  * The mask is drawn per sample (``HardConcreteGate.forward``), not once per batch as the reference code did: per
    sample, C = Cov[m * mu] and E[m_i] see the gate's randomness, and the gradient to log alpha averages over the batch.
  * The KL of a sample whose gate is shut does not count (m_i KL_i = 0): a shut dimension carries nothing to the
    decoder, so it costs no information.
  * log alpha starts at 6 in the recipe (P(open) ~ 0.998, gate test-time open): the latents learn to specialise first.
    Starting at 0 (Louizos' drop rate 0.5) drops half the latents of every sample and teaches the encoder redundant
    codes, which then keep every gate useful (measured: no gate shuts in the same test). Starting at 3 drops a code in
    about 5% of training draws, and in 20,000 steps that noise cost the first arm joint on every seed
    (studies/recipes-20k); at 6 the arm was kept.

Speed: Adam moves log alpha by at most ~lr per step, and a surplus gate must travel from 6 to below -log 11 ~ -2.4 for
the test-time gate hard-tanh(sigma(log alpha)(zeta - gamma) + gamma) to shut. At NOTES' lr = 1e-4 that is > 8e4 steps
(measured ~0.3 lr per step), hence the recipe's own, faster rate for log alpha (submission/configs/pvae.gin), and short
runs show ``expected_open`` falling well before ``active_dims`` drops.
"""
import gin

from submission.schedules import value_at

from .base import Objective, bernoulli_reconstruction, register_objective
from .dip import batch_covariance, dip_penalty


@register_objective("pvae")
@gin.configurable
class PVAEObjective(Objective):
    """See the module docstring; ``diagonal_target`` is "mask" (t_i = batch mean of m_i, the default: gates can prune)
    or "one" (NOTES' literal t_i = 1, kept for comparison: gates never shut)."""

    name = "pvae"

    def __init__(self, lambda_od=20.0, lambda_d=2.0, tau=0.1, diagonal_target: str = "mask"):
        super().__init__()
        if diagonal_target not in ("mask", "one"):
            raise ValueError(f"PVAEObjective.diagonal_target {diagonal_target!r} is unknown: expected 'mask' or 'one'")
        self.lambda_od, self.lambda_d, self.tau = lambda_od, lambda_d, tau     # numbers or schedules
        self.diagonal_target = diagonal_target

    def forward(self, model, x, factors, step):
        out = model(x)
        mask = out["mask"]                       # (N, D): one hard-concrete draw per sample and dimension
        # Each sample's KL in each dimension, weighted by that sample's gate, then averaged over the batch.
        mu, logvar = out["mu"].float(), out["logvar"].float()
        kl = (mask * 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0).sum()
        cov = batch_covariance(mask * mu)
        # "mask": the gated unit-variance target E[m_i] (not detached: its gradient is what shuts an unused gate).
        target = mask.mean(0) if self.diagonal_target == "mask" else 1.0
        open_probability = model.gate.open_probability()
        tau = value_at(self.tau, step)
        self.record(kl=kl.detach(), active_dims=model.active_dimensions(),
                    expected_open=open_probability.detach().sum(),
                    unmasked_kl=self.gaussian_kl(mu, logvar).detach().sum(), tau=tau)
        dip = dip_penalty(cov, value_at(self.lambda_od, step), value_at(self.lambda_d, step), target)
        return {"reconstruction": bernoulli_reconstruction(out["logits"], x), "kl": kl, "dip": dip,
                "l0": tau * open_probability.sum()}
