"""Image grids in numpy: tiles with coloured frames, a label column, a position strip. No matplotlib, so a grid's size
in pixels is exact (a row of D tiles of 64 px is what a test can check) and each tile keeps its pixels unscaled."""
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PAD = 2
BACKGROUND = (255, 255, 255)
PRUNED_FRAME = (220, 30, 30)     # a pruned dimension's tiles sit in a red frame
ACTIVE_FRAME = BACKGROUND
LABEL_WIDTH = 48
STRIP_HEIGHT = 8


def to_uint8_nhwc(images) -> np.ndarray:
    """float NCHW (torch or numpy) in [0, 1], or uint8 NHWC -> uint8 (N, H, W, 3); grey images become RGB."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
            images = images.transpose(0, 2, 3, 1)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images of shape {images.shape}: expected NCHW floats or NHWC uint8 with 1 or 3 channels")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def tile_grid(tiles: np.ndarray, frame_colours=None, pad: int = PAD) -> np.ndarray:
    """uint8 (R, C, H, W, 3) -> uint8 (pad + R (H + pad), pad + C (W + pad), 3).

    ``frame_colours`` (R, C, 3) colours the ``pad``-wide frame around each tile (white when None)."""
    rows, cols, height, width, _ = tiles.shape
    grid = np.empty((pad + rows * (height + pad), pad + cols * (width + pad), 3), np.uint8)
    grid[...] = BACKGROUND
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            if frame_colours is not None:
                grid[top - pad:top + height + pad, left - pad:left + width + pad] = frame_colours[r][c]
            grid[top:top + height, left:left + width] = tiles[r, c]
    return grid


def add_row_labels(grid: np.ndarray, labels, row_height: int, pad: int = PAD, colours=None,
                   width: int = LABEL_WIDTH) -> np.ndarray:
    """Prepend a white column of ``width`` px with one text label per grid row (PIL's built-in bitmap font)."""
    column = Image.new("RGB", (width, grid.shape[0]), BACKGROUND)
    draw = ImageDraw.Draw(column)
    font = ImageFont.load_default()
    for r, label in enumerate(labels):
        top = pad + r * (row_height + pad)
        for i, line in enumerate(str(label).split("\n")):
            colour = tuple(colours[r]) if colours is not None else (0, 0, 0)
            draw.text((4, top + row_height // 2 - 12 + 12 * i), line, fill=colour, font=font)
    return np.concatenate([np.asarray(column), grid], axis=1)


def position_strip(width: int, position: float, height: int = STRIP_HEIGHT) -> np.ndarray:
    """A grey strip with a dark marker at ``position`` in [0, 1]: where an animation frame sits in its traversal."""
    strip = np.full((height, width, 3), 230, np.uint8)
    centre = int(round(position * (width - 1)))
    strip[1:-1, max(centre - 3, 0):centre + 4] = (40, 40, 40)
    return strip


def as_rows(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (ceil(N / columns), columns, H, W, 3), the last row padded with white tiles."""
    n = images.shape[0]
    columns = max(min(columns, n), 1)
    rows = -(-n // columns)
    padded = np.full((rows * columns,) + images.shape[1:], 255, np.uint8)
    padded[:n] = images
    return padded.reshape(rows, columns, *images.shape[1:])
