"""Cars3D (.mat per car) and SmallNORB (NORB binary matrices): small files in the official formats, patched grid sizes."""

import numpy as np
import pytest
import scipy.io

from submission.data import DatasetError, get_dataset
from submission.data import mat_datasets
from submission.data.factor_grid import factor_strides
from npz_files import grid_factors

CAR_NAMES = ["car_002_mesh.mat", "car_000_mesh.mat", "car_001_mesh.mat"]  # written out of order: objects follow sorting


def car_views(obj, size=32):
    """(size, size, 3, 24, 4) uint8: every view a flat colour (10 * elevation + 60 * object, 10 * azimuth, 7)."""
    views = np.zeros((size, size, 3, 24, 4), np.uint8)
    for azimuth in range(24):
        for elevation in range(4):
            views[:, :, :, azimuth, elevation] = (10 * elevation + 60 * obj, 10 * azimuth, 7)
    return views


@pytest.fixture
def cars_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(mat_datasets, "CARS3D_OBJECTS", 3)
    (tmp_path / "cars").mkdir()
    for name in CAR_NAMES:
        scipy.io.savemat(tmp_path / "cars" / name, {"im": car_views(int(name[4:7]))})
    return tmp_path


def test_cars3d_layout_on_known_indices(cars_dir):
    ds = get_dataset("cars3d", data_dir=cars_dir)
    assert ds.factors_num_values == [4, 24, 3] and ds.observation_shape == [64, 64, 3]
    factors = np.array([[0, 0, 0], [3, 23, 2], [1, 5, 1], [2, 17, 0]])
    images = ds.images_from_factors(factors)
    for (elevation, azimuth, obj), image in zip(factors, images):
        assert np.all(image == [10 * elevation + 60 * obj, 10 * azimuth, 7])
    assert (cars_dir / "cars.images.npy").is_file()


def _norb_matrix(path, array):
    magic = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}[array.dtype]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    with open(path, "wb") as out:
        np.array([magic, array.ndim, *dims], np.int32).tofile(out)
        array.tofile(out)


GRID = (2, 2, 2, 3, 2)  # category, instance, elevation, azimuth, lighting


def write_smallnorb(directory, grid=GRID, repeat_first=False):
    """Both halves of a SmallNORB in NORB's format over ``grid``, rows shuffled; camera 0 shows 5 * grid row, flat."""
    directory.mkdir(parents=True, exist_ok=True)
    factors = grid_factors([range(size) for size in grid])
    order = np.random.RandomState(0).permutation(len(factors))
    if repeat_first:
        order[1] = order[0]
    rows = factors[order]
    for half, chunk in enumerate(mat_datasets.NORB_CHUNKS):
        part = rows[half * len(rows) // 2:(half + 1) * len(rows) // 2]
        dat = np.zeros((len(part), 2, 96, 96), np.uint8)
        dat[:, 0] = (5 * (part @ factor_strides(grid)))[:, None, None]
        dat[:, 1] = 255
        info = np.column_stack([part[:, 1], part[:, 2], 2 * part[:, 3], part[:, 4]]).astype(np.int32)
        _norb_matrix(directory / f"smallnorb-{chunk}-dat.mat", dat)
        _norb_matrix(directory / f"smallnorb-{chunk}-cat.mat", part[:, 0].astype(np.int32))
        _norb_matrix(directory / f"smallnorb-{chunk}-info.mat", info)


@pytest.fixture
def norb_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(mat_datasets, "NORB_GRID", GRID)
    write_smallnorb(tmp_path / "small_norb")
    return tmp_path


def test_smallnorb_layout_on_known_indices_with_the_instance_drawn(norb_dir):
    ds = get_dataset("smallnorb", data_dir=norb_dir)
    assert ds.factors_num_values == [2, 2, 3, 2] and ds.observation_shape == [64, 64, 1]
    factors = ds.sample_factors(20, np.random.RandomState(0))
    images = ds.images_from_factors(factors, np.random.RandomState(9))
    instance = np.random.RandomState(9).randint(2, size=20)  # dlib draws the instance first
    full = np.insert(factors, 1, instance, axis=1)
    np.testing.assert_array_equal(images[:, 0, 0, 0], 5 * (full @ factor_strides(GRID)))
    assert np.all(images == images[:, :1, :1])  # flat: the resize kept camera 0's value everywhere


BAD_CARS = {
    "missing dir": (lambda d: (d / "cars").rename(d / "elsewhere"), "cars: directory not found; expected the 3"),
    "wrong count": (lambda d: (d / "cars" / CAR_NAMES[0]).unlink(), "2 .mat files; expected 3"),
    "no im": (lambda d: scipy.io.savemat(d / "cars" / CAR_NAMES[0], {"pictures": car_views(0)}), "expected 'im'"),
    "wrong shape": (lambda d: scipy.io.savemat(d / "cars" / CAR_NAMES[0], {"im": car_views(0)[..., :3]}),
                    r"expected uint8 \(H, W, 3, 24, 4\)"),
    "truncated": (lambda d: (d / "cars" / CAR_NAMES[1]).write_bytes((d / "cars" / CAR_NAMES[1]).read_bytes()[:3000]),
                  "car_000_mesh.mat: not a readable .mat file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CARS))
def test_bad_cars3d_is_one_line_and_writes_nothing(cars_dir, case):
    damage, match = BAD_CARS[case]
    damage(cars_dir)
    with pytest.raises(DatasetError, match=match) as error:
        get_dataset("cars3d", data_dir=cars_dir)
    assert "\n" not in str(error.value)
    assert not any(p.suffix == ".npy" or ".tmp-" in p.name for p in cars_dir.iterdir())


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-10])


BAD_NORB = {
    "missing file": (lambda d: (d / f"smallnorb-{mat_datasets.NORB_CHUNKS[1]}-cat.mat").unlink(), "file not found"),
    "wrong magic": (lambda d: _norb_matrix(d / f"smallnorb-{mat_datasets.NORB_CHUNKS[0]}-dat.mat",
                                           np.zeros((24, 2, 96, 96), np.int32)), r"int32 \(24, 2, 96, 96\); expected uint8"),
    "wrong shape": (lambda d: _norb_matrix(d / f"smallnorb-{mat_datasets.NORB_CHUNKS[0]}-info.mat",
                                           np.zeros((24, 3), np.int32)), r"\(24, 3\); expected int32 \(24, 4\)"),
    "truncated": (lambda d: _truncate(d / f"smallnorb-{mat_datasets.NORB_CHUNKS[0]}-dat.mat"), "truncated file"),
    "not norb": (lambda d: (d / f"smallnorb-{mat_datasets.NORB_CHUNKS[0]}-cat.mat").write_bytes(b"hello world!"),
                 "expected a NORB matrix"),
    "repeated cell": (lambda d: write_smallnorb(d, repeat_first=True), "1 grid cells empty, 1 repeated"),
}


@pytest.mark.parametrize("case", sorted(BAD_NORB))
def test_bad_smallnorb_is_one_line_and_writes_nothing(norb_dir, case):
    damage, match = BAD_NORB[case]
    damage(norb_dir / "small_norb")
    with pytest.raises(DatasetError, match=match) as error:
        get_dataset("smallnorb", data_dir=norb_dir)
    assert "\n" not in str(error.value)
    assert not any(p.suffix == ".npy" or ".tmp-" in p.name for p in norb_dir.iterdir())


def test_published_grids():
    assert mat_datasets.NORB_GRID == (5, 10, 9, 18, 6) and np.prod(mat_datasets.NORB_GRID) == 48_600
    assert mat_datasets.CARS3D_OBJECTS == 183 and mat_datasets.CARS3D_VIEWS == (4, 24)
