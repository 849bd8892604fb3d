"""Latent traversals: decode a base code while one dimension sweeps a range, for every dimension.

Row d of the grid holds K decodings with z_d swept over ``values``; the other dimensions keep the base code (the
posterior mean of one image). For PVAE the swept value passes through the test-time gate like any code does (the
decoder sees z = gate * u), so a pruned dimension's row is constant and sits in a red frame: pruning at a glance.
The animated GIF shows column k of every row as frame k, with a strip marking where the sweep is.
"""
import numpy as np
import torch

from .tiles import ACTIVE_FRAME, PRUNED_FRAME, add_row_labels, position_strip, tile_grid, to_uint8_nhwc

GIF_COLUMNS = 5     # dimensions per row of an animation frame


def traversal_values(steps: int = 10, limit: float = 2.0) -> np.ndarray:
    """K evenly spaced values in [-limit, limit]: +-2 prior standard deviations cover ~95% of N(0, 1)."""
    if steps < 2:
        raise ValueError(f"traversal steps={steps}: expected at least 2")
    return np.linspace(-limit, limit, steps, dtype=np.float32)


def latent_traversals(decode, base_code, values, gate=None) -> np.ndarray:
    """uint8 (D, K, H, W, 3): ``decode`` (torch (N, D) -> float NCHW in [0, 1]) of ``base_code`` (D,) with dimension d
    set to each of ``values`` (K,), then multiplied by ``gate`` (D,) when given."""
    base = torch.as_tensor(np.asarray(base_code, np.float32))
    values = torch.as_tensor(np.asarray(values, np.float32))
    dims, steps = base.shape[0], values.shape[0]
    codes = base.repeat(dims, steps, 1)                         # (D, K, D)
    index = torch.arange(dims)
    codes[index, :, index] = values                               # codes[d, k, d] = values[k]
    if gate is not None:
        codes = codes * torch.as_tensor(np.asarray(gate, np.float32))
    images = to_uint8_nhwc(decode(codes.reshape(dims * steps, dims)))
    return images.reshape(dims, steps, *images.shape[1:])


def dimension_labels(pruned, gate=None, kl=None) -> list:
    """One label per dimension: 'z3', the gate when it is not fully open, the KL when known, 'pruned' when closed."""
    labels = []
    for d, is_pruned in enumerate(pruned):
        lines = [f"z{d}"]
        if kl is not None:
            lines.append(f"kl {kl[d]:.2g}")
        if is_pruned:
            lines.append("pruned")
        elif gate is not None and gate[d] < 1:
            lines.append(f"g {gate[d]:.2f}")
        labels.append("\n".join(lines))
    return labels


def traversal_grid(traversals: np.ndarray, pruned, labels=None) -> np.ndarray:
    """uint8 (D, K, H, W, 3) -> one image: D rows x K columns of tiles, pruned rows framed in red, labels on the left."""
    dims, steps = traversals.shape[:2]
    frames = [[PRUNED_FRAME if pruned[d] else ACTIVE_FRAME] * steps for d in range(dims)]
    grid = tile_grid(traversals, frames)
    if labels is None:
        labels = dimension_labels(pruned)
    colours = [PRUNED_FRAME if p else (0, 0, 0) for p in pruned]
    return add_row_labels(grid, labels, traversals.shape[2], colours=colours)


def traversal_frames(traversals: np.ndarray, pruned, columns: int = GIF_COLUMNS) -> list:
    """K frames; frame k shows every dimension's k-th step (pruned ones framed in red) above a position strip."""
    dims, steps, height, width, _ = traversals.shape
    rows = -(-dims // columns)
    cols = min(dims, columns)
    blank = np.full((height, width, 3), 255, np.uint8)
    frames = []
    for k in range(steps):
        tiles = [traversals[d, k] if d < dims else blank for d in range(rows * cols)]
        colours = [PRUNED_FRAME if d < dims and pruned[d] else ACTIVE_FRAME for d in range(rows * cols)]
        grid = tile_grid(np.stack(tiles).reshape(rows, cols, height, width, 3),
                         np.array(colours, np.uint8).reshape(rows, cols, 3))
        frames.append(np.concatenate([grid, position_strip(grid.shape[1], k / (steps - 1))], axis=0))
    return frames
