"""FactorVAE's discriminator (Kim & Mnih 2018, "Disentangling by Factorising", sec. 3 and appendix A):
an MLP of 6 layers x 1000 units with leaky ReLU and 2 logits (real q(z) vs permuted prod_j q(z_j)), trained with its own
Adam (lr 1e-4, betas 0.5 and 0.9)."""
import torch

from .side_network import SideNetwork, mlp


def permute_dims(z, generator=None):
    """Kim & Mnih, Algorithm 1: permute each latent dimension independently across the batch, which samples from
    prod_j q(z_j) while keeping every marginal."""
    n = z.shape[0]
    columns = [z[torch.randperm(n, generator=generator, device="cpu").to(z.device), j] for j in range(z.shape[1])]
    return torch.stack(columns, dim=1)


def factor_discriminator(latent_dim: int, hidden: int = 1000, layers: int = 6, learning_rate: float = 1e-4,
                         betas=(0.5, 0.9)) -> SideNetwork:
    return SideNetwork(mlp(latent_dim, 2, hidden, layers), learning_rate, betas)
