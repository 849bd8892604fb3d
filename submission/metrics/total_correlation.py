"""Total correlation of the aggregate posterior, TC(z) = KL(q(z) || prod_d q(z_d)) (Watanabe 1960; Chen et al. 2018).

* ``sampled_total_correlation``: needs the posteriors (mu, logvar) of N inputs; z_i ~ q(z|x_i), and the N inputs stand for
  the data set: log q(z_i) = logsumexp_j log q(z_i|x_j) - log N, likewise per dimension (Chen et al. 2018, sec. 4.1).
* ``gaussian_total_correlation``: from the representations alone (what an exported model gives), the TC of a Gaussian
  with their covariance: 1/2 (sum_d log Sigma_dd - log det Sigma) = -1/2 log det(correlation).
"""
import math

import numpy as np
from scipy.special import logsumexp


def gaussian_total_correlation(codes, min_variance: float = 1e-8) -> dict:
    codes = np.asarray(codes, dtype=np.float64)
    keep = codes.var(0) > min_variance            # constant (pruned) dimensions carry no dependence
    if keep.sum() < 2:
        return {"gaussian_tc": 0.0}
    cov = np.cov(codes[:, keep], rowvar=False)
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return {"gaussian_tc": float("inf")}
    return {"gaussian_tc": float(0.5 * (np.log(np.diag(cov)).sum() - logdet))}


def sampled_total_correlation(mu, logvar, rng: np.random.Generator, chunk: int = 256) -> dict:
    """mu, logvar: (N, D) posteriors of N inputs."""
    mu, logvar = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    n = mu.shape[0]
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    tc = []
    for start in range(0, n, chunk):
        zi = z[start:start + chunk, None, :]                                        # (c, 1, D)
        log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (zi - mu[None]) ** 2 * np.exp(-logvar[None]))
        log_qz = logsumexp(log_q.sum(2), axis=1) - math.log(n)
        log_prod = (logsumexp(log_q, axis=1) - math.log(n)).sum(1)
        tc.append(log_qz - log_prod)
    return {"sampled_tc": float(np.concatenate(tc).mean())}
