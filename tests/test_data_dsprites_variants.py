"""dlib's dSprites variants over a small dSprites file in the official format (and a small Scream image)."""

import numpy as np
import pytest
from PIL import Image

from submission.data import DatasetError, get_dataset
from submission.data.dsprites_variants import DSPRITES_VARIANTS, SCREAM_RELATIVE_PATH
from submission.data.npz_datasets import DSPRITES_RELATIVE_PATH
from npz_files import write_npz

VALUES = [[0, 1, 2], [5], [0, 10], [3, 30], [0, 31]]
SIZES = tuple(len(v) for v in VALUES)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    write_npz(get_dataset("dsprites_sim"), tmp_path / DSPRITES_RELATIVE_PATH, VALUES)
    monkeypatch.setattr("submission.data.npz_datasets.DSPRITES_LAYOUTS", {int(np.prod(SIZES)): SIZES})
    (tmp_path / SCREAM_RELATIVE_PATH).parent.mkdir()
    painting = np.random.RandomState(0).randint(0, 256, (500, 400, 3)).astype(np.uint8)  # portrait, like the painting
    Image.fromarray(painting).save(tmp_path / SCREAM_RELATIVE_PATH, quality=95)
    return tmp_path


def _sprite(data_dir, factors):
    """The white-on-black sprites of the full dSprites factors, from the file."""
    return get_dataset("dsprites_full", data_dir=data_dir).images_from_factors(factors)


def test_noshape_draws_the_shape_and_keeps_the_other_factors(data_dir):
    ds = get_dataset("dsprites_noshape", data_dir=data_dir)
    assert ds.factors_num_values == list(SIZES[1:]) and ds.observation_shape == [64, 64, 1]
    factors = ds.sample_factors(30, np.random.RandomState(0))
    images = ds.images_from_factors(factors, np.random.RandomState(4))
    draws = np.random.RandomState(4)
    draws.randint(1, size=30)
    shapes = draws.randint(3, size=30)  # dlib's order: the constant colour factor, then the shape
    np.testing.assert_array_equal(images, _sprite(data_dir, np.concatenate([shapes[:, None], factors], axis=1)))


def test_colour_noise_and_scream_keep_the_sprite_where_the_file_has_it(data_dir):
    factors = np.array([[0, 0, 0, 0, 0], [2, 0, 1, 1, 1], [1, 0, 1, 0, 1]])
    sprite = np.repeat(_sprite(data_dir, factors), 3, axis=3) == 255
    colour = get_dataset("color_dsprites", data_dir=data_dir).images_from_factors(factors)
    assert np.all(colour[~sprite] == 0)
    for image, mask in zip(colour, sprite[..., 0]):
        tint = image[mask]
        assert np.all(tint == tint[0]) and np.all(tint >= 127)  # one colour per image, each channel in [0.5, 1]
    noisy = get_dataset("noisy_dsprites", data_dir=data_dir).images_from_factors(factors)
    assert np.all(noisy[sprite] == 255) and noisy[~sprite].std() > 50
    scream = get_dataset("scream_dsprites", data_dir=data_dir)
    first, again = scream.images_from_factors(factors), scream.images_from_factors(factors)
    np.testing.assert_array_equal(first, again)  # the default RandomState(0) is repeatable
    assert not np.array_equal(first, scream.images_from_factors(factors, np.random.RandomState(1)))


def test_observations_are_floats_of_the_uint8_images_and_batches_are_nchw(data_dir):
    for name in DSPRITES_VARIANTS:
        ds = get_dataset(name, data_dir=data_dir)
        factors = ds.sample_factors(5, np.random.RandomState(0))
        observations = ds.sample_observations_from_factors(factors, np.random.RandomState(3))
        np.testing.assert_allclose(observations * 255, ds.images_from_factors(factors, np.random.RandomState(3)),
                                   atol=1e-3)
        images, batch_factors = ds.sample_batch(4, np.random.default_rng(0))
        assert tuple(images.shape) == (4, ds.observation_shape[2], 64, 64) and batch_factors.shape[1] == ds.num_factors


def test_missing_scream_is_one_line(data_dir):
    (data_dir / SCREAM_RELATIVE_PATH).unlink()
    with pytest.raises(DatasetError, match=r"scream.jpg: file not found; expected The Scream image for scream_dsprites "
                                           r"\(get it with `python -m submission.data.download scream_dsprites`\)$"):
        get_dataset("scream_dsprites", data_dir=data_dir)
    (data_dir / SCREAM_RELATIVE_PATH).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="not a readable image"):
        get_dataset("scream_dsprites", data_dir=data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", DSPRITES_VARIANTS)
def test_same_images_as_dlib_from_the_same_seed(data_dir, name):
    """dlib's own classes, given our file's images in place of their loader's, draw the same observations."""
    from disentanglement_lib.data.ground_truth import dsprites, util
    classes = {"dsprites_noshape": dsprites.DSprites, "color_dsprites": dsprites.ColorDSprites,
               "noisy_dsprites": dsprites.NoisyDSprites, "scream_dsprites": dsprites.ScreamDSprites}
    ours = get_dataset(name, data_dir=data_dir)
    reference = object.__new__(classes[name])
    reference.latent_factor_indices = [2, 3, 4, 5] if name == "dsprites_noshape" else [1, 2, 3, 4, 5]
    reference.factor_sizes = np.array((1,) + SIZES, dtype=np.int64)
    reference.full_factor_sizes = [1, *SIZES]
    reference.factor_bases = np.prod(reference.factor_sizes) / np.cumprod(reference.factor_sizes)
    reference.state_space = util.SplitDiscreteStateSpace(reference.factor_sizes, reference.latent_factor_indices)
    with np.load(data_dir / DSPRITES_RELATIVE_PATH) as official:
        reference.images = official["imgs"]
    reference.scream = ours.scream
    factors = ours.sample_factors(12, np.random.RandomState(0))
    expected = reference.sample_observations_from_factors(factors, np.random.RandomState(7))
    got = ours.sample_observations_from_factors(factors, np.random.RandomState(7))
    np.testing.assert_allclose(got, expected, atol=0.5 / 255 + 1e-6)
