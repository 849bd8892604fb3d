"""InfoVAE (Zhao, Song & Ermon 2019, "InfoVAE: balancing learning and inference in VAEs", eq. 6):

    loss = reconstruction + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) MMD(q(z), p(z))

with the unbiased MMD^2 estimator (Gretton et al. 2012, eq. 3) between the batch of z and as many prior samples. The
kernels are the Gaussian exp(-|x-y|^2 / (2 h^2)) and the inverse multiquadric C / (C + |x-y|^2) summed over scales
(Tolstikhin et al. 2018, WAE, sec. 4: C = 2 d s for s in {.1, .2, .5, 1, 2, 5}).
"""
import gin
import torch

from .base import register_objective
from .composite import Composite, Regularizer

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def squared_distances(a, b):
    """|a_i - b_j|^2 for (N, D) and (M, D) -> (N, M), without a cancellation-prone expansion."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)


def gaussian_kernel(a, b, bandwidth: float = 1.0):
    return torch.exp(-squared_distances(a, b) / (2.0 * bandwidth ** 2))


def imq_kernel(a, b, scales=IMQ_SCALES):
    """Sum over s of C / (C + |a - b|^2) with C = 2 d s (d = the dimension of a and b)."""
    d2 = squared_distances(a, b)
    return sum(2.0 * a.shape[1] * s / (2.0 * a.shape[1] * s + d2) for s in scales)


def mmd_unbiased(a, b, kernel):
    """Unbiased MMD^2 between samples a (N, D) and b (M, D): mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j)
    - 2 mean_{i, j} k(a_i, b_j) (Gretton et al. 2012, eq. 3)."""
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {n} and {m}")
    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    within_a = (k_aa.sum() - torch.diagonal(k_aa).sum()) / (n * (n - 1))
    within_b = (k_bb.sum() - torch.diagonal(k_bb).sum()) / (m * (m - 1))
    return within_a + within_b - 2.0 * k_ab.mean()


KERNELS = {"gaussian": lambda a, b: gaussian_kernel(a, b, bandwidth=float(a.shape[1]) ** 0.5),
           "imq": imq_kernel}


@gin.configurable
class MMDRegularizer(Regularizer):
    """weight * MMD^2(q(z), N(0, I)) on the batch's z samples."""

    name = "mmd"
    requires = ("z",)

    def __init__(self, weight: float = 100.0, kernel: str = "imq"):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"MMDRegularizer.kernel {kernel!r} is unknown: expected one of {sorted(KERNELS)}")
        self.weight, self.kernel = float(weight), kernel

    def forward(self, out, model, x, factors, step):
        z = out["z"].float()
        mmd = mmd_unbiased(z, torch.randn_like(z), KERNELS[self.kernel])
        self.record(mmd=mmd.detach())
        return {self.name: self.weight * mmd}


@register_objective("infovae")
@gin.configurable
class InfoVAE(Composite):
    name = "infovae"

    def __init__(self, alpha: float = 0.0, lambda_: float = 1000.0, kernel: str = "imq"):
        if alpha + lambda_ - 1.0 < 0:
            raise ValueError(f"InfoVAE alpha={alpha}, lambda_={lambda_}: expected alpha + lambda_ >= 1 "
                             f"(a non-negative MMD weight)")
        super().__init__(regularizers=[MMDRegularizer(alpha + lambda_ - 1.0, kernel)], beta=1.0 - alpha)
