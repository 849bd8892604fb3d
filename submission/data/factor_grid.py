"""Index maths for a full factor grid, and the dataset base class every dataset here shares.

A ground-truth dataset is a grid of discrete factors; image ``i`` of a file holds the factors whose row-major position in the
grid is ``i``, the last factor varying fastest (disentanglement_lib, ``data/ground_truth/util.py``; MPI3D, Gondal et al. 2019;
dSprites, Matthey et al. 2017): ``index = dot(factors, prod(sizes) / cumprod(sizes))``.
"""

import numpy as np
import torch
from disentanglement_lib.data.ground_truth.ground_truth_data import GroundTruthData

from submission.data.errors import DatasetError


def factor_strides(factor_sizes):
    """Row-major strides of a factor grid: ``prod(sizes) / cumprod(sizes)``, as int64 (exact, unlike dlib's float division)."""
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)


def factors_to_index(factors, factor_sizes):
    """Flat row-major index of each factor row; ``factors`` is (N, F) of ints, each in [0, size)."""
    factors = np.asarray(factors, dtype=np.int64)
    return factors @ factor_strides(factor_sizes)


def index_to_factors(index, factor_sizes):
    """Inverse of :func:`factors_to_index`: (N,) flat indices -> (N, F) int64 factors."""
    index = np.asarray(index, dtype=np.int64)
    strides = factor_strides(factor_sizes)
    return (index[:, None] // strides[None, :]) % np.asarray(factor_sizes, dtype=np.int64)[None, :]


def check_factors(factors, factor_sizes, source):
    """Return ``factors`` as (N, F) int64, or raise DatasetError naming ``source`` when a value is off the grid."""
    factors = np.asarray(factors)
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise DatasetError(f"{source}: factors of shape {factors.shape}; expected (N, {len(sizes)})")
    factors = factors.astype(np.int64, copy=False)
    if factors.size and (np.any(factors < 0) or np.any(factors >= sizes[None, :])):
        bad = factors[np.any((factors < 0) | (factors >= sizes[None, :]), axis=1)][0]
        raise DatasetError(f"{source}: factor row {bad.tolist()} is off the grid; expected 0 <= factor < {sizes.tolist()}")
    return factors


class FactorGridDataset(GroundTruthData):
    """disentanglement_lib's GroundTruthData over a full factor grid, plus a fast uint8 path.

    Subclasses set ``name``, ``factor_sizes``, ``observation_shape`` and implement ``_images(factors) -> uint8 NHWC``
    for checked (N, F) int64 factors. Everything else (sampling, float observations, training batches) lives here once.
    All factors are latent (dlib's ``latent_factor_indices`` cover the whole grid), so observations depend only on factors.
    """

    name = "dataset"
    factor_sizes = ()
    _observation_shape = (64, 64, 3)
    standin_version = None  # a procedural stand-in's renderer version (recorded with every result made on it)

    @property
    def num_factors(self):
        return len(self.factor_sizes)

    @property
    def factors_num_values(self):
        return list(self.factor_sizes)

    @property
    def observation_shape(self):
        return list(self._observation_shape)

    def sample_factors(self, num, random_state):
        """Uniform factors, (num, F) int64; ``random_state`` is a np.random.RandomState, as in dlib."""
        return np.stack([random_state.randint(size, size=num) for size in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors, random_state):
        """float32 NHWC in [0, 1]. ``random_state`` is unused: every factor row has exactly one image, as in the files."""
        del random_state
        return self.images_from_factors(factors).astype(np.float32) * np.float32(1.0 / 255.0)

    def images_from_factors(self, factors):
        """uint8 NHWC images of (N, F) factors, without a per-item Python loop."""
        return self._images(check_factors(factors, self.factor_sizes, self.name))

    def sample_batch(self, batch_size, rng):
        """Training batch: (uint8 NCHW tensor, int64 (N, F) factor tensor); ``rng`` is a np.random.Generator."""
        factors = np.stack([rng.integers(0, size, size=batch_size) for size in self.factor_sizes], axis=1).astype(np.int64)
        images = self._images(factors)
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), torch.from_numpy(factors)

    def _images(self, factors):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, factor_sizes={list(self.factor_sizes)})"


class RandomGivenFactors(FactorGridDataset):
    """A grid dataset whose observations are random given the factors, as some of dlib's are (dSprites variants, SmallNORB).

    Subclasses implement ``render(factors, random_state) -> uint8 NHWC``, drawing the random parts from ``random_state``.
    Observations are its uint8 images / 255; the evaluator notices the randomness and scores such a dataset the reference way.
    """

    def render(self, factors, random_state):
        raise NotImplementedError

    def sample_observations_from_factors(self, factors, random_state):
        factors = check_factors(factors, self.factor_sizes, self.name)
        return self.render(factors, random_state).astype(np.float32) * np.float32(1.0 / 255.0)

    def images_from_factors(self, factors, random_state=None):
        """uint8 NHWC; random parts from ``random_state`` (default: a fresh RandomState(0), so repeatable)."""
        factors = check_factors(factors, self.factor_sizes, self.name)
        return self.render(factors, random_state or np.random.RandomState(0))

    def sample_batch(self, batch_size, rng):
        factors = np.stack([rng.integers(0, size, size=batch_size) for size in self.factor_sizes], axis=1).astype(np.int64)
        images = self.render(factors, np.random.RandomState(int(rng.integers(1 << 31))))
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), torch.from_numpy(factors)

    def _images(self, factors):
        return self.render(factors, np.random.RandomState(0))
