"""Which ground-truth factors a representation captured: for each factor, the normalised mutual information of its best
latent, I(z_j; v_k) / H(v_k), with dlib's discrete MI on the 20-bin histogram discretisation of each latent (the
estimator MIG uses, Chen et al. 2018). A factor counts as captured when that ratio reaches ``threshold`` (0.2).

The plug-in MI is biased upwards by about (bins - 1)(values - 1) / (2 N) nats, so keep N large (10,000, as MIG does).
"""
import numpy as np
import sklearn.metrics

from .batching import batched

CAPTURE_THRESHOLD = 0.2


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each latent (a column of ``codes``, (N, D)) binned into ``num_bins`` equal-width bins over its own range, as dlib's
    ``histogram_discretizer`` bins each row of its (D, N) array."""
    binned = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        binned[:, j] = np.digitize(codes[:, j], edges)
    return binned


def factor_capture(codes, factors, factor_names=None, num_bins: int = 20, threshold: float = CAPTURE_THRESHOLD) -> dict:
    """{"capture_nmi": {name: best latent's I / H}, "best_latent": {name: j}, "captured": [names], "captured_factors": n}
    from codes (N, D) and integer factors (N, K). A factor with a single value (H = 0) is never captured."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"factor_capture needs codes (N, D) and factors (N, K) with the same N, got {codes.shape} "
                         f"and {factors.shape}")
    names = list(factor_names) if factor_names is not None else [f"factor_{k}" for k in range(factors.shape[1])]
    binned = histogram_discretize(codes, num_bins)
    nmi, best = {}, {}
    for k, name in enumerate(names):
        entropy = sklearn.metrics.mutual_info_score(factors[:, k], factors[:, k])
        if entropy <= 0:
            nmi[name], best[name] = 0.0, None
            continue
        mi = [sklearn.metrics.mutual_info_score(factors[:, k], binned[:, j]) for j in range(codes.shape[1])]
        best[name] = int(np.argmax(mi))
        nmi[name] = round(float(mi[best[name]] / entropy), 6)
    captured = [name for name in names if nmi[name] >= threshold]
    return {"capture_nmi": nmi, "best_latent": best, "captured": captured, "captured_factors": len(captured)}


def capture_of_representation(ground_truth_data, representation_function, random_state, num_samples: int = 10000,
                              batch_size: int = 64) -> dict:
    """``factor_capture`` on ``num_samples`` draws of a ground-truth dataset, encoded by ``representation_function``
    (numpy NHWC floats in [0, 1] -> (N, D), dlib's convention), with ``readout_nmi`` (``factor_readout`` on the same
    draws: what all the codes together carry about each factor)."""
    from .readout import factor_readout
    factors, observations = ground_truth_data.sample(num_samples, random_state)
    codes = batched(representation_function, observations, batch_size)
    names = getattr(ground_truth_data, "factor_names", None)
    return {**factor_capture(codes, factors, names), **factor_readout(codes, factors, names)}
