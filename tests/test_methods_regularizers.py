"""Each new method's regularizer against a closed form or a brute-force computation on small inputs."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import submission.objectives.zoo  # noqa: F401
from submission.models.conditional import expected_normalised_attributes, one_hot_attributes
from submission.models.factorvae_discriminator import permute_dims
from submission.models.sparse_coding import spike_slab_sample
from submission.objectives.composite import Composite, Regularizer, check_compatible
from submission.objectives.cvae import attribute_cross_entropy, kl_to_uniform_per_factor
from submission.objectives.decomposition import (aggregate_kl_estimate, dimensionwise_mmd, make_prior,
                                                 posterior_kl)
from submission.objectives.dipvae import DIPRegularizer, dip_covariance
from submission.objectives.factorvae import discriminator_loss, discriminator_tc
from submission.objectives.grouped_vae import group_bounds, prefix_latents
from submission.objectives.infovae import gaussian_kernel, imq_kernel, mmd_unbiased
from submission.objectives.pjvae import categorical_kl_to_uniform
from submission.objectives.vsc import spike_slab_kl

torch.manual_seed(0)


# ---------------------------------------------------------------- DIP-VAE
def test_dip_i_penalty_matches_loops():
    mu, logvar = torch.randn(7, 3), torch.randn(7, 3)
    reg = DIPRegularizer("i", lambda_od=2.0)
    got = reg({"mu": mu, "logvar": logvar}, None, None, None, 0)["dip"]
    m = mu.double().numpy()
    cov = [[np.mean((m[:, i] - m[:, i].mean()) * (m[:, j] - m[:, j].mean())) for j in range(3)] for i in range(3)]
    expected = sum(2.0 * cov[i][j] ** 2 for i in range(3) for j in range(3) if i != j)
    expected += sum(20.0 * (cov[i][i] - 1) ** 2 for i in range(3))      # lambda_d = 10 lambda_od for DIP-I
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_dip_ii_covariance_is_the_covariance_of_sampled_z():
    """Law of total covariance: Cov[z] = E[diag sigma^2] + Cov[mu] for z ~ q(z|x), x uniform over the batch."""
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    samples = 40000
    idx = torch.randint(0, 5, (samples,), generator=g)
    z = mu[idx] + torch.exp(0.5 * logvar[idx]) * torch.randn(samples, 2, generator=g, dtype=torch.float64)
    empirical = torch.cov(z.T, correction=0)
    assert torch.allclose(dip_covariance(mu, logvar, "ii").double(), empirical, atol=0.05)


# ---------------------------------------------------------------- FactorVAE
def test_permute_dims_keeps_marginals_and_breaks_rows():
    z = torch.arange(40.0).reshape(10, 4) + 100 * torch.arange(4.0)
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(4):
        assert torch.equal(p[:, j].sort().values, z[:, j].sort().values)
    assert not torch.equal(p, z)


def test_discriminator_tc_is_the_log_density_ratio():
    logits = torch.randn(6, 2)
    d = F.softmax(logits, 1)[:, 0]
    assert float(discriminator_tc(logits)) == pytest.approx(float(torch.log(d / (1 - d)).mean()), rel=1e-5)


def test_discriminator_loss_is_binary_cross_entropy():
    net = torch.nn.Linear(3, 2)
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    pr, pf = F.softmax(net(real), 1)[:, 0], F.softmax(net(fake), 1)[:, 1]
    expected = -0.5 * (torch.log(pr).mean() + torch.log(pf).mean())
    assert float(discriminator_loss(net, real, fake).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


# ---------------------------------------------------------------- MMD (InfoVAE, Decomposition)
def test_mmd_unbiased_matches_double_loop():
    a, b = torch.randn(5, 2), torch.randn(4, 2) + 1.0
    k = lambda x, y: float(torch.exp(-((x - y) ** 2).sum() / 2.0))
    aa = sum(k(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
    bb = sum(k(b[i], b[j]) for i in range(4) for j in range(4) if i != j) / 12
    ab = sum(k(a[i], b[j]) for i in range(5) for j in range(4)) / 20
    got = mmd_unbiased(a, b, lambda x, y: gaussian_kernel(x, y, 1.0))
    assert float(got) == pytest.approx(aa + bb - 2 * ab, rel=1e-5)


def test_mmd_matches_population_closed_form():
    """1-D Gaussians and an RBF kernel of bandwidth h: E k(x, y) = h / sqrt(h^2 + s^2) exp(-d^2 / (2 (h^2 + s^2)))
    with s^2 the sum of the variances and d the mean difference."""
    g = torch.Generator().manual_seed(0)
    h, m1, s1, m2, s2 = 1.0, 0.0, 1.0, 1.0, 0.5

    def expect(d, var):
        return h / math.sqrt(h * h + var) * math.exp(-d * d / (2 * (h * h + var)))
    population = expect(0, 2 * s1 ** 2) + expect(0, 2 * s2 ** 2) - 2 * expect(m1 - m2, s1 ** 2 + s2 ** 2)
    a = m1 + s1 * torch.randn(3000, 1, generator=g, dtype=torch.float64)
    b = m2 + s2 * torch.randn(3000, 1, generator=g, dtype=torch.float64)
    assert float(mmd_unbiased(a, b, lambda x, y: gaussian_kernel(x, y, h))) == pytest.approx(population, abs=0.01)


def test_imq_kernel_closed_form():
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    expected = sum(4 * s / (4 * s + 2.0) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0))     # C = 2 d s, d = 2
    assert float(imq_kernel(a, b)) == pytest.approx(expected, rel=1e-6)


def test_dimensionwise_mmd_is_sum_of_one_dimensional_mmds():
    z, p = torch.randn(6, 3), torch.randn(6, 3)
    kernel = lambda x, y: sum(2 * s / (2 * s + (x - y.T) ** 2) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
    expected = sum(float(mmd_unbiased(z[:, [d]], p[:, [d]], kernel)) for d in range(3))
    assert float(dimensionwise_mmd(z, p)) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- Decomposition priors and divergences
@pytest.mark.parametrize("name", ["gaussian", "sparse", "clustered", "student_t"])
def test_prior_density_integrates_to_one_and_matches_its_samples(name):
    prior = make_prior(name)
    grid = torch.linspace(-40, 40, 400001, dtype=torch.float64)
    density = prior.log_prob(grid).double().exp()
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=2e-3)
    torch.manual_seed(0)
    samples = prior.sample((200000, 1)).double().flatten()
    second_moment = float(torch.trapezoid(density * grid ** 2, grid))
    assert float(samples.pow(2).mean()) == pytest.approx(second_moment, rel=0.05)


def test_sparse_prior_is_the_notes_mixture():
    z = torch.tensor([0.0, 0.3, -2.0])
    normal = lambda x, s: torch.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2 * math.pi))
    expected = torch.log(0.8 * normal(z, 0.05) + 0.2 * normal(z, 1.0))
    assert torch.allclose(make_prior("sparse").log_prob(z), expected, atol=1e-5)


def test_monte_carlo_posterior_kl_matches_closed_form_for_gaussian_prior():
    mu, logvar = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64) * 0.3
    gaussian = make_prior("gaussian")
    closed = float(posterior_kl(None, mu, logvar, gaussian, "gaussian"))
    g = torch.Generator().manual_seed(0)
    estimates = [float(posterior_kl(mu + torch.exp(0.5 * logvar) * torch.randn(4, 3, generator=g, dtype=torch.float64),
                                    mu, logvar, gaussian, "student_t")) for _ in range(4000)]
    assert np.mean(estimates) == pytest.approx(closed, abs=0.05)


def test_aggregate_kl_estimate_matches_brute_force():
    z, mu, logvar = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4, 2) * 0.2
    prior = make_prior("student_t")
    t = torch.distributions.StudentT(9.0)
    expected = 0.0
    for i in range(4):
        q = [torch.distributions.Normal(mu[j], torch.exp(0.5 * logvar[j])).log_prob(z[i]).sum().exp() for j in range(4)]
        expected += math.log(sum(float(v) for v in q) / 4) - float(t.log_prob(z[i]).sum())
    assert float(aggregate_kl_estimate(z, mu, logvar, prior)) == pytest.approx(expected / 4, rel=1e-4)


# ---------------------------------------------------------------- VSC
def test_spike_slab_kl_is_slab_kl_plus_bernoulli_kl():
    mu, logvar = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    gamma = torch.rand(3, 4, dtype=torch.float64) * 0.98 + 0.01
    alpha = 0.2
    slab = torch.distributions.kl_divergence(torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
                                             torch.distributions.Normal(0.0, 1.0))
    bern = torch.distributions.kl_divergence(torch.distributions.Bernoulli(gamma),
                                             torch.distributions.Bernoulli(torch.full_like(gamma, alpha)))
    expected = (gamma * slab + bern).sum(1).mean()
    assert float(spike_slab_kl(mu, logvar, torch.log(gamma), alpha)) == pytest.approx(float(expected), rel=1e-5)


def test_spike_slab_sample_selects_by_spike_at_high_sharpness():
    mu, logvar = torch.ones(1, 2), torch.full((1, 2), -30.0)
    log_spike = torch.log(torch.tensor([[0.9, 0.1]]))
    z = spike_slab_sample(mu, logvar, log_spike, 1e4, torch.tensor([[0.5, 0.5]]), torch.zeros(1, 2))
    assert torch.allclose(z, torch.tensor([[1.0, 0.0]]), atol=1e-4)    # eta + gamma - 1 = 0.4 > 0 and -0.4 < 0


# ---------------------------------------------------------------- Grouped-VAE
def test_group_bounds_cover_the_latent():
    assert group_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError):
        group_bounds(3, 4)


def test_prefix_latents_zero_pad_and_stop_gradient_earlier_groups():
    z = torch.randn(2, 5, requires_grad=True)
    bounds = group_bounds(5, 3)                                          # (0,2) (2,4) (4,5)
    prefixes = prefix_latents(z, bounds)
    assert torch.equal(prefixes[0][:, 2:], torch.zeros(2, 3)) and torch.equal(prefixes[1][:, :4], z[:, :4].detach())
    # Brute force: the gradient of prefix i's loss reaches only group i's coordinates of z.
    for i, (start, end) in enumerate(bounds):
        (grad,) = torch.autograd.grad(prefixes[i].pow(2).sum(), z)
        mask = torch.zeros(5)
        mask[start:end] = 1
        assert torch.equal(grad, 2 * z.detach() * mask)


# ---------------------------------------------------------------- PJVAE
def test_categorical_kl_to_uniform_matches_torch():
    alpha = F.softmax(torch.randn(5, 10), 1)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=alpha),
                                                 torch.distributions.Categorical(probs=torch.full((5, 10), 0.1)))
    assert float(categorical_kl_to_uniform(alpha)) == pytest.approx(float(expected.mean()), rel=1e-5)


# ---------------------------------------------------------------- CVAE / IFCVAE
def test_one_hot_attributes_and_expected_values():
    factors = torch.tensor([[0, 2], [1, 0]])
    assert one_hot_attributes(factors, [2, 3]).tolist() == [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0]]
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 50.0]])
    assert torch.allclose(expected_normalised_attributes(logits, [2, 3]), torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError):
        one_hot_attributes(factors, [2, 3, 4])


def test_attribute_losses_match_brute_force():
    logits, factors, sizes = torch.randn(4, 5), torch.tensor([[0, 1], [1, 2], [0, 0], [1, 1]]), [2, 3]
    ce, kl = 0.0, 0.0
    for n in range(4):
        for f, (lo, hi) in enumerate([(0, 2), (2, 5)]):
            p = F.softmax(logits[n, lo:hi], 0)
            ce += -math.log(float(p[factors[n, f]])) / 4
            kl += float((p * torch.log(p * (hi - lo))).sum()) / 4
    assert float(attribute_cross_entropy(logits, factors, sizes)) == pytest.approx(ce, rel=1e-5)
    assert float(kl_to_uniform_per_factor(logits, sizes)) == pytest.approx(kl, rel=1e-5)


# ---------------------------------------------------------------- Composite
class _Named(Regularizer):
    requires = ("z",)

    def __init__(self, name, value):
        super().__init__()
        self.name, self.value = name, value

    def forward(self, out, model, x, factors, step):
        return {self.name: out["z"].sum() * 0 + self.value}


def test_composite_sums_the_elbo_and_every_regularizer():
    from submission.models import build_model
    model = build_model(dict(kind="vae", architecture="mlp", latent_dim=3, channels=1))
    x = torch.rand(4, 1, 64, 64)
    torch.manual_seed(3)
    plain = Composite(regularizers=[])(model, x, None, 0)
    torch.manual_seed(3)
    both = Composite(regularizers=[_Named("a", 1.5), _Named("b", 2.0)])(model, x, None, 0)
    assert set(both) == {"reconstruction", "kl", "a", "b"}
    total = lambda terms: float(sum(terms.values()).detach())
    assert total(both) == pytest.approx(total(plain) + 3.5, rel=1e-6)


def test_composite_refuses_terms_that_do_not_fit():
    with pytest.raises(ValueError, match="both write"):
        check_compatible([_Named("a", 1), _Named("a", 2)], {"z"}, ["reconstruction", "kl"])
    with pytest.raises(ValueError, match="reads"):
        check_compatible([DIPRegularizer()], {"z"}, ["reconstruction", "kl"])
