"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising", eq. 2 and Algorithm 2): ELBO + gamma * TC, with
TC(z) ~ E_q(z)[log D(z) - log(1 - D(z))] = mean(logit_real - logit_permuted) from a discriminator that tells q(z) from
prod_j q(z_j) (the batch with every dimension permuted). The discriminator trains after each VAE step with its own
Adam (lr 1e-4, betas 0.5 and 0.9) on cross-entropy: class 0 = real z, class 1 = permuted z.
"""
import gin
import torch
import torch.nn.functional as F

from submission.models.factorvae_discriminator import factor_discriminator, permute_dims

from .base import register_objective
from .composite import Composite, Regularizer


def discriminator_tc(logits):
    """Kim & Mnih eq. 3 with a 2-logit discriminator: log D/(1-D) = logit_0 - logit_1, averaged over the batch."""
    logits = logits.float()
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(network, z_real, z_permuted):
    """Cross-entropy of the discriminator: real samples are class 0, permuted samples class 1."""
    real, fake = network(z_real).float(), network(z_permuted).float()
    zeros = torch.zeros(real.shape[0], dtype=torch.long, device=real.device)
    return 0.5 * (F.cross_entropy(real, zeros) + F.cross_entropy(fake, zeros + 1))


@gin.configurable
class FactorVAERegularizer(Regularizer):
    name = "factor_tc"

    def __init__(self, gamma: float = 10.0, latent_dim: int = 10, hidden: int = 1000, layers: int = 6,
                 learning_rate: float = 1e-4, betas=(0.5, 0.9)):
        super().__init__()
        self.gamma, self.latent_dim = float(gamma), int(latent_dim)
        self.discriminator = factor_discriminator(self.latent_dim, hidden, layers, learning_rate, betas)
        self._last_z = None

    def forward(self, out, model, x, factors, step):
        z = out["z"]
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"FactorVAERegularizer.latent_dim is {self.latent_dim} but the model's z has "
                             f"{z.shape[1]} dimensions: expected the same (bind both to one gin macro)")
        tc = discriminator_tc(self.discriminator(z))
        self._last_z = z.detach().float()
        self.record(tc_discriminator=tc.detach())
        return {self.name: self.gamma * tc}

    def after_step(self, step: int) -> None:
        """Algorithm 2's discriminator update, on the z of the VAE step just taken and its permutation."""
        if self._last_z is None:
            return
        z = self._last_z
        loss = self.discriminator.update(lambda net: discriminator_loss(net, z, permute_dims(z)))
        self.record(discriminator_loss=loss)
        self._last_z = None


@register_objective("factorvae")
@gin.configurable
class FactorVAE(Composite):
    name = "factorvae"

    def __init__(self, gamma: float = 10.0, latent_dim: int = 10, hidden: int = 1000, layers: int = 6):
        super().__init__(regularizers=[FactorVAERegularizer(gamma, latent_dim, hidden, layers)])
