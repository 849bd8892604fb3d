"""MIC, the mutual information concentration of the Grouped-VAE paper ("Important Groups First"; docs/methods.md):

    MIC(f, S) = (sum_{n in S} I(d_n; f) - sum_{n not in S} I(d_n; f)) / H(f)

for a factor f and a set S of latent dimensions, each dimension binned into 20 equal-width histogram bins (as dlib's
histogram discretizer). 1 when one dimension in S carries all of f and no other dimension any (redundant copies
inside S push it above 1); <= 0 when as much of f lies outside S as inside. For each factor
S is the group (default: each dimension on its own) with the highest MIC; the score is the mean over factors.
"""
import numpy as np
from sklearn.metrics import mutual_info_score


def histogram_discretize(codes, num_bins: int = 20):
    """(N, D) floats -> (N, D) ints: each column binned into ``num_bins`` equal-width bins over its own range."""
    codes = np.asarray(codes, dtype=np.float64)
    binned = np.zeros(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram(codes[:, d], num_bins)[1][:-1]
        binned[:, d] = np.digitize(codes[:, d], edges)
    return binned


def mutual_information_matrix(binned_codes, factors):
    """I(d_n; f_k) in nats for every code dimension n and factor k -> (D, F)."""
    return np.array([[mutual_info_score(factors[:, k], binned_codes[:, n]) for k in range(factors.shape[1])]
                     for n in range(binned_codes.shape[1])])


def mic_from_mutual_information(mi, factor_entropies, groups):
    """(best MIC per factor, index of the best group per factor) from the (D, F) MI matrix."""
    total = mi.sum(0)
    scores = np.stack([(2.0 * mi[list(group)].sum(0) - total) / factor_entropies for group in groups])  # (G, F)
    return scores.max(0), scores.argmax(0)


def mutual_information_concentration(codes, factors, groups=None, num_bins: int = 20) -> dict:
    """Pure function on arrays: codes (N, D) floats, factors (N, F) ints; ``groups`` a list of lists of dimensions."""
    codes, factors = np.asarray(codes), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(f"MIC needs codes (N, D) and factors (N, F) with the same N, got {codes.shape} and "
                         f"{factors.shape}")
    groups = [[n] for n in range(codes.shape[1])] if groups is None else [list(g) for g in groups]
    mi = mutual_information_matrix(histogram_discretize(codes, num_bins), factors)
    entropies = np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    varying = entropies > 0
    per_factor, best = mic_from_mutual_information(mi[:, varying], entropies[varying], groups)
    return {"mic": float(per_factor.mean()), "mic_per_factor": per_factor.tolist(), "mic_best_group": best.tolist()}
