"""InfoMEC (Hsu, Dorrell, Whittington, Wu & Finn 2023, "Disentanglement via Latent Quantization", Sec. 5): how
modular (InfoM), explicit (InfoE) and compact (InfoC) a representation is, from normalised mutual information.

    NMI[k, j] = I(z_j; v_k) / H(v_k)        codes standardised; I by the k-nearest-neighbour estimator (k = 10) that
                                             sklearn's ``mutual_info_classif`` implements (Ross 2014), as the paper
    active codes: those whose range over the sample exceeds 1/20 of the largest code's range
    InfoM = (mean over active codes j of max_k NMI[k, j] / sum_k NMI[k, j] - 1/K) / (1 - 1/K)     K factors
    InfoC = (mean over factors k of max_j NMI[k, j] / sum_j NMI[k, j] - 1/L) / (1 - 1/L)          L active codes
    InfoE = mean over factors of (H_null - H_z) / H_null, the log loss of a multinomial logistic regression of the
            factor on the standardised codes (H_z) against one on no features (H_null, the factor's marginal entropy)

Each is 1 at best. InfoM and InfoC are 0 when every code carries every factor equally (InfoM: each code spreads over
the factors; InfoC: each factor spreads over the codes); InfoE is 0 for codes that tell nothing about the factors.
"""
import numpy as np


def standardised(codes):
    """Each column shifted to mean 0 and scaled to std 1 (a constant column is only shifted)."""
    spread = codes.std(axis=0)
    return (codes - codes.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def _labels(factors):
    return np.stack([np.unique(column, return_inverse=True)[1] for column in factors.T], axis=1)


def normalised_mutual_information(codes, factors, random_state=0) -> np.ndarray:
    """(K factors, D codes) I(z_j; v_k) / H(v_k) with the kNN estimator on standardised codes."""
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import mutual_info_score
    z, labels = standardised(np.asarray(codes, np.float64)), _labels(np.asarray(factors))
    nmi = np.zeros((labels.shape[1], z.shape[1]))
    for k in range(labels.shape[1]):
        entropy = mutual_info_score(labels[:, k], labels[:, k])
        if entropy <= 0:
            continue
        mi = mutual_info_classif(z, labels[:, k], discrete_features=False, n_neighbors=10, random_state=random_state)
        nmi[k] = np.clip(mi, 0.0, None) / entropy
    return nmi


def _concentration(nmi, axis, others):
    """Mean over the other axis of max / sum along ``axis``, rescaled so that an even spread over ``others`` is 0."""
    totals = nmi.sum(axis=axis)
    share = np.divide(nmi.max(axis=axis), totals, out=np.full(totals.shape, 1.0 / others), where=totals > 0)
    return float((share.mean() - 1.0 / others) / (1.0 - 1.0 / others)) if others > 1 else 1.0


def _log_loss_of_fit(features, labels) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    model = LogisticRegression(C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100)
    model.fit(features, labels)
    return float(log_loss(labels, model.predict_proba(features), labels=model.classes_))


def explicitness(codes, factors) -> float:
    """InfoE: the mean over factors of the share of their (logistic) entropy that the codes explain."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    z, labels = standardised(np.asarray(codes, np.float64)), _labels(np.asarray(factors))
    shares = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)      # 100 lbfgs steps, as the paper; the loss is what counts
        for k in range(labels.shape[1]):
            if len(np.unique(labels[:, k])) < 2:
                continue
            null = _log_loss_of_fit(np.zeros((len(z), 1)), labels[:, k])
            shares.append((null - _log_loss_of_fit(z, labels[:, k])) / null)
    return float(np.mean(shares)) if shares else 0.0


def infomec(codes, factors, random_state=0) -> dict:
    """{"infom", "infoe", "infoc", "infomec_active_codes"} of codes (N, D) and integer factors (N, K)."""
    codes = np.asarray(codes, np.float64)
    ranges = codes.max(axis=0) - codes.min(axis=0)
    active = ranges > ranges.max() / 20 if ranges.max() > 0 else np.zeros(len(ranges), bool)
    if not active.any():
        return {"infom": 0.0, "infoe": 0.0, "infoc": 0.0, "infomec_active_codes": 0}
    nmi = normalised_mutual_information(codes[:, active], factors, random_state)
    return {"infom": _concentration(nmi, axis=0, others=nmi.shape[0]),
            "infoc": _concentration(nmi, axis=1, others=nmi.shape[1]),
            "infoe": explicitness(codes[:, active], factors), "infomec_active_codes": int(active.sum())}
