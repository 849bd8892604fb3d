"""Objectives against brute force on tiny inputs: reconstruction, KL, both TC estimators, DIP, L0, capacity."""
import math

import pytest
import torch

from submission.schedules import Clock, Linear

from submission.models import make_model
from submission.objectives import (bernoulli_reconstruction, build_objective, gaussian_kl_per_dim,
                                   gaussian_reconstruction)
from submission.objectives.total_correlation import stratified_log_weights, total_correlation
from submission.objectives.dip import batch_covariance, dip_penalty


def test_bernoulli_reconstruction_brute_force():
    torch.manual_seed(0)
    logits, x = torch.randn(3, 2, 2, 2), torch.rand(3, 2, 2, 2)
    total = 0.0
    for n in range(3):
        for v_logit, v_x in zip(logits[n].flatten().tolist(), x[n].flatten().tolist()):
            p = 1 / (1 + math.exp(-v_logit))
            total += -(v_x * math.log(p) + (1 - v_x) * math.log(1 - p))
    assert bernoulli_reconstruction(logits, x).item() == pytest.approx(total / 3, rel=1e-5)


def test_calibrated_gaussian_brute_force():
    """sigma is the batch's RMSE; -log N(x; sigmoid(logit), sigma) summed over pixels, averaged over images."""
    torch.manual_seed(1)
    logits, x = torch.randn(3, 2, 2, 2), torch.rand(3, 2, 2, 2)
    means = [1 / (1 + math.exp(-v)) for v in logits.flatten().tolist()]
    errors = [(v - m) ** 2 for v, m in zip(x.flatten().tolist(), means)]
    variance = sum(errors) / len(errors)
    total = sum(0.5 * math.log(2 * math.pi * variance) + e / (2 * variance) for e in errors)
    assert gaussian_reconstruction(logits, x).item() == pytest.approx(total / 3, rel=1e-5)
    # A perfect reconstruction is bounded by the scale's floor, not minus infinity.
    exact = gaussian_reconstruction(torch.logit(x), x).item()
    assert math.isfinite(exact) and exact == pytest.approx(8 * 0.5 * math.log(2 * math.pi * 1e-6), rel=1e-3)


def test_likelihood_is_the_recipes_choice():
    torch.manual_seed(2)
    model = make_model(kind="vae", architecture="mlp", latent_dim=3).eval()
    x = torch.rand(4, 3, 64, 64)
    objective = build_objective("beta_vae", likelihood="gaussian")
    torch.manual_seed(3)
    terms = objective(model, x, None, 0)
    torch.manual_seed(3)
    out = model(x)
    assert terms["reconstruction"].item() == pytest.approx(gaussian_reconstruction(out["logits"], x).item(), rel=1e-6)
    with pytest.raises(ValueError, match="likelihood 'poisson' is unknown"):
        build_objective("beta_vae", likelihood="poisson")


def test_gaussian_kl_against_numerical_integration():
    mu, logvar = torch.tensor([[0.7, -1.2]]), torch.tensor([[-0.5, 0.8]])
    got = gaussian_kl_per_dim(mu, logvar)
    z = torch.linspace(-15, 15, 200_001, dtype=torch.float64)
    for d in range(2):
        m, s2 = float(mu[0, d]), math.exp(float(logvar[0, d]))
        log_q = -0.5 * (math.log(2 * math.pi * s2) + (z - m) ** 2 / s2)
        log_p = -0.5 * (math.log(2 * math.pi) + z ** 2)
        integral = torch.trapezoid(log_q.exp() * (log_q - log_p), z).item()
        assert got[d].item() == pytest.approx(integral, rel=1e-4)


def _log_normal(z, m, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - m) ** 2 / math.exp(logvar))


def _tc_brute_force(z, mu, logvar, n_data, estimator):
    """Chen et al.'s estimators written with explicit loops and plain floats."""
    b, d = len(z), len(z[0])
    weights = [[1.0 / (b * n_data)] * b for _ in range(b)]           # MWS: 1/(N B) for every j
    if estimator == "mss":
        m = b - 1
        weights = [[1.0 / m] * b for _ in range(b)]
        for i in range(b):
            weights[i][i] = 1.0 / n_data
        for i in range(b - 1):
            weights[i][i + 1] = (n_data - m) / (n_data * m)
        weights[b - 2][0] = (n_data - m) / (n_data * m)
    tc = 0.0
    for i in range(b):
        joint = sum(weights[i][j] * math.exp(sum(_log_normal(z[i][k], mu[j][k], logvar[j][k]) for k in range(d)))
                    for j in range(b))
        marginals = sum(math.log(sum(weights[i][j] * math.exp(_log_normal(z[i][k], mu[j][k], logvar[j][k]))
                                     for j in range(b))) for k in range(d))
        tc += math.log(joint) - marginals
    return tc / b


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_total_correlation_brute_force(estimator):
    torch.manual_seed(1)
    b, d, n_data = 5, 3, 37
    mu, logvar = torch.randn(b, d), 0.3 * torch.randn(b, d)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(b, d)
    got = total_correlation(z, mu, logvar, n_data, estimator).item()
    expected = _tc_brute_force(z.tolist(), mu.tolist(), logvar.tolist(), n_data, estimator)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_total_correlation_is_finite_where_exp_underflows():
    """Far-apart posteriors: exp(log q) underflows to 0, logsumexp must not."""
    mu = torch.tensor([[0.0, 0.0], [400.0, -400.0], [-400.0, 400.0], [800.0, 800.0]])
    logvar = torch.full((4, 2), -8.0)
    assert torch.isfinite(total_correlation(mu, mu, logvar, 1000, "mss"))
    assert torch.isfinite(total_correlation(mu, mu, logvar, 1000, "mws"))


def test_stratified_weights_layout():
    w = stratified_log_weights(4, 10).exp()
    strat = (10 - 3) / (10 * 3)
    expected = torch.tensor([[1 / 10, strat, 1 / 3, 1 / 3], [1 / 3, 1 / 10, strat, 1 / 3],
                             [strat, 1 / 3, 1 / 10, strat], [1 / 3, 1 / 3, 1 / 3, 1 / 10]])
    assert torch.allclose(w, expected)


def test_dip_penalty_brute_force():
    torch.manual_seed(2)
    v = torch.randn(6, 3)
    cov = batch_covariance(v)
    mean = [sum(v[n, i].item() for n in range(6)) / 6 for i in range(3)]
    c = [[sum((v[n, i].item() - mean[i]) * (v[n, j].item() - mean[j]) for n in range(6)) / 6 for j in range(3)]
         for i in range(3)]
    expected = 20 * sum(c[i][j] ** 2 for i in range(3) for j in range(3) if i != j) + \
        2 * sum((c[i][i] - 1) ** 2 for i in range(3))
    assert dip_penalty(cov, 20.0, 2.0).item() == pytest.approx(expected, rel=1e-5)


def test_pvae_terms_match_their_formulas():
    torch.manual_seed(3)
    model = make_model(kind="pvae", architecture="mlp", latent_dim=4)
    objective = build_objective("pvae")
    x = torch.rand(8, 3, 64, 64)
    torch.manual_seed(4)
    terms = objective(model, x, None, 0)
    torch.manual_seed(4)
    out = model(x)
    m, mu, logvar = out["mask"], out["mu"], out["logvar"]
    kl = (m * 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean()
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    a = model.gate.log_alpha.detach()
    l0 = 0.1 * sum(1 / (1 + math.exp(-(v - 0.05 * math.log(0.1 / 1.1)))) for v in a.tolist())
    assert terms["l0"].item() == pytest.approx(l0, rel=1e-6)
    assert terms["reconstruction"].item() == pytest.approx(bernoulli_reconstruction(out["logits"], x).item(), rel=1e-6)
    assert objective.diagnostics()["active_dims"] == 4


def test_capacity_term_is_weighted_distance_to_the_ramp():
    torch.manual_seed(5)
    model = make_model(kind="vae", architecture="mlp", latent_dim=3).eval()   # eval: z = mu, no sampling
    objective = build_objective("beta_vae")
    objective.capacity, objective.capacity_weight = Linear(0.0, 25.0, 100), 3.0
    x = torch.rand(4, 3, 64, 64)
    terms = objective(model, x, None, 40)
    post = model.encode(x)
    kl = gaussian_kl_per_dim(post["mu"], post["logvar"]).sum().item()
    assert terms["kl"].item() == pytest.approx(3.0 * abs(kl - 10.0), rel=1e-5)


def test_kl_floor_charges_each_dimension_at_least_the_floor_and_frees_those_below_it():
    class Posterior(torch.nn.Module):
        """A 'model' whose posterior is three leaf tensors: the objective's gradients land on them directly."""

        def __init__(self):
            super().__init__()
            self.mu = torch.nn.Parameter(torch.tensor([[0.1, 1.0, 2.0], [0.2, -1.0, 1.5]]))
            self.logvar = torch.nn.Parameter(torch.zeros(2, 3))

        def forward(self, x):
            return {"mu": self.mu, "logvar": self.logvar, "z": self.mu, "logits": torch.zeros_like(x)}

    model, x = Posterior(), torch.rand(2, 3, 64, 64)
    kl = 0.5 * (model.mu.detach() ** 2).mean(0)           # logvar 0: KL_j = mean of mu^2 / 2 -> .0125, .5, 1.5625
    objective = build_objective("beta_vae")
    objective.beta, objective.kl_floor = 4.0, 0.5
    terms = objective(model, x, None, 0)
    assert terms["kl"].item() == pytest.approx(4.0 * (0.5 + 0.5 + float(kl[2])), rel=1e-6)
    assert objective.diagnostics()["kl"] == pytest.approx(float(kl.sum()), rel=1e-6)   # the log keeps the true KL
    terms["kl"].backward()
    assert float(model.mu.grad[:, 0].abs().max()) == 0.0      # below the floor: free
    assert model.mu.grad[:, 2].tolist() == pytest.approx((4.0 * model.mu.detach()[:, 2] / 2).tolist())  # above: beta
    objective.kl_floor = 0.0
    assert objective(model, x, None, 0)["kl"].item() == pytest.approx(4.0 * float(kl.sum()), rel=1e-6)
    with pytest.raises(ValueError, match="kl_floor"):
        type(objective)(kl_floor=-1.0)


def test_betatcvae_adds_beta_minus_one_tc():
    class Data:
        factors_num_values = [4, 5]
    torch.manual_seed(6)
    model = make_model(kind="vae", architecture="mlp", latent_dim=3)
    objective = build_objective("betatcvae")
    objective.setup(Data())
    assert objective.dataset_size == 20
    x = torch.rand(6, 3, 64, 64)
    torch.manual_seed(7)
    terms = objective(model, x, None, 0)
    torch.manual_seed(7)
    out = model(x)
    tc = total_correlation(out["z"], out["mu"], out["logvar"], 20, "mss")
    assert terms["tc"].item() == pytest.approx((objective.beta_tc - 1) * tc.item(), rel=1e-5, abs=1e-6)


def test_stratified_estimator_refuses_a_dataset_smaller_than_the_batch():
    with pytest.raises(ValueError, match="N >= batch size - 1"):
        stratified_log_weights(64, 10)
    assert torch.isfinite(stratified_log_weights(8, 7)).sum() == 8 * 8 - 8  # N = B-1: the 8 stratified weights are 0


def test_capacity_by_progress_follows_the_run_not_the_step():
    torch.manual_seed(5)
    model = make_model(kind="vae", architecture="mlp", latent_dim=3).eval()
    objective = build_objective("betatcvae")
    objective.setup(type("Data", (), {"factors_num_values": [4, 5]})())
    objective.capacity = Linear(0.0, 25.0, 1.0, unit="progress")
    x = torch.rand(4, 3, 64, 64)
    objective(model, x, None, Clock(step=10, progress=0.4))
    assert objective.diagnostics()["capacity"] == pytest.approx(10.0)
    objective(model, x, None, Clock(step=10 ** 6, progress=0.4))     # same progress, any step: same capacity
    assert objective.diagnostics()["capacity"] == pytest.approx(10.0)


def test_pvae_l0_weight_takes_a_schedule():
    torch.manual_seed(3)
    model = make_model(kind="pvae", architecture="mlp", latent_dim=4)
    objective = build_objective("pvae")
    objective.tau = Linear(0.0, 0.1, 0.2, delay=0.3, unit="progress")
    x = torch.rand(8, 3, 64, 64)
    assert objective(model, x, None, Clock(0, 0.25))["l0"].item() == 0.0
    open_sum = model.gate.open_probability().sum().item()
    assert objective(model, x, None, Clock(0, 0.4))["l0"].item() == pytest.approx(0.05 * open_sum, rel=1e-5)


class _FixedGates(torch.nn.Module):
    """Stands in for a PVAE in the objective: every sample's mask is the parameter p (one value per code), the means
    are given, so the DIP term's pull on a gate has a closed form."""

    def __init__(self, mu, p):
        super().__init__()
        self.mu, self.p = mu, torch.nn.Parameter(torch.tensor(p))
        self.gate = type("Gate", (), {"open_probability": lambda _: self.p})()

    def open_gates(self):
        return int((self.p > 0).sum())

    def forward(self, x):
        n = self.mu.shape[0]
        return {"mask": self.p.expand(n, -1), "mu": self.mu, "logvar": torch.zeros_like(self.mu),
                "logits": torch.zeros_like(x)}


@pytest.mark.parametrize("target", ["mask", "mask_detached"])
def test_pvae_diagonal_target_pull_on_a_gate(target):
    """With every mask at p and a code of variance v, C_ii = p^2 v and t_i = p, so d/dp of lambda_d (C_ii - t_i)^2 is
    2 lambda_d (p^2 v - p) (2 p v - 1) when the target's gradient flows ("mask": it shuts a code of variance below
    1/2, a dead one included) and 2 lambda_d (p^2 v - p) 2 p v when it is held ("mask_detached": it opens a code that
    varies and leaves a dead one to the L0 term)."""
    torch.manual_seed(6)
    signs = torch.tensor([1.0, -1.0]).repeat(4)
    variances = [0.0, 0.3]                          # a dead code and a code that carries something
    mu = torch.stack([signs * math.sqrt(v) for v in variances], dim=1)      # (8, 2), batch variance exactly v
    model = _FixedGates(mu, [1.0, 1.0])
    objective = build_objective("pvae")
    objective.diagonal_target, objective.lambda_od = target, 0.0
    objective(model, torch.rand(8, 3, 4, 4), None, 0)["dip"].backward()
    p = 1.0
    expected = [2 * 2.0 * (p * p * v - p) * ((2 * p * v - 1) if target == "mask" else 2 * p * v) for v in variances]
    assert model.p.grad.tolist() == pytest.approx(expected, abs=1e-5)
    if target == "mask":
        assert model.p.grad[0] > 0 and model.p.grad[1] > 0          # gradient descent shuts both gates
    else:
        assert model.p.grad[0] == 0 and model.p.grad[1] < 0         # the dead code's gate left alone, the other opens


def test_pvae_kl_weight_scales_the_gated_kl():
    """With masks p and log-variances 0 each sample's KL in code i is mu^2 / 2, so the KL term is
    beta * sum_i p_i mean_n(mu_ni^2) / 2, and its value follows a schedule by progress."""
    mu = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.0, 1.5], [3.0, -2.0, 0.5], [0.0, 1.0, -0.5]])
    p = [1.0, 0.5, 0.0]
    expected = sum(p_i * (mu[:, i].pow(2).mean().item() / 2) for i, p_i in enumerate(p))
    model = _FixedGates(mu, p)
    objective = build_objective("pvae")
    x = torch.rand(4, 3, 4, 4)
    assert objective(model, x, None, 0)["kl"].item() == pytest.approx(expected, rel=1e-6)     # the paper's beta 1
    objective.beta = 2.5
    assert objective(model, x, None, 0)["kl"].item() == pytest.approx(2.5 * expected, rel=1e-6)
    assert objective.diagnostics()["kl"] == pytest.approx(expected, rel=1e-6)                 # logged unweighted
    objective.beta = Linear(1.0, 3.0, 0.5, unit="progress")
    assert objective(model, x, None, Clock(0, 0.25))["kl"].item() == pytest.approx(2.0 * expected, rel=1e-6)


def test_pvae_diagonal_target_rejects_unknown_names():
    from submission.objectives.pvae import PVAEObjective
    with pytest.raises(ValueError, match="mask_detached"):
        PVAEObjective(diagonal_target="detached")
    with pytest.raises(ValueError, match="KL weight >= 0"):
        PVAEObjective(beta=-1.0)
