"""The extra metrics against closed forms and brute force on small synthetic codes."""
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from submission.metrics import (active_dimensions, gaussian_total_correlation, mutual_information_concentration,
                                reconstruction_error, sampled_total_correlation)
from submission.metrics.mic import histogram_discretize


def test_mic_is_one_when_a_dimension_is_the_factor_and_the_rest_is_constant():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(2000, 2))
    codes = np.stack([factors[:, 0], np.zeros(2000), factors[:, 1] * 2.0 + 1.0], 1)
    result = mutual_information_concentration(codes, factors)
    # 1 up to the plug-in bias of I(d_other; f) for independent factors on 2000 samples
    assert result["mic_per_factor"] == pytest.approx([1.0, 1.0], abs=0.01)
    assert result["mic_best_group"] == [0, 2]


def test_mic_matches_the_formula_by_hand_for_a_split_factor():
    """A factor copied into two dimensions: for S = one of them, MIC = (H - H) / H = 0; for the group of both,
    (H + H - 0) / H = 2 (redundancy inside S counts twice)."""
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 3, size=(3000, 1))
    codes = np.concatenate([factors, factors], 1).astype(float)
    assert mutual_information_concentration(codes, factors)["mic"] == pytest.approx(0.0, abs=1e-9)
    assert mutual_information_concentration(codes, factors, groups=[[0, 1]])["mic"] == pytest.approx(2.0)


def test_histogram_discretize_uses_equal_width_bins():
    codes = np.array([[0.0], [0.49], [0.51], [1.0]])
    assert histogram_discretize(codes, 2)[:, 0].tolist() == [1, 1, 2, 2]


def test_active_dimensions_counts_variance_above_threshold():
    rng = np.random.default_rng(0)
    codes = np.stack([rng.normal(0, 1, 500), rng.normal(0, 0.01, 500), np.full(500, 3.0)], 1)
    result = active_dimensions(codes)
    assert result["active_dims"] == 1
    assert result["activity"][0] == pytest.approx(np.var(codes[:, 0]))


def test_gaussian_total_correlation_closed_form():
    """Two unit Gaussians with correlation r: TC = -1/2 log(1 - r^2)."""
    rng = np.random.default_rng(0)
    r = 0.8
    codes = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=200000)
    assert gaussian_total_correlation(codes)["gaussian_tc"] == pytest.approx(-0.5 * math.log(1 - r * r), rel=0.02)
    independent = rng.normal(size=(200000, 3)) * [1.0, 5.0, 0.1]
    assert gaussian_total_correlation(independent)["gaussian_tc"] == pytest.approx(0.0, abs=1e-3)


def test_sampled_total_correlation_matches_brute_force():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)) * 0.3
    z = mu + np.exp(0.5 * logvar) * np.random.default_rng(7).standard_normal(mu.shape)
    expected = 0.0
    for i in range(5):
        logq = [[-0.5 * (math.log(2 * math.pi) + logvar[j, d] + (z[i, d] - mu[j, d]) ** 2 / math.exp(logvar[j, d]))
                 for d in range(2)] for j in range(5)]
        joint = logsumexp([sum(row) for row in logq]) - math.log(5)
        marginals = sum(logsumexp([logq[j][d] for j in range(5)]) - math.log(5) for d in range(2))
        expected += (joint - marginals) / 5
    got = sampled_total_correlation(mu, logvar, np.random.default_rng(7), chunk=2)["sampled_tc"]
    assert got == pytest.approx(expected, rel=1e-9)


def test_reconstruction_error_closed_form():
    x = np.array([[[[1.0, 0.0]]]])
    result = reconstruction_error(x, lambda batch: np.zeros_like(batch))       # logits 0: p = 1/2 everywhere
    assert result["reconstruction_nll"] == pytest.approx(2 * math.log(2))
    assert result["reconstruction_mse"] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        reconstruction_error(x, lambda batch: np.zeros((1, 2)))


def test_factor_capture_matches_closed_forms_on_known_codes():
    """Uniform factors, codes that are exact functions of them: I(code; factor) / H(factor) = log(levels kept) / log(n)."""
    from submission.metrics import factor_capture
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, n, 20000) for n in (3, 6, 40)], axis=1)
    names = ["camera", "colour", "arm"]
    identity = factor_capture(factors.astype(float), factors, names)
    assert identity["captured"] == names and identity["best_latent"] == {"camera": 0, "colour": 1, "arm": 2}
    assert identity["capture_nmi"]["camera"] == pytest.approx(1.0, abs=1e-6)
    assert identity["capture_nmi"]["arm"] == pytest.approx(math.log(20) / math.log(40), abs=0.01)  # 20 bins of 40
    coarse = factor_capture(np.stack([factors[:, 2] // 20, factors[:, 2] // 10], axis=1), factors, names)
    assert coarse["best_latent"]["arm"] == 1 and coarse["captured"] == ["arm"]
    assert coarse["capture_nmi"]["arm"] == pytest.approx(math.log(4) / math.log(40), abs=0.01)
    halves = factor_capture((factors[:, 2:] // 20).astype(float), factors, names)     # log 2 / log 40 = 0.19 < 0.2
    assert halves["capture_nmi"]["arm"] == pytest.approx(math.log(2) / math.log(40), abs=0.01)
    assert halves["captured"] == []
    noise = factor_capture(rng.normal(size=(20000, 5)), factors, names)
    assert noise["captured_factors"] == 0 and all(v < 0.05 for v in noise["capture_nmi"].values())


def test_factor_readout_tells_a_dropped_factor_from_an_entangled_one():
    """The forest read-out over all codes: a factor mixed into two codes is read out although no single code captures
    it; a code of a // 2 gives log 3 / log 6 (a read-out can only name the pair); codes of noise give about 0 (up to the plug-in bias), and noise
    codes beside a good one cost little."""
    from submission.metrics import factor_capture, factor_readout
    rng = np.random.default_rng(1)
    n = 4000
    factors = np.stack([rng.integers(0, 40, n), rng.integers(0, 40, n), rng.integers(0, 6, n)], axis=1)
    names = ["first", "second", "colour"]
    a, b = factors[:, 0].astype(float), factors[:, 1].astype(float)
    mixed = np.stack([a + b, a - b, factors[:, 2] // 2, rng.normal(size=n)], axis=1)
    capture = factor_capture(mixed, factors, names)["capture_nmi"]
    readout = factor_readout(mixed, factors, names, trees=20)["readout_nmi"]
    assert capture["first"] < 0.2 and capture["second"] < 0.2
    assert readout["first"] > 0.5 and readout["second"] > 0.5
    assert readout["colour"] == pytest.approx(math.log(3) / math.log(6), abs=0.02)
    kept = factor_readout(np.concatenate([factors + 0.3 * rng.normal(size=factors.shape), rng.normal(size=(n, 3))], 1),
                          factors, names, trees=20)["readout_nmi"]
    assert kept["first"] > 0.75 and kept["colour"] > 0.75
    noise = factor_readout(rng.normal(size=(n, 4)), factors, names, trees=20)["readout_nmi"]
    assert all(v < 0.15 for v in noise.values())       # the plug-in bias: about .1 for 40 values on 2,000 held out
    single = factors.copy()
    single[:, 2] = 0
    assert factor_readout(mixed, single, names, trees=20)["readout_nmi"]["colour"] == 0.0
    with pytest.raises(ValueError):
        factor_readout(mixed[:10], factors[:10], names)


# --- InfoMEC (Hsu et al. 2023) ---------------------------------------------------------------------------------------
def _factor_grid_sample(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in (6, 4, 3, 10)], axis=1)


def _standard(factors, noise=0.01, seed=1):
    rng = np.random.default_rng(seed)
    z = factors.astype(float) + rng.normal(0, noise, factors.shape)
    return (z - z.mean(0)) / z.std(0)


def test_infomec_of_the_factors_themselves_is_near_one():
    from submission.metrics.infomec import infomec
    factors = _factor_grid_sample()
    scores = infomec(_standard(factors), factors)
    assert scores["infom"] > 0.95 and scores["infoc"] > 0.85 and scores["infoe"] > 0.8, scores
    assert scores["infomec_active_codes"] == 4


def test_a_rotation_keeps_explicitness_but_costs_modularity_and_compactness():
    from submission.metrics.infomec import infomec
    factors = _factor_grid_sample()
    z = _standard(factors)
    rotation = np.linalg.qr(np.random.default_rng(2).normal(size=(4, 4)))[0]
    aligned, rotated = infomec(z, factors), infomec(z @ rotation, factors)
    assert rotated["infoe"] >= aligned["infoe"] - 0.05                 # the same information, linearly
    assert rotated["infom"] < aligned["infom"] - 0.3 and rotated["infoc"] < aligned["infoc"] - 0.3, rotated


def test_pure_noise_explains_nothing():
    from submission.metrics.infomec import infomec, normalised_mutual_information
    factors = _factor_grid_sample()
    noise = np.random.default_rng(3).normal(size=(len(factors), 4))
    assert infomec(noise, factors)["infoe"] < 0.02
    assert normalised_mutual_information(noise, factors).max() < 0.02


def test_a_duplicated_factor_is_noticed_by_compactness_and_modularity():
    """A factor coded twice spreads over two codes; two factors that always agree share one code. Closed forms, with
    shares of 1/2 for the split and 1 elsewhere over 4 factors: InfoC = ((1/2 + 3) / 4 - 1/5) / (1 - 1/5) with 5
    codes, and InfoM = ((1/2 + 3) / 4 - 1/5) / (1 - 1/5) with 5 factors: both 0.84375 (1 before)."""
    from submission.metrics.infomec import infomec
    factors = _factor_grid_sample()
    z = _standard(factors)
    split = ((0.5 + 3) / 4 - 1 / 5) / (1 - 1 / 5)
    twice = infomec(np.concatenate([z, z[:, :1] + np.random.default_rng(4).normal(0, 0.01, (len(z), 1))], 1), factors)
    assert twice["infoc"] == pytest.approx(split, abs=0.02) and twice["infom"] > 0.95, twice
    agreeing = infomec(z, np.concatenate([factors, factors[:, :1]], 1))
    assert agreeing["infom"] == pytest.approx(split, abs=0.02) and agreeing["infoc"] > 0.95, agreeing


# --- DCI-ES (Eastwood et al. 2023): explicitness and size ----------------------------------------------------------------
def test_dci_es_explicitness_closed_form():
    """A code that is a 4-valued factor itself, balanced in both halves: a depth-1 tree leaves the within-pair variance,
    0.25 of the factor's 1.25 (0.2 standardised), depth 2 leaves nothing. Curve 0.2, 0, ..., 0 over depths 1-10:
    AULCC = (0.2 + 0) / 2 = 0.1, Z = 9, E = 1 - 0.1 / 9."""
    from submission.metrics.dci_es import dci_es, explicitness_of_curve, loss_capacity_curve
    factor = np.arange(4000) % 4
    curve = loss_capacity_curve(factor[:, None].astype(float), factor)
    assert curve[0] == pytest.approx(0.2, abs=1e-12) and np.all(np.abs(curve[1:]) < 1e-12)
    assert explicitness_of_curve(curve) == pytest.approx(1 - 0.1 / 9, abs=1e-12)
    assert explicitness_of_curve(np.ones(10)) == 0.0 and explicitness_of_curve(np.zeros(10)) == 1.0
    scores = dci_es(factor[:, None].astype(float), factor[:, None])
    assert scores["dci_e"] == pytest.approx(1 - 0.1 / 9, abs=1e-12) and scores["dci_s"] == 1.0


def test_dci_es_on_known_representations():
    """The factors themselves are near 1; a rotation of them needs deeper trees (lower E); pure noise explains nothing;
    a duplicated code keeps E and halves nothing but the size: S = K / L."""
    from submission.metrics.dci_es import dci_es
    factors = _factor_grid_sample()
    z = _standard(factors)
    rotation = np.linalg.qr(np.random.default_rng(2).normal(size=(4, 4)))[0]
    aligned, rotated = dci_es(z, factors), dci_es(z @ rotation, factors)
    noise = dci_es(np.random.default_rng(3).normal(size=(len(factors), 4)), factors)
    assert aligned["dci_e"] > 0.9 and aligned["dci_s"] == 1.0, aligned
    assert rotated["dci_e"] < aligned["dci_e"] - 0.05, (rotated, aligned)
    assert noise["dci_e"] < 0.05, noise
    twice = dci_es(np.concatenate([z, z[:, :1]], 1), factors)
    assert twice["dci_s"] == pytest.approx(4 / 5) and twice["dci_e"] == pytest.approx(aligned["dci_e"], abs=0.02)
