"""The total correlation TC = E_q[log q(z) - sum_d log q(z_d)] of a minibatch of Gaussian posteriors (Chen et al. 2018,
"Isolating sources of disentanglement in VAEs"), minibatch-weighted (MWS, eq. S6) or minibatch-stratified (MSS,
appendix C.2). Pure functions, shared by beta-TCVAE and any composite that adds the TC term.
"""
import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density_matrix(z, mu, logvar):
    """log q(z_i,d | x_j) for every pair of batch items: (B, B, D), row i = sample, column j = posterior."""
    z, mu, logvar = z.float()[:, None, :], mu.float()[None, :, :], logvar.float()[None, :, :]
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def stratified_log_weights(batch_size: int, dataset_size: int, device=None):
    """log W of the minibatch-stratified sampler (Chen et al. appendix C.2; docs/methods.md):
    1/(B-1) everywhere, 1/N on the diagonal, (N-B+1)/(N(B-1)) on W[i, i+1] and on W[B-2, 0]."""
    b, n = batch_size, dataset_size
    m = b - 1
    if n < m:  # the stratified weight (N-B+1)/(N(B-1)) would be negative: there is no such sampler
        raise ValueError(f"the minibatch-stratified TC estimator needs dataset size N >= batch size - 1, "
                         f"got N={n} and batch size {b}: use estimator='mws' or a smaller batch")
    w = torch.full((b, b), 1.0 / m, dtype=torch.float64)
    w.fill_diagonal_(1.0 / n)
    strat = (n - m) / (n * m)
    idx = torch.arange(b - 1)
    w[idx, idx + 1] = strat
    w[b - 2, 0] = strat
    return torch.log(w).float().to(device)


def log_q_marginals(log_qz_matrix, dataset_size: int, estimator: str):
    """(log q(z_i), sum_d log q(z_i,d)) for each sample i, from the (B, B, D) matrix, with logsumexp throughout."""
    b = log_qz_matrix.shape[0]
    if estimator == "mws":
        log_norm = math.log(dataset_size * b)
        log_qz = torch.logsumexp(log_qz_matrix.sum(2), dim=1) - log_norm
        log_prod = (torch.logsumexp(log_qz_matrix, dim=1) - log_norm).sum(1)
    elif estimator == "mss":
        log_w = stratified_log_weights(b, dataset_size, log_qz_matrix.device)
        log_qz = torch.logsumexp(log_w + log_qz_matrix.sum(2), dim=1)
        log_prod = torch.logsumexp(log_w[:, :, None] + log_qz_matrix, dim=1).sum(1)
    else:
        raise ValueError(f"total-correlation estimator {estimator!r} is unknown: expected 'mws' or 'mss'")
    return log_qz, log_prod


def total_correlation(z, mu, logvar, dataset_size: int, estimator: str = "mss"):
    """TC estimate, averaged over the batch."""
    log_qz, log_prod = log_q_marginals(gaussian_log_density_matrix(z, mu, logvar), dataset_size, estimator)
    return (log_qz - log_prod).mean()
