"""PVAE prunes end to end: encoder, decoder and gates all learn together through the real objective and Adam, and the
test-time gates keep only as many latents as the data has factors (tests/test_trainer.py's oracle test trains the gates
alone, with an exact frozen encoder and decoder; this one does not help the gates at all).

Two continuous factors, six latents. With the literal DIP target (C_ii - 1)^2 (``diagonal_target="one"``) all six
gates stay open here; the default ("mask") shuts the four surplus ones. ~2000 Adam steps of a tiny MLP, a few seconds
on one thread.
"""
import numpy as np
import pytest
import torch
from torch import nn

from submission.models import PrunedVAE
from submission.models.heads import VarianceHead
from submission.objectives import build_objective

PIXELS = 3 * 16 * 16
FACTORS, LATENTS = 2, 6


class TinyPVAE(PrunedVAE):
    """PrunedVAE (its gates, forward and representation unchanged) with a small MLP on 768 "pixels"."""

    def __init__(self, hidden: int = 64):
        super().__init__(architecture="mlp", latent_dim=LATENTS)     # default gates: log alpha starts at 3
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU())
        self.head = VarianceHead(hidden, LATENTS)
        self.decoder = nn.Sequential(nn.Linear(LATENTS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, PIXELS))


def _train(seed: int, steps: int = 2000, batch_size: int = 64, learning_rate: float = 1e-2, **objective_settings):
    """Train a TinyPVAE from scratch; returns the model and a held-out batch (factors, images)."""
    torch.manual_seed(seed)
    mixing = torch.randn(FACTORS, PIXELS, generator=torch.Generator().manual_seed(123)) * 3.0

    def sample(n):
        factors = torch.rand(n, FACTORS) * 2 - 1                     # two independent uniform factors
        return factors, torch.sigmoid(factors @ mixing)              # Bernoulli pixel probabilities

    model = TinyPVAE()
    objective = build_objective("pvae")
    for name, value in objective_settings.items():
        setattr(objective, name, value)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    first = last = None
    for step in range(steps):
        _, x = sample(batch_size)
        terms = objective(model, x, None, step)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        reconstruction = float(terms["reconstruction"].detach())
        first = reconstruction if first is None else first
        last = reconstruction
    model.eval()
    return model, sample(2000), (first, last)


def _factor_r2(model, factors, x):
    """R^2 of a linear read-out of each factor from the test-time representation (shut dimensions are exactly 0, so
    only the open ones can contribute): (FACTORS,). DIP does not fix a rotation within the factors' subspace, so the
    check is that the open dimensions jointly carry both factors, not one factor per dimension."""
    with torch.no_grad():
        rep = model.representation(x).double().numpy()
    design = np.c_[rep, np.ones(len(rep))]
    target = factors.double().numpy()
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return 1 - (target - design @ coef).var(0) / target.var(0)


@pytest.mark.parametrize("seed", [0, 1])
def test_pvae_prunes_surplus_latents_end_to_end(seed):
    torch.set_num_threads(1)
    model, (factors, x), (first, last) = _train(seed)
    gate = model.gate.deterministic().detach()
    active = model.active_dimensions()
    assert last < 0.8 * first, (first, last)                        # it learned to reconstruct
    assert active <= FACTORS + 1, (active, gate, model.gate.log_alpha)
    # The informative dimensions stay open: the open ones carry both factors, and each open gate is fully open.
    r2 = _factor_r2(model, factors, x)
    assert np.all(r2 > 0.95), (r2, gate)
    assert torch.all(gate[gate > 0] > 0.99), gate
