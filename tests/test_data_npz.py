"""Official-format npz files: round trip through the on-disk loader, layout by count, and every bad input."""

import os
import pickle
import threading
import zipfile

import numpy as np
import pytest

from submission.data import DatasetError, get_dataset
from submission.data.npz_datasets import MPI3D_LAYOUTS, DspritesNpz, Mpi3dNpz
from submission.data.npz_store import DiskImages
from npz_files import write_npz

SUBGRID = [[1, 4], [0, 5], [1], [2], [0, 2], [3, 9, 20], [0, 39]]
SUBGRID_SIZES = tuple(len(v) for v in SUBGRID)
COUNT = int(np.prod(SUBGRID_SIZES))


def _to_full_grid(sub_factors, values):
    return np.stack([np.asarray(v)[sub_factors[:, i]] for i, v in enumerate(values)], axis=1)


def _cache_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.suffix != ".npz")


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_through_the_npz_gives_the_renderer_images(tmp_path, compress):
    sim = get_dataset("mpi3d_sim_realistic")
    path = tmp_path / "mpi3d_toy" / "mpi3d_toy.npz"
    write_npz(sim, path, SUBGRID, compress=compress)
    ds = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES})
    assert ds.factors_num_values == list(SUBGRID_SIZES)
    sub = ds.sample_factors(40, np.random.RandomState(0))
    np.testing.assert_array_equal(ds.images_from_factors(sub), sim.images_from_factors(_to_full_grid(sub, SUBGRID)))
    assert (path.parent / "mpi3d_toy.images.npy").is_file()
    assert ds.storage == "disk" and ds._in_memory is None  # read from the .npy per batch, nothing held
    # The second load reuses the cache instead of converting again.
    mtime = (path.parent / "mpi3d_toy.images.npy").stat().st_mtime_ns
    again = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES}, storage="memory")
    assert (path.parent / "mpi3d_toy.images.npy").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.images_from_factors(sub), ds.images_from_factors(sub))


def test_registry_reads_the_data_dir(tmp_path, monkeypatch):
    write_npz(get_dataset("mpi3d_sim_toy"), tmp_path / "mpi3d_real" / "mpi3d_real.npz", SUBGRID)
    monkeypatch.setattr("submission.data.npz_datasets.MPI3D_LAYOUTS", {COUNT: SUBGRID_SIZES})
    monkeypatch.setenv("DISENTANGLEMENT_LIB_DATA", str(tmp_path))
    ds = get_dataset("mpi3d_real")
    images, factors = ds.sample_batch(8, np.random.default_rng(0))
    assert tuple(images.shape) == (8, 3, 64, 64) and tuple(factors.shape) == (8, 7)


def test_dsprites_round_trip(tmp_path):
    sim = get_dataset("dsprites_sim")
    values = [[0, 1, 2], [5], [0, 10], [3, 30], [0, 31]]
    path = tmp_path / "d.npz"
    write_npz(sim, path, values)
    with np.load(path) as official_format:
        assert set(official_format.files) == {"imgs", "latents_classes", "latents_values"}
        assert set(np.unique(official_format["imgs"])) <= {0, 1}
    sizes = tuple(len(v) for v in values)
    ds = DspritesNpz(path, layouts={int(np.prod(sizes)): sizes})
    assert ds.observation_shape == [64, 64, 1]
    sub = ds.sample_factors(20, np.random.RandomState(1))
    np.testing.assert_array_equal(ds.images_from_factors(sub), sim.images_from_factors(_to_full_grid(sub, values)))


def test_published_layouts_are_detected_by_count():
    assert MPI3D_LAYOUTS[1_036_800] == (6, 6, 2, 3, 3, 40, 40) and np.prod(MPI3D_LAYOUTS[1_036_800]) == 1_036_800
    assert MPI3D_LAYOUTS[460_800] == (4, 4, 2, 3, 3, 40, 40) and np.prod(MPI3D_LAYOUTS[460_800]) == 460_800


def _write_member(path, key, array, compress=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
        with archive.open(key + ".npy", "w") as member:
            np.lib.format.write_array(member, array)


def _assert_clean_error(path, match, **kwargs):
    with pytest.raises(DatasetError, match=match) as error:
        Mpi3dNpz(path, **kwargs)
    assert "\n" not in str(error.value) and str(path.name) in str(error.value)
    assert _cache_files(path.parent) == []


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        get_dataset("mpi3d_toy", data_dir=tmp_path)
    message = str(error.value)
    assert "mpi3d_toy.npz" in message and "submission.data.download mpi3d_toy" in message and "mpi3d_sim_toy" in message


def test_wrong_image_count_names_the_count_and_the_expected_ones(tmp_path):
    path = tmp_path / "x.npz"
    _write_member(path, "images", np.zeros((5, 64, 64, 3), np.uint8))
    _assert_clean_error(path, r"5 images; expected one of 1,036,800, 460,800")


@pytest.mark.parametrize("array, match", [(np.zeros((4, 64, 64, 3), np.float32), "dtype float32; expected uint8"),
                                          (np.zeros((4, 32, 32, 3), np.uint8), r"shape \(4, 32, 32, 3\)"),
                                          (np.zeros((4, 64, 64), np.uint8), r"shape \(4, 64, 64\)")])
def test_wrong_dtype_or_shape(tmp_path, array, match):
    path = tmp_path / "x.npz"
    _write_member(path, "images", array)
    _assert_clean_error(path, match, layouts={4: (2, 2)})


def test_missing_key(tmp_path):
    path = tmp_path / "x.npz"
    _write_member(path, "pictures", np.zeros((4, 64, 64, 3), np.uint8))
    _assert_clean_error(path, "expected a key 'images'", layouts={4: (2, 2)})


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_npz(tmp_path, compress):
    path = tmp_path / "x.npz"
    _write_member(path, "images", np.arange(4 * 64 * 64 * 3).astype(np.uint8).reshape(4, 64, 64, 3), compress)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_clean_error(path, "x.npz", layouts={4: (2, 2)})


@pytest.mark.parametrize("compress", [False, True])
def test_corrupt_npz_payload_fails_its_crc(tmp_path, compress):
    path = tmp_path / "x.npz"
    _write_member(path, "images", np.random.RandomState(0).randint(0, 255, (4, 64, 64, 3)).astype(np.uint8), compress)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the member's data
    path.write_bytes(bytes(data))
    _assert_clean_error(path, "x.npz", layouts={4: (2, 2)})


def test_not_a_zip(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"this is not an npz")
    _assert_clean_error(path, "not a readable npz")


def test_unwritable_cache_directory(tmp_path):
    path = tmp_path / "x.npz"
    _write_member(path, "images", np.zeros((4, 64, 64, 3), np.uint8))
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a cache_dir under a regular file cannot be created, even by root
    with pytest.raises(DatasetError, match="cannot write the .npy cache") as error:
        Mpi3dNpz(path, layouts={4: (2, 2)}, cache_dir=blocker / "cache")
    assert "a_file" in str(error.value) and "\n" not in str(error.value)
    assert _cache_files(tmp_path) == ["a_file"]


def test_interrupted_conversion_starts_afresh(tmp_path):
    path = tmp_path / "x.npz"
    images = np.random.RandomState(0).randint(0, 255, (4, 64, 64, 3)).astype(np.uint8)
    _write_member(path, "images", images)
    dead_pid = 2 ** 22 + 12345  # above the default pid_max: no such process
    stale_temp = tmp_path / f".x.images.npy.tmp-{dead_pid}-k3x9"      # what a killed atomic write leaves
    live_temp = tmp_path / f".x.images.npy.tmp-{os.getpid()}-a1b2"    # a write in progress (this process): kept
    stale_temp.write_bytes(b"half")
    live_temp.write_bytes(b"busy")
    ds = Mpi3dNpz(path, layouts={4: (2, 2)})
    assert not stale_temp.exists() and live_temp.exists()
    np.testing.assert_array_equal(ds.images_from_factors(np.array([[1, 0], [0, 1]])), images[[2, 1]])
    # A cache cut short (say, disk full before a rename we did not make) is detected by size and rebuilt.
    cache = tmp_path / "x.images.npy"
    cache.write_bytes(cache.read_bytes()[:1000])
    os.utime(cache, (path.stat().st_mtime + 10,) * 2)
    ds = Mpi3dNpz(path, layouts={4: (2, 2)})
    np.testing.assert_array_equal(ds.images_from_factors(np.array([[1, 1]])), images[[3]])


def test_bad_storage_mode(tmp_path):
    path = tmp_path / "x.npz"
    _write_member(path, "images", np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match="storage 'gpu'"):
        Mpi3dNpz(path, layouts={4: (2, 2)}, storage="gpu")


def _small_npy(tmp_path, count=50, row_shape=(64, 64, 3)):
    images = np.random.RandomState(3).randint(0, 256, (count, *row_shape)).astype(np.uint8)
    path = tmp_path / "small.npy"
    np.save(path, images)
    return path, np.load(path)  # the reference: numpy's own reader of the same file


@pytest.mark.parametrize("row_shape", [(64, 64, 3), (64, 64), (3, 5)])
def test_disk_reads_are_bit_identical_to_np_load(tmp_path, row_shape):
    path, reference = _small_npy(tmp_path, row_shape=row_shape)
    store = DiskImages(path)
    assert store.shape == reference.shape and store.dtype == reference.dtype
    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 50, 64),                      # random, with repeats
             np.array([7, 7, 7, 3, 3, 49, 0, 7]),          # repeated and unsorted
             np.arange(50)[::-1],                          # one run, requested backwards
             np.array([10, 11, 12, 40, 41, 0, 1, 2, 3]),   # several consecutive runs, out of order
             np.array([49]), np.array([0]), np.arange(50),  # the edges and the whole file
             rng.integers(0, 50, (4, 6))]                  # a 2-D index array, as numpy fancy indexing allows
    for _ in range(3):  # again, through the reused staging buffer
        for indices in cases:
            got = store.take(indices)
            np.testing.assert_array_equal(got, reference[indices])
            assert got.dtype == reference.dtype and got.shape == reference[indices].shape
    first = store.take(np.array([1, 2]))
    store.take(np.array([30, 31]))
    np.testing.assert_array_equal(first, reference[[1, 2]])  # results are copies, not views of the staging buffer
    assert store.take(np.array([], np.int64)).shape == (0, *row_shape)
    np.testing.assert_array_equal(store.read_all(chunk_rows=7), reference)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(store)).take(cases[0]), reference[cases[0]])
    with pytest.raises(IndexError):
        store.take(np.array([50]))
    with pytest.raises(IndexError):
        store.take(np.array([-1]))


def test_disk_reads_from_threads(tmp_path):
    path, reference = _small_npy(tmp_path)
    store, failures = DiskImages(path), []

    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            indices = rng.integers(0, 50, int(rng.integers(1, 80)))
            if not np.array_equal(store.take(indices), reference[indices]):
                failures.append(seed)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_disk_storage_never_maps_the_file_and_mmap_is_an_alias(tmp_path):
    sim = get_dataset("mpi3d_sim_toy")
    path = tmp_path / "m" / "m.npz"
    write_npz(sim, path, SUBGRID)
    ds = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES})
    old_name = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES}, storage="mmap")
    in_ram = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES}, storage="memory")
    assert ds.storage == old_name.storage == "disk" and in_ram.storage == "memory"
    sub = ds.sample_factors(100, np.random.RandomState(5))
    with np.load(path) as archive:
        np.testing.assert_array_equal(ds.images_from_factors(sub), archive["images"][sub @ ds._strides])
    np.testing.assert_array_equal(old_name.images_from_factors(sub), in_ram.images_from_factors(sub))
    images, factors = ds.sample_batch(16, np.random.default_rng(2))
    expected, _ = in_ram.sample_batch(16, np.random.default_rng(2))
    assert images.dtype == expected.dtype and np.array_equal(images.numpy(), expected.numpy())
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            assert "m.images.npy" not in maps.read()


COMPLEX_SUBGRID = [[0, 1, 2, 3], [0, 1, 2, 3], [1], [0], [2], [5], [0, 39]]
COMPLEX_SIZES = tuple(len(v) for v in COMPLEX_SUBGRID)


def test_mpi3d_complex_is_told_apart_by_name_not_by_count(tmp_path, monkeypatch):
    sim = get_dataset("mpi3d_sim_toy")
    for name in ("mpi3d_complex", "mpi3d_toy"):
        write_npz(sim, tmp_path / name / f"{name}.npz", COMPLEX_SUBGRID)
    count = int(np.prod(COMPLEX_SIZES))
    monkeypatch.setattr("submission.data.npz_datasets.MPI3D_COMPLEX_LAYOUTS", {count: COMPLEX_SIZES})
    monkeypatch.setattr("submission.data.npz_datasets.MPI3D_LAYOUTS", {count: COMPLEX_SIZES})
    complex_objects = get_dataset("mpi3d_complex", data_dir=tmp_path)
    assert complex_objects.value_names == {"object_colour": ("yellow", "green", "olive", "red"),
                                           "object_shape": ("coffee_cup", "tennis_ball", "croissant", "beer_cup")}
    assert complex_objects.factor_names[:2] == ("object_colour", "object_shape")
    # Known indices: sub-factor rows map to the full grid through COMPLEX_SUBGRID, read from the file row-major.
    sub = np.array([[1, 2, 0, 0, 0, 0, 1], [3, 0, 0, 0, 0, 0, 0]])
    full = np.stack([np.asarray(v)[sub[:, i]] for i, v in enumerate(COMPLEX_SUBGRID)], axis=1)
    np.testing.assert_array_equal(complex_objects.images_from_factors(sub), sim.images_from_factors(full))
    # The same count under the toy name keeps toy semantics: no complex value names.
    assert get_dataset("mpi3d_toy", data_dir=tmp_path).value_names == {}


def test_mpi3d_complex_layout_and_its_count_check(tmp_path):
    from submission.data.npz_datasets import MPI3D_COMPLEX_LAYOUTS
    assert MPI3D_COMPLEX_LAYOUTS == {460_800: (4, 4, 2, 3, 3, 40, 40)}
    path = tmp_path / "mpi3d_complex" / "mpi3d_complex.npz"
    path.parent.mkdir()
    _write_member(path, "images", np.zeros((5, 64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"5 images; expected one of 460,800$"):
        get_dataset("mpi3d_complex", data_dir=tmp_path)


def test_check_only_reads_headers_writes_nothing_and_cannot_be_sampled(tmp_path):
    path = tmp_path / "mpi3d_toy" / "mpi3d_toy.npz"
    write_npz(get_dataset("mpi3d_sim_toy"), path, SUBGRID)
    ds = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES}, storage="memory", check_only=True)
    assert ds.factors_num_values == list(SUBGRID_SIZES) and _cache_files(path.parent) == []
    with pytest.raises(DatasetError, match=r"mpi3d_toy\.npz\[images\]: opened to be checked only"):
        ds.sample_batch(2, np.random.default_rng(0))
    bad = tmp_path / "bad" / "x.npz"
    bad.parent.mkdir()
    _write_member(bad, "images", np.zeros((5, 64, 64, 3), np.uint8))
    _assert_clean_error(bad, r"5 images; expected one of 1,036,800, 460,800", check_only=True)
    converted = Mpi3dNpz(path, layouts={COUNT: SUBGRID_SIZES})          # without check_only: converted and readable
    assert _cache_files(path.parent) == ["mpi3d_toy.images.npy"] and converted.sample_batch(2, np.random.default_rng(0))
