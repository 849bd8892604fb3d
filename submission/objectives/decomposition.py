"""Disentangling disentanglement (Mathieu, Rainforth, Siddharth & Teh 2019, eq. 7):

    loss = reconstruction + beta KL(q(z|x) || p(z)) + alpha D(q(z), p(z))

D is either the dimension-wise MMD with the inverse-multiquadric kernel C / (C + (x - y)^2), C = 2 s for
s in {.1, .2, .5, 1, 2, 5} (one dimension, so d = 1), or a Monte Carlo estimate of KL(q(z) || p(z)) with the
minibatch aggregate posterior q(z_i) ~ (1/B) sum_j q(z_i | x_j). Priors (all factorise over dimensions):

    gaussian   N(0, 1)
    sparse     gamma N(0, 0.05^2) + (1 - gamma) N(0, 1), gamma = 0.8           (sec. 5.2, the sparsity experiment)
    clustered  an equal mixture of K Gaussians with means linspace(-spread, spread, K) and a shared scale
               (a factorised stand-in for the paper's clustered mixture, sec. 5.1)
    student_t  Student-t with df = 9                                           (sec. 5.1, anisotropic prior)

With a non-Gaussian prior the KL(q(z|x) || p(z)) term has no closed form: it is the single-sample estimate
log q(z|x) - log p(z) at the reparameterised z (the paper's choice).
"""
import math

import gin
import torch

from .base import Objective, gaussian_kl_per_dim, register_objective
from .infovae import IMQ_SCALES, mmd_unbiased

LOG_2PI = math.log(2.0 * math.pi)


def normal_log_density(z, mean, log_scale):
    """Elementwise log N(z; mean, exp(log_scale)^2)."""
    return -0.5 * (LOG_2PI + 2.0 * log_scale + (z - mean).pow(2) * torch.exp(-2.0 * log_scale))


class GaussianMixturePrior:
    """A factorised prior whose every dimension is sum_k w_k N(mean_k, scale_k^2)."""

    def __init__(self, weights, means, scales):
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.means = torch.tensor(means, dtype=torch.float32)
        self.scales = torch.tensor(scales, dtype=torch.float32)
        if not (len(self.weights) == len(self.means) == len(self.scales)) or abs(float(self.weights.sum()) - 1) > 1e-5:
            raise ValueError(f"mixture prior weights {weights}, means {means}, scales {scales}: expected equal lengths "
                             f"and weights summing to 1")

    def log_prob(self, z):
        w, m, s = (t.to(z.device) for t in (self.weights, self.means, self.scales))
        per_component = torch.log(w) + normal_log_density(z.float()[..., None], m, torch.log(s))
        return torch.logsumexp(per_component, dim=-1)

    def sample(self, shape, device=None):
        component = torch.multinomial(self.weights, math.prod(shape), replacement=True).reshape(shape)
        eps = torch.randn(shape)
        return (self.means[component] + self.scales[component] * eps).to(device)


class StudentTPrior:
    def __init__(self, df: float = 9.0):
        self.df = float(df)

    def log_prob(self, z):
        return torch.distributions.StudentT(self.df).log_prob(z.float())

    def sample(self, shape, device=None):
        return torch.distributions.StudentT(self.df).sample(shape).to(device)


def make_prior(name: str, sparse_gamma: float = 0.8, spike_scale: float = 0.05, clusters: int = 4,
               cluster_spread: float = 1.5, cluster_scale: float = 0.3, df: float = 9.0):
    if name == "gaussian":
        return GaussianMixturePrior([1.0], [0.0], [1.0])
    if name == "sparse":
        return GaussianMixturePrior([sparse_gamma, 1.0 - sparse_gamma], [0.0, 0.0], [spike_scale, 1.0])
    if name == "clustered":
        means = torch.linspace(-cluster_spread, cluster_spread, clusters).tolist()
        return GaussianMixturePrior([1.0 / clusters] * clusters, means, [cluster_scale] * clusters)
    if name == "student_t":
        return StudentTPrior(df)
    raise ValueError(f"prior {name!r} is unknown: expected 'gaussian', 'sparse', 'clustered' or 'student_t'")


def dimensionwise_mmd(z, prior_samples, scales=IMQ_SCALES):
    """sum_d MMD^2(q(z_d), p(z_d)) with the 1-D inverse-multiquadric kernel (C = 2 s)."""
    def kernel(a, b):
        d2 = (a - b.T).pow(2)
        return sum(2.0 * s / (2.0 * s + d2) for s in scales)
    return sum(mmd_unbiased(z[:, d:d + 1], prior_samples[:, d:d + 1], kernel) for d in range(z.shape[1]))


def aggregate_kl_estimate(z, mu, logvar, prior):
    """Monte Carlo KL(q(z) || p(z)) = mean_i [log q(z_i) - log p(z_i)], log q(z_i) = logsumexp_j log q(z_i|x_j) - log B."""
    log_q_matrix = normal_log_density(z.float()[:, None, :], mu.float()[None], 0.5 * logvar.float()[None]).sum(2)
    log_qz = torch.logsumexp(log_q_matrix, dim=1) - math.log(z.shape[0])
    return (log_qz - prior.log_prob(z).sum(1)).mean()


def posterior_kl(z, mu, logvar, prior, prior_name, gaussian_kl=gaussian_kl_per_dim):
    """KL(q(z|x) || p(z)) summed over dimensions, averaged over the batch: closed form for the Gaussian prior,
    else the single-sample estimate log q(z|x) - log p(z)."""
    if prior_name == "gaussian":
        return gaussian_kl(mu, logvar).sum()
    log_q = normal_log_density(z.float(), mu.float(), 0.5 * logvar.float()).sum(1)
    return (log_q - prior.log_prob(z).sum(1)).mean()


@register_objective("decomposition")
@gin.configurable
class Decomposition(Objective):
    name = "decomposition"

    def __init__(self, prior: str = "sparse", divergence: str = "mmd", beta: float = 1.0, alpha: float = 100.0,
                 sparse_gamma: float = 0.8, clusters: int = 4, df: float = 9.0):
        super().__init__()
        if divergence not in ("mmd", "kl"):
            raise ValueError(f"Decomposition.divergence {divergence!r} is unknown: expected 'mmd' or 'kl'")
        self.prior_name, self.divergence = prior, divergence
        self.prior = make_prior(prior, sparse_gamma=sparse_gamma, clusters=clusters, df=df)
        self.beta, self.alpha = float(beta), float(alpha)

    def forward(self, model, x, factors, step):
        out = model(x)
        z, mu, logvar = out["z"].float(), out["mu"].float(), out["logvar"].float()
        kl = posterior_kl(z, mu, logvar, self.prior, self.prior_name, self.gaussian_kl)
        if self.divergence == "mmd":
            d = dimensionwise_mmd(z, self.prior.sample(tuple(z.shape), z.device))
        else:
            d = aggregate_kl_estimate(z, mu, logvar, self.prior)
        self.record(kl=kl.detach(), divergence=d.detach())
        return {"reconstruction": self.reconstruction(out["logits"], x), "kl": self.beta * kl,
                "divergence": self.alpha * d}
