"""What all the codes together carry about each factor, whether or not one code holds it: a random-forest read-out.

``factor_capture`` asks whether one code holds a factor (its best code's normalised MI). A factor can fail that test in
two ways: the model dropped it (nothing in the codes predicts it), or the model kept it but spread it over several codes
(entangled). The read-out tells them apart. A random forest (scikit-learn, 50 trees, at least 3 samples a leaf, seed 0:
trees need no scaling and ignore codes that carry nothing) is fitted on the first half of the samples to predict each
factor from all the codes; the score is the normalised MI of its predictions with the truth on the held-out half,
I(prediction; v) / H(v): 1 when the codes determine the factor, near 0 when they say nothing about it. Near misses count
as misses, so a many-valued factor stays below 1 even when it is well encoded (about .85 for a 40-valued factor coded
with a little noise, on 5,000 held-out samples; the plug-in MI's upward bias is about .05 there).
"""
import numpy as np
import sklearn.metrics
from sklearn.ensemble import RandomForestClassifier

READOUT_TREES = 50


def factor_readout(codes, factors, factor_names=None, trees: int = READOUT_TREES) -> dict:
    """{"readout_nmi": {name: I(prediction; v) / H(v) on the held-out half}} from codes (N, D) and integer factors
    (N, K): a random forest per factor fitted on the first half of the rows, scored on the second. A factor with a
    single value on the held-out half scores 0."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"factor_readout needs codes (N, D) and factors (N, K) with the same N, got {codes.shape} "
                         f"and {factors.shape}")
    if len(codes) < 20:
        raise ValueError(f"factor_readout needs at least 20 samples, got {len(codes)}")
    names = list(factor_names) if factor_names is not None else [f"factor_{k}" for k in range(factors.shape[1])]
    half = len(codes) // 2
    scores = {}
    for k, name in enumerate(names):
        truth = factors[half:, k]
        entropy = sklearn.metrics.mutual_info_score(truth, truth)
        if entropy <= 0:
            scores[name] = 0.0
            continue
        forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=3, random_state=0, n_jobs=1)
        predicted = forest.fit(codes[:half], factors[:half, k]).predict(codes[half:])
        scores[name] = round(float(sklearn.metrics.mutual_info_score(truth, predicted) / entropy), 6)
    return {"readout_nmi": scores}
