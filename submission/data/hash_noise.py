"""Counter-based noise: a pure function of integer keys, so procedural images need no RNG state.

The mixer is SplitMix64's finaliser (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators"). Because the
noise is a function of (image key, pixel), the same factors always give the same image, as a dataset file would.
"""

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(keys):
    """SplitMix64 finaliser of uint64 ``keys`` (any shape); wraps modulo 2**64 by design."""
    z = np.asarray(keys, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniform_from_keys(keys, salt):
    """Uniform floats in [0, 1), float32, one per key; ``salt`` separates independent noise streams."""
    mixed = splitmix64(np.asarray(keys, dtype=np.uint64) * np.uint64(0x2545F4914F6CDD1D) + np.uint64(salt))
    return ((mixed >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).astype(np.float32)


def triangular_from_keys(keys, salt):
    """Zero-mean triangular noise in (-1, 1): the sum of two uniforms, a cheap stand-in for sensor noise's bell shape."""
    return uniform_from_keys(keys, salt) + uniform_from_keys(keys, salt + 7919) - np.float32(1.0)
