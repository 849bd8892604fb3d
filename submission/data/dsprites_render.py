"""Procedural dSprites: white shapes on black, on the official factor grid, rendered on demand.

Grid from Matthey et al. 2017 (dSprites, deepmind/dsprites-dataset README): shape 3 (square, ellipse, heart); scale 6 values
in linspace(0.5, 1, 6); orientation 40 values in linspace(0, 2*pi, 40) (both ends included, so the first and last
orientation look the same, as in the official file); posX and posY 32 values each in linspace(0, 1, 32).
The factor layout is disentanglement_lib's DSprites with latent_factor_indices [1..5]: sizes ``[3, 6, 40, 32, 32]``
(the constant colour factor is dropped).  Images are binary, (64, 64, 1) uint8 in {0, 255}, so
that uint8 / 255 gives the {0., 1.} floats dlib's DSprites returns (the official file's ``imgs`` hold {0, 1}; the npz loader
scales them the same way).

Rendering is a scatter of one of 720 precomputed 32x32 binary sprites (shape, scale, orientation) into a blank canvas.
"""

import numpy as np

from submission.data.factor_grid import FactorGridDataset

DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)
DSPRITES_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
IMAGE_SIZE = 64
SPRITE_SIZE = 32
SHAPE_HALF_EXTENT = 10.0  # pixels at scale 1
# Centre pixel of each position value: 16 + position * 32 keeps every 32x32 sprite box inside the 64x64 frame.
POSITION_PIXELS = np.round(SPRITE_SIZE / 2 + POSITIONS * (IMAGE_SIZE - SPRITE_SIZE)).astype(np.int64)


def shape_inside(shape, u, v):
    """Inside test of a unit shape at offsets (u, v) (v up), shape extent about [-1, 1]."""
    if shape == 0:  # square
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == 1:  # ellipse, elongated as in dSprites
        return (u / 1.0) ** 2 + (v / 0.55) ** 2 <= 1.0
    # heart: the classic implicit curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, which spans about [-1.14, 1.14] x [-1, 1.25]
    x, y = u * 1.15, v * 1.15 + 0.1
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def render_sprite_table(supersample=4):
    """(3, 6, 40, 32, 32) uint8 binary sprites: each shape scaled and rotated, thresholded at half coverage."""
    n = SPRITE_SIZE * supersample
    grid = (np.arange(n) + 0.5) / supersample - SPRITE_SIZE / 2
    x, y = grid[None, :], -grid[:, None]
    table = np.zeros((3, 6, 40, SPRITE_SIZE, SPRITE_SIZE), np.uint8)
    for shape in range(3):
        for s, scale in enumerate(SCALES):
            half = SHAPE_HALF_EXTENT * scale
            cos, sin = np.cos(ORIENTATIONS)[:, None, None], np.sin(ORIENTATIONS)[:, None, None]
            # Inverse rotation of the sample grid rotates the shape counter-clockwise by the orientation.
            u, v = (cos * x + sin * y) / half, (-sin * x + cos * y) / half
            coverage = shape_inside(shape, u, v).reshape(40, SPRITE_SIZE, supersample, SPRITE_SIZE, supersample).mean((2, 4))
            table[shape, s] = coverage >= 0.5
    return table


_SPRITES = {}


def _sprite_offsets():
    dy, dx = np.meshgrid(np.arange(SPRITE_SIZE), np.arange(SPRITE_SIZE), indexing="ij")
    return (dy * IMAGE_SIZE + dx).reshape(-1).astype(np.int64)


_OFFSETS = _sprite_offsets()


def render_dsprites(factors):
    """uint8 (N, 64, 64, 1) binary images, {0, 255}, of checked (N, 5) int64 factors."""
    if "table" not in _SPRITES:
        _SPRITES["table"] = render_sprite_table().reshape(3 * 6 * 40, -1) * np.uint8(255)
    shape, scale, orientation, pos_x, pos_y = factors.T
    sprites = _SPRITES["table"][(shape * 6 + scale) * 40 + orientation]
    corner = (POSITION_PIXELS[pos_y] - SPRITE_SIZE // 2) * IMAGE_SIZE + POSITION_PIXELS[pos_x] - SPRITE_SIZE // 2
    images = np.zeros((len(factors), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    flat_index = (np.arange(len(factors), dtype=np.int64) * IMAGE_SIZE * IMAGE_SIZE + corner)[:, None] + _OFFSETS[None, :]
    images.reshape(-1)[flat_index] = sprites
    return images


class DspritesSim(FactorGridDataset):
    """Procedural dSprites, grid ``[3, 6, 40, 32, 32]``, (64, 64, 1) binary uint8; no file needed."""

    name = "dsprites_sim"
    standin_version = 1
    factor_sizes = DSPRITES_FACTOR_SIZES
    _observation_shape = (64, 64, 1)

    def _images(self, factors):
        return render_dsprites(factors)
