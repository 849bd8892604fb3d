"""Test helper: write a dataset (usually a procedural one) in the official npz format, so the npz path is exercised end
to end.

MPI3D format: key ``images`` (N, 64, 64, 3) uint8.  dSprites format: ``imgs`` (N, 64, 64) uint8 in {0, 1}, plus
``latents_classes`` and ``latents_values`` (N, 6) with the constant colour factor first, as in the official file.
The images are the row-major product of ``factor_values`` (default: every value), last factor fastest; a subset grid keeps
test files small.  Written streaming (stored or deflated zip), to a temp name, then renamed.
"""

import itertools
import zipfile
from pathlib import Path

import numpy as np

from submission.files import atomic_write
from submission.data.dsprites_render import ORIENTATIONS, POSITIONS, SCALES


def grid_factors(factor_values):
    """(N, F) int64 row-major product of per-factor value lists, last factor fastest."""
    return np.array(list(itertools.product(*factor_values)), dtype=np.int64).reshape(-1, len(factor_values))


def _write_member(archive, key, array_shape, dtype, chunks):
    with archive.open(key + ".npy", "w", force_zip64=True) as member:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": array_shape}
        np.lib.format.write_array_header_1_0(member, header)
        for chunk in chunks:
            member.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())


def write_npz(dataset, path, factor_values=None, compress=False, chunk=4096, dsprites_format=None):
    """Write ``dataset``'s images over the grid ``factor_values`` (list of per-factor value lists) to ``path``."""
    path = Path(path)
    factor_values = factor_values or [range(size) for size in dataset.factors_num_values]
    factors = grid_factors(factor_values)
    if dsprites_format is None:
        dsprites_format = tuple(dataset.observation_shape) == (64, 64, 1)
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    batches = (factors[i:i + chunk] for i in range(0, len(factors), chunk))

    def write(out):
        with zipfile.ZipFile(out, "w", compression=mode, allowZip64=True) as archive:
            if dsprites_format:
                _write_member(archive, "imgs", (len(factors), 64, 64), np.uint8,
                              (dataset.images_from_factors(b)[..., 0] // 255 for b in batches))
                classes = np.concatenate([np.zeros((len(factors), 1), np.int64), factors], axis=1)
                values = np.stack([np.ones(len(factors)), factors[:, 0] + 1.0, SCALES[factors[:, 1]],
                                   ORIENTATIONS[factors[:, 2]], POSITIONS[factors[:, 3]], POSITIONS[factors[:, 4]]], 1)
                _write_member(archive, "latents_classes", classes.shape, np.int64, [classes])
                _write_member(archive, "latents_values", values.shape, np.float64, [values])
            else:
                _write_member(archive, "images", (len(factors), *dataset.observation_shape), np.uint8,
                              (dataset.images_from_factors(b) for b in batches))
    atomic_write(str(path), write)
    return factors
