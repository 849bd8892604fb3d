"""The dataset contract (ARCHITECTURE.md, "Datasets") and the factor-grid index maths."""

import numpy as np
import pytest
import torch

from submission.data import DATASET_NAMES, DatasetError, get_dataset
from submission.data.factor_grid import factor_strides, factors_to_index, index_to_factors

PROCEDURAL = ["mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim", "shapes3d_sim"]


def test_registry_names_every_dataset_of_the_issue():
    """Every name dlib 1.5 knows (named_data.py, less its dummy_data), plus mpi3d_complex and the procedural stand-ins."""
    dlib_names = {"dsprites_full", "dsprites_noshape", "color_dsprites", "noisy_dsprites", "scream_dsprites", "smallnorb",
                  "cars3d", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "shapes3d"}
    assert set(DATASET_NAMES) == dlib_names | {"mpi3d_complex", "mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim",
                                               "shapes3d_sim"}


def test_unknown_name_lists_the_known_names():
    with pytest.raises(DatasetError) as error:
        get_dataset("mpi3d_tyo")
    message = str(error.value)
    assert "mpi3d_tyo" in message and "\n" not in message
    assert all(name in message for name in DATASET_NAMES)


def test_strides_match_dlib_formula():
    sizes = [6, 6, 2, 3, 3, 40, 40]
    dlib_bases = np.prod(sizes) / np.cumprod(sizes)  # disentanglement_lib's factor_bases
    np.testing.assert_array_equal(factor_strides(sizes), dlib_bases.astype(np.int64))


def test_index_round_trip_and_last_factor_fastest():
    sizes = [4, 3, 5]
    index = np.arange(60)
    factors = index_to_factors(index, sizes)
    np.testing.assert_array_equal(factors_to_index(factors, sizes), index)
    np.testing.assert_array_equal(factors[:5, 2], np.arange(5))
    np.testing.assert_array_equal(factors[:5, :2], 0)
    assert len({tuple(f) for f in factors}) == 60


@pytest.mark.parametrize("name", PROCEDURAL)
def test_ground_truth_data_contract(name):
    ds = get_dataset(name)
    shape = tuple(ds.observation_shape)
    assert ds.num_factors == len(ds.factors_num_values)
    factors = ds.sample_factors(7, np.random.RandomState(0))
    assert factors.dtype == np.int64 and factors.shape == (7, ds.num_factors)
    assert np.all((factors >= 0) & (factors < np.array(ds.factors_num_values)))
    observations = ds.sample_observations_from_factors(factors, np.random.RandomState(1))
    assert observations.dtype == np.float32 and observations.shape == (7, *shape)
    assert observations.min() >= 0.0 and observations.max() <= 1.0 and observations.max() > 0.0
    uint8 = ds.images_from_factors(factors)
    assert uint8.dtype == np.uint8 and uint8.shape == (7, *shape)
    np.testing.assert_allclose(observations, uint8 / 255.0, atol=1e-6)
    sampled_factors, sampled = ds.sample(3, np.random.RandomState(2))
    np.testing.assert_array_equal(sampled, ds.sample_observations_from_factors(sampled_factors, None))
    assert ds.sample_observations(3, np.random.RandomState(2)).shape == (3, *shape)


@pytest.mark.parametrize("name", PROCEDURAL)
def test_sample_batch_is_nchw_uint8_and_matches_the_factors(name):
    ds = get_dataset(name)
    images, factors = ds.sample_batch(16, np.random.default_rng(0))
    assert images.dtype == torch.uint8 and factors.dtype == torch.int64
    shape = ds.observation_shape
    assert tuple(images.shape) == (16, shape[2], shape[0], shape[1])
    expected = ds.images_from_factors(factors.numpy()).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(images.numpy(), expected)
    again, factors_again = ds.sample_batch(16, np.random.default_rng(0))
    assert torch.equal(images, again) and torch.equal(factors, factors_again)


@pytest.mark.parametrize("bad", [[[6, 0, 0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0, 0, -1]], [[0, 0, 0]]])
def test_off_grid_factors_are_a_clear_error(bad):
    with pytest.raises(DatasetError, match="mpi3d_sim_toy"):
        get_dataset("mpi3d_sim_toy").images_from_factors(np.array(bad))


def test_dlib_metric_accepts_the_dataset():
    """The same object goes to dlib's metric code, which samples through GroundTruthData only."""
    from disentanglement_lib.evaluation.metrics import utils
    ds = get_dataset("mpi3d_sim_toy")
    mean_pixel = lambda x: x.reshape(len(x), -1, 3).mean(axis=1)  # a 3-d stand-in "representation"
    codes, factors = utils.generate_batch_factor_code(ds, mean_pixel, 32, np.random.RandomState(0), 16)
    assert codes.shape == (3, 32) and factors.shape == (7, 32)
    # The mean colour depends on the background factor: a representation that cannot see it would give a constant.
    assert np.std(codes[0]) > 0.01
