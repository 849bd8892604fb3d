"""DCI-ES's explicitness (E) and size (S) (Eastwood, Nicolicioiu, von Kügelgen, Kekić, Träuble, Dittadi and Schölkopf,
ICLR 2023, "DCI-ES: An extended disentanglement framework with connections to identifiability", Sec. 4).

Explicitness asks how much capacity a probe needs to read each factor from the code: a factor that a small probe
predicts is explicit, one that only a large probe predicts is not. For each factor j:

    probes of increasing capacity c_1 < ... < c_m (here regression trees of depth 1 to 10 on the codes), each trained on
        half of the sample and scored on the other half by its mean squared error on the standardised factor
    loss-capacity curve: l_j(c_i) = min(lowest test loss of the probes up to c_i, the baseline l_b)
        (l_b = 1: the MSE of predicting the training mean of a standardised factor; a larger probe is never worse than
        the best smaller one, as the paper's curve)
    AULCC_j = the area between the curve and the lowest possible loss l* = 0 over [c_1, c_m] (trapezoids)
    E_j = 1 - AULCC_j / Z, Z = (c_m - c_1)(l_b - l*): 1 when the smallest probe already predicts the factor exactly, 0
        when no probe does better than the mean
    E = the mean of E_j over the factors

Size compares the code's dimension with the number of factors: S = K / L for K factors and L code dimensions, capped at 1
(1: one dimension per factor, or fewer; 0.5: twice as many dimensions as factors). The paper favours the smallest code
that keeps D, C, I and E; the kit reports S beside them and never ranks by it.

Trees are sklearn's ``DecisionTreeRegressor`` (deterministic with a fixed ``random_state``): the capacity axis is their
depth, a probe family the paper uses too (its random forests grow with depth).
"""
import numpy as np

from .infomec import standardised

DEPTHS = tuple(range(1, 11))


def loss_capacity_curve(codes, factor, depths=DEPTHS, random_state=0):
    """The non-increasing test-MSE curve of one standardised factor against tree depth (train: the first half)."""
    from sklearn.tree import DecisionTreeRegressor
    y = standardised(np.asarray(factor, np.float64))
    half = len(y) // 2
    losses, best = [], 1.0
    for depth in depths:
        probe = DecisionTreeRegressor(max_depth=depth, random_state=random_state).fit(codes[:half], y[:half])
        best = min(best, float(np.mean((probe.predict(codes[half:]) - y[half:]) ** 2)))
        losses.append(best)
    return np.asarray(losses)


def explicitness_of_curve(losses, capacities=DEPTHS) -> float:
    """E = 1 - AULCC / Z for one curve, l* = 0 and l_b = 1 (standardised factor)."""
    capacities, losses = np.asarray(capacities, np.float64), np.clip(np.asarray(losses, np.float64), 0.0, 1.0)
    area = float(np.sum(0.5 * (losses[1:] + losses[:-1]) * np.diff(capacities)))
    return 1.0 - area / float(capacities[-1] - capacities[0])


def dci_es(codes, factors, depths=DEPTHS) -> dict:
    """{"dci_e": mean explicitness, "dci_e_per_factor": [...], "dci_s": size}: codes (N, L), factors (N, K)."""
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
    per_factor = [explicitness_of_curve(loss_capacity_curve(codes, factors[:, k], depths), depths)
                  for k in range(factors.shape[1])]
    return {"dci_e": float(np.mean(per_factor)), "dci_e_per_factor": [round(e, 6) for e in per_factor],
            "dci_s": float(min(1.0, factors.shape[1] / codes.shape[1]))}
