"""A tiny run of every new method (MLP model, 64x64x1, one fixed batch): the loss is finite and decreases; the hooks
(FactorVAE's discriminator, IFCVAE's adversary) train their own networks and survive a state-dict round trip."""
import gin
import numpy as np
import pytest
import torch

import submission.objectives.zoo  # noqa: F401
from submission.models import build_model
from submission.objectives.composite import Composite, TotalCorrelationRegularizer
from submission.objectives.cvae import CVAE, IFCVAE
from submission.objectives.decomposition import Decomposition
from submission.objectives.dipvae import DIPRegularizer, DIPVAEI, DIPVAEII
from submission.objectives.factorvae import FactorVAE
from submission.objectives.grouped_vae import GroupedVAE
from submission.objectives.infovae import InfoVAE
from submission.objectives.pjvae import PJVAEObjective
from submission.objectives.vsc import VariationalSparseCoding


class TinyData:
    factors_num_values = [2, 3]


def fixed_batch(n=8):
    g = torch.Generator().manual_seed(0)
    factors = torch.stack([torch.randint(0, 2, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)], 1)
    x = torch.zeros(n, 1, 64, 64)
    for i, (a, b) in enumerate(factors.tolist()):
        x[i, 0, 10 + 20 * b:26 + 20 * b, 8 + 30 * a:26 + 30 * a] = 1.0
    return x, factors


def cases():
    mlp = dict(architecture="mlp", channels=1)
    return {
        "dipvae_i": (dict(kind="vae", latent_dim=4, **mlp), lambda: DIPVAEI()),
        "dipvae_ii": (dict(kind="vae", latent_dim=4, **mlp), lambda: DIPVAEII()),
        "factorvae": (dict(kind="vae", latent_dim=4, **mlp), lambda: FactorVAE(latent_dim=4, hidden=16, layers=2)),
        "infovae": (dict(kind="vae", latent_dim=4, **mlp), lambda: InfoVAE()),
        "decomposition_mmd": (dict(kind="vae", latent_dim=4, **mlp), lambda: Decomposition("sparse", "mmd")),
        "decomposition_kl": (dict(kind="vae", latent_dim=4, **mlp), lambda: Decomposition("student_t", "kl")),
        "vsc": (dict(kind="vsc", latent_dim=4, **mlp), lambda: VariationalSparseCoding()),
        "grouped_vae": (dict(kind="vae", latent_dim=4, **mlp), lambda: GroupedVAE(groups=2)),
        "pjvae": (dict(kind="pjvae", latent_dim=6, categories=3, **mlp), lambda: PJVAEObjective()),
        "cvae": (dict(kind="cvae", latent_dim=4, attribute_sizes=[2, 3], **mlp), lambda: CVAE()),
        "ifcvae": (dict(kind="cvae", latent_dim=6, attribute_sizes=[2, 3], predict_attributes=True, **mlp),
                   lambda: IFCVAE(style_dim=4, attribute_sizes=[2, 3], hidden=16, layers=1)),
        "composite": (dict(kind="vae", latent_dim=4, **mlp),
                      lambda: Composite([TotalCorrelationRegularizer(weight=2.0, dataset_size=1000),
                                                 DIPRegularizer()])),
    }


def train(config, make_objective, steps=30):
    torch.manual_seed(0)
    model, objective = build_model(config), make_objective()
    objective.setup(TinyData())
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    x, factors = fixed_batch()
    losses = []
    for step in range(steps):
        terms = objective(model, x, factors, step)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step(step)
        losses.append(float(loss.detach()))
    return model, objective, losses


@pytest.mark.parametrize("name", sorted(cases()))
def test_tiny_run_loss_is_finite_and_decreases(name):
    config, make_objective = cases()[name]
    model, objective, losses = train(config, make_objective)
    assert np.all(np.isfinite(losses)), losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    rep = model.eval().representation(fixed_batch()[0])
    assert rep.shape == (8, model.latent_dim) and torch.isfinite(rep).all()


def test_side_networks_stay_out_of_the_trainer_optimiser_and_learn():
    config, make_objective = cases()["factorvae"]
    model, objective = build_model(config), make_objective()
    assert list(p for p in objective.parameters() if p.requires_grad) == []
    x, factors = fixed_batch()
    losses = []
    for step in range(40):
        objective(model, x, factors, step)
        objective.after_step(step)
        losses.append(objective.diagnostics()["discriminator_loss"])
    assert np.mean(losses[-5:]) < np.mean(losses[:5])              # tells real z from permuted z better


def test_side_network_optimiser_state_round_trips():
    config, make_objective = cases()["ifcvae"]
    _, objective, _ = train(config, make_objective, steps=3)
    state = objective.state_dict()
    fresh = make_objective()
    fresh.load_state_dict(state)
    assert fresh.adversary.optimizer.state_dict()["state"].keys() == objective.adversary.optimizer.state_dict()[
        "state"].keys() != set()


def test_conditional_objective_checks_the_dataset_factor_sizes():
    model = build_model(dict(kind="cvae", architecture="mlp", channels=1, latent_dim=4, attribute_sizes=[2, 4]))
    objective = CVAE()
    objective.setup(TinyData())
    with pytest.raises(ValueError, match="attribute_sizes"):
        objective(model, *fixed_batch(), 0)


def test_every_zoo_recipe_parses_and_builds():
    from submission.models import make_model
    from submission.objectives import make_objective
    from submission import trainer  # noqa: F401  (registers 'training')
    from submission.gin_compat import gin_python311_compat
    import glob
    gin_python311_compat()
    for path in sorted(glob.glob("submission/configs/*.gin")):
        gin.clear_config()
        gin.parse_config_files_and_bindings([path], ["model.architecture = 'mlp'"])
        model, objective = make_model(), make_objective()
        assert hasattr(model, "representation") and callable(objective), path
    gin.clear_config()
