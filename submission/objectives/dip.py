"""The DIP penalty (Kumar, Sattigeri & Balakrishnan 2018, "Variational inference of disentangled latent concepts from
unlabeled observations", eq. 6): how far a covariance is from the identity. Pure functions, shared by DIP-VAE, PVAE
(masked DIP-VAE-I) and PJVAE.
"""
import torch


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
