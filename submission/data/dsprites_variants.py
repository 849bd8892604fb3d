"""dlib's dSprites variants, derived from the official ``dsprites_full`` file exactly as disentanglement_lib derives them.

disentanglement_lib 1.5 (``data/ground_truth/dsprites.py``, ``named_data.py``; Locatello et al. 2019, Sec. 5):

* ``dsprites_noshape``: factors scale, orientation, x, y ``[6, 40, 32, 32]``; the shape is drawn at random per image.
* ``color_dsprites``: the sprite (white on black) times a colour drawn per image from U(0.5, 1)^3.
* ``noisy_dsprites``: the sprite white, the background U(0, 1) noise per pixel and channel.
* ``scream_dsprites``: a random 64x64 crop of Munch's *The Scream* (shrunk to fit 350x274), averaged with a random colour;
  the sprite's pixels inverted.

The draws come from the caller's RandomState in dlib's order (the unobserved factors first, then the variant's own), so the
same seed gives dlib's images, quantised to uint8 (within 1/510 of dlib's floats).  Observations are random given the factors,
as in dlib: the evaluator sees that and scores them the reference way.  Images stay on disk (``DspritesNpz``); a batch is
rendered in a few array operations.
"""

from pathlib import Path

import numpy as np

from submission.data.errors import DatasetError
from submission.data.factor_grid import RandomGivenFactors

DSPRITES_VARIANTS = ("dsprites_noshape", "color_dsprites", "noisy_dsprites", "scream_dsprites")
SCREAM_RELATIVE_PATH = Path("scream") / "scream.jpg"
SCREAM_SIZE = (350, 274)  # dlib's thumbnail box (width, height)


def load_scream(path):
    """The Scream as float (H, W, 3) in [0, 1], shrunk to fit SCREAM_SIZE as dlib does; DatasetError if absent."""
    from PIL import Image
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected The Scream image for scream_dsprites "
                           f"(get it with `python -m submission.data.download scream_dsprites`)")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail(SCREAM_SIZE)
            scream = np.asarray(image, dtype=np.float64) / 255.0
    except OSError as error:
        raise DatasetError(f"{path}: not a readable image ({error}); expected The Scream as a JPEG") from None
    if scream.shape[0] <= 64 or scream.shape[1] <= 64:
        raise DatasetError(f"{path}: image of {scream.shape[1]}x{scream.shape[0]} after shrinking; expected more than "
                           f"64x64 to crop from")
    return scream


def _to_uint8(observations):
    return (np.clip(observations, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class DspritesVariant(RandomGivenFactors):
    """One of dlib's dSprites variants over a ``DspritesNpz`` (the official file)."""

    def __init__(self, name, dsprites, scream=None):
        if name not in DSPRITES_VARIANTS:
            raise DatasetError(f"unknown dSprites variant {name!r}; expected one of {DSPRITES_VARIANTS}")
        if name == "scream_dsprites" and scream is None:
            raise DatasetError("scream_dsprites: no Scream image given; expected load_scream(path)")
        self.name, self.dsprites, self.scream = name, dsprites, scream
        self.noshape = name == "dsprites_noshape"
        self.factor_sizes = tuple(dsprites.factor_sizes[1:] if self.noshape else dsprites.factor_sizes)
        self.factor_names = ("scale", "orientation", "pos_x", "pos_y") if self.noshape else \
            ("shape", "scale", "orientation", "pos_x", "pos_y")
        self._observation_shape = (64, 64, 1) if self.noshape else (64, 64, 3)

    def render(self, factors, random_state):
        """uint8 NHWC observations of checked factors, drawing the random parts from ``random_state`` in dlib's order."""
        count = len(factors)
        random_state.randint(1, size=count)  # dlib draws the constant colour factor too; keep its stream aligned
        if self.noshape:
            factors = np.concatenate([random_state.randint(3, size=count)[:, None], factors], axis=1)
        sprite = self.dsprites.images_from_factors(factors)  # (N, 64, 64, 1) in {0, 255}
        if self.noshape:
            return sprite
        mask = np.repeat(sprite, 3, axis=3) == 255
        if self.name == "color_dsprites":
            return _to_uint8(mask * random_state.uniform(0.5, 1, [count, 1, 1, 3]))
        if self.name == "noisy_dsprites":
            return _to_uint8(np.minimum(mask + random_state.uniform(0, 1, [count, 64, 64, 3]), 1.0))
        return _to_uint8(self._scream_backgrounds(mask, random_state))

    def _scream_backgrounds(self, mask, random_state):
        height, width = self.scream.shape[:2]
        corners, colours = np.zeros((len(mask), 2), np.int64), np.zeros((len(mask), 3))
        for i in range(len(mask)):  # dlib's per-image order of draws: row, column, colour
            corners[i] = random_state.randint(0, height - 64), random_state.randint(0, width - 64)
            colours[i] = random_state.uniform(0, 1, size=3)
        offsets = np.arange(64)
        rows = corners[:, 0, None, None] + offsets[None, :, None]
        columns = corners[:, 1, None, None] + offsets[None, None, :]
        background = (self.scream[rows, columns] + colours[:, None, None, :]) / 2.0
        return np.where(mask, 1.0 - background, background)


def make_variant(name, data_dir, **options):
    """The variant ``name`` over the dSprites file (and The Scream) in ``data_dir``."""
    from submission.data.npz_datasets import DspritesNpz
    scream = load_scream(Path(data_dir) / SCREAM_RELATIVE_PATH) if name == "scream_dsprites" else None
    return DspritesVariant(name, DspritesNpz.from_data_dir(data_dir, **options), scream)
