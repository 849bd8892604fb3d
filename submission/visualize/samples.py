"""Reconstructions next to their inputs, and samples from the prior: both need a decoder."""
import numpy as np
import torch

from .tiles import as_rows, tile_grid, to_uint8_nhwc


def reconstruction_pairs(view, images: torch.Tensor) -> np.ndarray:
    """uint8 (2, N, H, W, 3): row 0 the inputs, row 1 their reconstructions decode(representation(x)).

    The representation is the deterministic code (PVAE: gated means), so this is what the exported model keeps."""
    recon = view.decode(view.representation(images))
    return np.stack([to_uint8_nhwc(images), to_uint8_nhwc(recon)])


def reconstruction_grid(pairs: np.ndarray, columns: int = 8) -> np.ndarray:
    """Pairs of rows, ``columns`` images wide: a row of inputs, then the row of their reconstructions, and so on."""
    inputs, recons = as_rows(pairs[0], columns), as_rows(pairs[1], columns)
    tiles = np.stack([inputs, recons], axis=1).reshape(-1, *inputs.shape[1:])
    return tile_grid(tiles)


def prior_samples(view, count: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (count, H, W, 3): decode(gate * z), z ~ N(0, I) (the gate is 1 without PVAE)."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(count, view.latent_dim, generator=generator)
    gate = view.gate()
    if gate is not None:
        z = z * torch.as_tensor(gate)
    return to_uint8_nhwc(view.decode(z))


def sample_grid(samples: np.ndarray, columns: int = 8) -> np.ndarray:
    return tile_grid(as_rows(samples, columns))
