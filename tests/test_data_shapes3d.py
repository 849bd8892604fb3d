"""DeepMind's 3dshapes.h5 format: a small file in the official layout loads with the right factors; bad files fail cleanly."""

import h5py
import numpy as np
import pytest

from submission.data import DatasetError, get_dataset
from submission.data.h5_datasets import SHAPES3D_LAYOUTS, Shapes3dH5
from npz_files import grid_factors
from submission.data.shapes3d_render import HUES, ORIENTATION_DEGREES, SCALES

SUBGRID = [[0, 7], [3], [1, 9], [0, 5, 7], [0, 2, 3], [0, 14]]
SUBGRID_SIZES = tuple(len(v) for v in SUBGRID)
COUNT = int(np.prod(SUBGRID_SIZES))


def published_labels(factors):
    """The label values of 3dshapes.h5 (float64): hues, scale, shape index, orientation in degrees."""
    return np.stack([HUES[factors[:, 0]], HUES[factors[:, 1]], HUES[factors[:, 2]], SCALES[factors[:, 3]],
                     factors[:, 4].astype(np.float64), ORIENTATION_DEGREES[factors[:, 5]]], axis=1)


def write_shapes3d_h5(path, factor_values=SUBGRID, images=None, labels=None):
    """A 3dshapes.h5 over ``factor_values`` rendered by shapes3d_sim, chunked and gzipped like a large HDF5 release."""
    factors = grid_factors(factor_values)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=get_dataset("shapes3d_sim").images_from_factors(factors) if images is None
                         else images, chunks=True, compression="gzip")
        f["labels"] = published_labels(factors) if labels is None else labels
    return factors


def test_official_format_loads_with_the_factor_layout(tmp_path):
    path = tmp_path / "3dshapes" / "3dshapes.h5"
    full_factors = write_shapes3d_h5(path)
    ds = Shapes3dH5(path, layouts={COUNT: SUBGRID_SIZES})
    assert ds.factors_num_values == list(SUBGRID_SIZES) and ds.observation_shape == [64, 64, 3]
    assert ds.factor_names[0] == "floor_hue" and ds.factor_names[-1] == "orientation"
    sim = get_dataset("shapes3d_sim")
    sub = ds.sample_factors(50, np.random.RandomState(0))
    full = np.stack([np.asarray(v)[sub[:, i]] for i, v in enumerate(SUBGRID)], axis=1)
    np.testing.assert_array_equal(ds.images_from_factors(sub), sim.images_from_factors(full))
    # Known indices: the last sub-factor (orientation) is fastest; row 1 is orientation 14, row 2 is the next shape.
    np.testing.assert_array_equal(full_factors[[0, 1, 2]], [[0, 3, 1, 0, 0, 0], [0, 3, 1, 0, 0, 14], [0, 3, 1, 0, 2, 0]])
    np.testing.assert_array_equal(ds.images_from_factors(np.array([[0, 0, 0, 0, 1, 0]])),
                                  sim.images_from_factors(full_factors[[2]]))
    assert (path.parent / "3dshapes.images.npy").is_file()
    assert ds.storage == "disk" and ds._in_memory is None


def test_registry_reads_the_data_dir(tmp_path, monkeypatch):
    write_shapes3d_h5(tmp_path / "3dshapes" / "3dshapes.h5")
    monkeypatch.setattr("submission.data.h5_datasets.SHAPES3D_LAYOUTS", {COUNT: SUBGRID_SIZES})
    images, factors = get_dataset("shapes3d", data_dir=tmp_path).sample_batch(4, np.random.default_rng(0))
    assert tuple(images.shape) == (4, 3, 64, 64) and tuple(factors.shape) == (4, 6)


def test_published_layout():
    assert SHAPES3D_LAYOUTS == {480_000: (10, 10, 10, 8, 4, 15)} and np.prod(SHAPES3D_LAYOUTS[480_000]) == 480_000


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        get_dataset("shapes3d", data_dir=tmp_path)
    message = str(error.value)
    assert "3dshapes.h5: file not found" in message and "download shapes3d" in message and "shapes3d_sim" in message


def _bad_file(tmp_path, case):
    path = tmp_path / "3dshapes.h5"
    factors = grid_factors(SUBGRID)
    labels = published_labels(factors)
    images = np.zeros((COUNT, 64, 64, 3), np.uint8)
    if case == "wrong count":
        images, labels = images[:-1], labels[:-1]
    elif case == "wrong dtype":
        images = images.astype(np.float32)
    elif case == "wrong shape":
        images = np.zeros((COUNT, 32, 32, 3), np.uint8)
    elif case == "labels out of order":
        labels = labels[np.random.RandomState(0).permutation(COUNT)]
    elif case == "labels wrong shape":
        labels = labels[:, :5]
    with h5py.File(path, "w") as f:
        if case != "no images":
            f["images"] = images
        if case != "no labels":
            f["labels"] = labels
    if case == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


BAD = {"wrong count": f"{COUNT - 1} images; expected one of {COUNT}", "wrong dtype": "dtype float32; expected uint8",
       "wrong shape": r"shape \(\d+, 32, 32, 3\)", "no images": "expected a dataset 'images'",
       "no labels": "expected a dataset 'labels'", "labels wrong shape": r"labels\]: shape \(\d+, 5\)",
       "labels out of order": "expected only column", "truncated": "not a readable HDF5 file"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_one_line_and_leaves_nothing(tmp_path, case):
    path = _bad_file(tmp_path, case)
    with pytest.raises(DatasetError, match=BAD[case]) as error:
        Shapes3dH5(path, layouts={COUNT: SUBGRID_SIZES})
    assert "\n" not in str(error.value) and "3dshapes.h5" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".h5") == []
