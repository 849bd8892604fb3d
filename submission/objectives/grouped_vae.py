"""Grouped-VAE ("Important Groups First"; docs/methods.md): the latent splits into G consecutive groups and the
reconstruction is summed over prefixes of groups, each decoded with the later groups zero-padded:

    reconstruction = sum_{i=1..G} rec(x, decoder([z_1, ..., z_i, 0, ..., 0]))

Prefix i's loss trains the whole decoder but, of the latent, only its newest group z_i: the earlier groups enter it
stop-gradient. So the first group must carry the most useful information on its own, the second the most useful
remainder, and so on. The KL term is the usual beta * KL over all dimensions.
"""
import gin
import torch

from .base import Objective, register_objective


def group_bounds(latent_dim: int, groups: int):
    """[(start, end)] of G consecutive groups, as equal as possible, earlier groups one larger when D % G != 0."""
    if not 1 <= groups <= latent_dim:
        raise ValueError(f"GroupedVAE.groups={groups} for {latent_dim} latent dimensions: expected 1 <= groups <= "
                         f"latent_dim")
    sizes = [latent_dim // groups + (1 if g < latent_dim % groups else 0) for g in range(groups)]
    starts = [sum(sizes[:g]) for g in range(groups)]
    return [(s, s + n) for s, n in zip(starts, sizes)]


def prefix_latents(z, bounds):
    """For each prefix i: [z_1..z_{i-1} (stop-gradient), z_i, zeros] -> list of (N, D) tensors."""
    prefixes = []
    for start, end in bounds:
        pad = torch.zeros_like(z[:, end:])
        prefixes.append(torch.cat([z[:, :start].detach(), z[:, start:end], pad], dim=1))
    return prefixes


@register_objective("grouped_vae")
@gin.configurable
class GroupedVAE(Objective):
    name = "grouped_vae"

    def __init__(self, groups: int = 5, beta: float = 1.0):
        super().__init__()
        self.groups, self.beta = int(groups), float(beta)

    def forward(self, model, x, factors, step):
        posterior = model.encode(x)
        z = model.sample_latent(posterior)
        bounds = group_bounds(z.shape[1], self.groups)
        reconstruction = sum(self.reconstruction(model.decoder(zp), x) for zp in prefix_latents(z, bounds))
        kl = self.gaussian_kl(posterior["mu"], posterior["logvar"]).sum()
        self.record(kl=kl.detach())
        return {"reconstruction": reconstruction, "kl": self.beta * kl}
