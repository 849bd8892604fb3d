"""Models: shapes, config round trip, deterministic representation; hard-concrete gates against their closed forms."""
import math

import numpy as np
import pytest
import torch

from submission.models import build_model, make_model
from submission.models.gates import (HardConcreteGate, hard_concrete_deterministic, hard_concrete_open_probability,
                                     hard_concrete_sample)


@pytest.mark.parametrize("architecture", ["higgins", "tcvae_entry"])
@pytest.mark.parametrize("kind", ["vae", "pvae"])
def test_shapes_and_config_round_trip(architecture, kind):
    torch.manual_seed(0)
    model = make_model(kind=kind, architecture=architecture, latent_dim=7)
    x = torch.rand(3, 3, 64, 64)
    out = model(x)
    assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (3, 7)
    assert out["logits"].shape == (3, 3, 64, 64)
    rebuilt = build_model(model.config())
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    assert torch.equal(model.representation(x), rebuilt.representation(x))
    assert model.representation(x).dtype == torch.float32


def test_pvae_representation_is_gated_mean_and_deterministic():
    torch.manual_seed(0)
    model = make_model(kind="pvae", architecture="mlp", latent_dim=4)
    with torch.no_grad():
        model.gate.log_alpha.copy_(torch.tensor([5.0, -5.0, 0.0, 1.0]))
    x = torch.rand(5, 3, 64, 64)
    model.train()                      # the representation ignores the training mode
    rep = model.representation(x)
    gate = torch.clamp(torch.sigmoid(model.gate.log_alpha) * 1.2 - 0.1, 0, 1)
    assert torch.allclose(rep, model.encode(x)["mu"] * gate)
    assert rep[:, 1].abs().max() == 0           # log alpha = -5: the gate is shut
    assert model.active_dimensions() == 3
    assert torch.equal(rep, model.representation(x))


def test_variance_head_outputs_variance_plus_epsilon():
    model = make_model(kind="pvae", architecture="mlp", latent_dim=3)
    post = model.encode(torch.rand(2, 3, 64, 64))
    assert torch.all(post["variance"] >= model.head.epsilon)
    assert torch.allclose(post["logvar"].exp(), post["variance"])


def test_unknown_kind_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown"):
        build_model({"kind": "nope", "architecture": "higgins", "latent_dim": 3})


def test_hard_concrete_sample_matches_formula():
    log_alpha, u = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([0.2, 0.7, 0.01])
    beta, gamma, zeta = 0.05, -0.1, 1.1
    got = hard_concrete_sample(log_alpha, u, beta, gamma, zeta)
    for i in range(3):
        a, v = float(log_alpha[i]), float(u[i])
        s = 1 / (1 + math.exp(-(math.log(v) - math.log(1 - v) + a) / beta))
        assert got[i].item() == pytest.approx(min(max(s * (zeta - gamma) + gamma, 0.0), 1.0), abs=1e-6)


def test_hard_concrete_open_probability_matches_monte_carlo():
    """P(m > 0) from the closed form (Louizos et al. eq. 12) against 400k sampled gates; also the L0 penalty."""
    beta, gamma, zeta = 0.5, -0.1, 1.1          # a soft beta makes the probabilities far from 0 and 1
    log_alpha = torch.tensor([-1.0, 0.0, 0.7])
    u = torch.rand(400_000, 3, generator=torch.Generator().manual_seed(0)).clamp(1e-7, 1 - 1e-7)
    empirical = (hard_concrete_sample(log_alpha, u, beta, gamma, zeta) > 0).double().mean(0)
    closed = hard_concrete_open_probability(log_alpha, beta, gamma, zeta).double()
    assert torch.allclose(empirical, closed, atol=4e-3)
    expected = [1 / (1 + math.exp(-(a - beta * math.log(-gamma / zeta)))) for a in log_alpha.tolist()]
    assert closed.tolist() == pytest.approx(expected, abs=1e-6)


def test_gate_eval_is_deterministic_and_survives_reload():
    gate = HardConcreteGate(4, init_log_alpha=0.0)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([3.0, -3.0, 0.0, 0.5]))
    gate.eval()
    expected = np.clip(1 / (1 + np.exp(-np.array([3.0, -3.0, 0.0, 0.5]))) * 1.2 - 0.1, 0, 1)
    assert np.allclose(gate(2)[0].detach().numpy(), expected, atol=1e-6)
    other = HardConcreteGate(4)
    other.load_state_dict(gate.state_dict())
    other.eval()
    assert torch.equal(other(3), gate(3))
    assert torch.equal(hard_concrete_deterministic(gate.log_alpha, -0.1, 1.1), gate.deterministic())
    gate.train()
    assert not torch.equal(gate(64), gate(64))   # training gates are random
