"""HDF5-backed datasets: DeepMind's ``3dshapes.h5`` and users' own files (``get_dataset("h5:PATH")``).

Both hold an HDF5 dataset ``images``, uint8 (N, H, W, C), row-major over a factor grid with the last factor fastest.
On first use the images are streamed once into a ``.npy`` beside the file (or in ``cache_dir``), written under a temp name
and renamed (``npz_store.write_npy_atomically``); batches are then read from it with positional reads
(``npz_store.DiskImages``), so the process never holds the array, let alone as float (dlib's Shapes3D holds 23.6 GB).
Why not read batches through h5py: a random batch from a chunked, compressed file decompresses one chunk per image,
h5py's fancy indexing needs sorted unique indices, and an open HDF5 handle does not survive a fork into DataLoader workers.

Own data (the format the README documents): ``images`` as above with N equal to the product of the root attributes
``factor_sizes`` (ints), named by ``factor_names`` (strings), e.g. written by h5py as ``f.attrs["factor_sizes"] = [3, 5]``.

Shapes3D (Burgess & Kim 2018, github.com/deepmind/3d-shapes): ``images`` (480000, 64, 64, 3) uint8 and ``labels``
(480000, 6) float64; factors floor hue 10, wall hue 10, object hue 10, scale 8, shape 4, orientation 15.
"""

from pathlib import Path

import numpy as np

from submission.data.errors import DatasetError
from submission.data.factor_grid import factor_strides
from submission.data.npz_datasets import StoredGridDataset, check_storage
from submission.data.npz_store import (CHUNK_BYTES, DiskImages, UnconvertedImages, cache_path, cached_npy,
                                       check_array_header, write_npy_atomically)

SHAPES3D_LAYOUTS = {480_000: (10, 10, 10, 8, 4, 15)}
SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_RELATIVE_PATH = Path("3dshapes") / "3dshapes.h5"


def open_h5(path, expected):
    """The HDF5 file at ``path`` opened read-only, or DatasetError saying it is missing or unreadable (``expected``: what)."""
    import h5py
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected {expected}")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        from submission.files import first_line
        reason = first_line(error, typed=False)
        raise DatasetError(f"{path}: not a readable HDF5 file ({reason}); expected {expected}") from None


def h5_array(handle, path, key):
    """The HDF5 dataset ``key`` of an open file, or DatasetError listing what the file holds."""
    import h5py
    member = handle.get(key)
    if not isinstance(member, h5py.Dataset):
        raise DatasetError(f"{path}: HDF5 datasets {sorted(handle.keys())}; expected a dataset {key!r}")
    return member


def _row_chunks(array):
    """``array``'s rows in slices of about CHUNK_BYTES (h5py reads each slice from disk, decompressing as it goes)."""
    rows = max(1, CHUNK_BYTES // max(1, int(np.prod(array.shape[1:])) * array.dtype.itemsize))
    for start in range(0, array.shape[0], rows):
        yield array[start:start + rows]


def h5_images_store(handle, path, key, image_shape, allowed_counts, cache_dir=None, check_only=False):
    """DiskImages of the uint8 HDF5 dataset ``key`` (checked: dtype, (N, *image_shape), N in allowed_counts).

    Converts it to ``<stem>.<key>.npy`` unless a complete conversion newer than the file exists.
    """
    images = h5_array(handle, path, key)
    source = f"{path}[{key}]"
    check_array_header(images.shape, False, images.dtype, source, np.uint8, image_shape, allowed_counts)
    target = cache_path(path, key, cache_dir)
    cached = cached_npy(target, path, np.uint8, image_shape, allowed_counts)
    if cached is not None:
        return cached
    if check_only:
        return UnconvertedImages(images.shape, source)
    write_npy_atomically(target, images.shape, np.uint8, _row_chunks(images), source)
    return DiskImages(target)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_grid_attributes(handle, path):
    """(factor_names, factor_sizes) from the file's root attributes, checked; DatasetError names what is wrong."""
    for attribute in ("factor_names", "factor_sizes"):
        if attribute not in handle.attrs:
            raise DatasetError(f"{path}: root attributes {sorted(handle.attrs)}; expected an attribute {attribute!r} "
                               f"(see README, Datasets: your own data)")
    names = [_text(name) for name in np.atleast_1d(handle.attrs["factor_names"])]
    sizes = np.atleast_1d(handle.attrs["factor_sizes"])
    if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer) or np.any(sizes < 1):
        raise DatasetError(f"{path}: factor_sizes {sizes.tolist()}; expected a list of positive integers")
    if len(names) != len(sizes):
        raise DatasetError(f"{path}: {len(names)} factor_names {names} for {len(sizes)} factor_sizes {sizes.tolist()}; "
                           f"expected one name per factor")
    return tuple(names), tuple(int(size) for size in sizes)


class OwnH5Dataset(StoredGridDataset):
    """A user's HDF5 file: ``images`` uint8 (N, 64, 64, C), C 1 or 3, in grid order; root attributes name and size the
    grid. One channel: the model needs ``model.channels = 1`` (the pipeline adds it and says so)."""

    def __init__(self, path, storage="disk", cache_dir=None, check_only=False, name=None):
        path = Path(path)
        self.name = name or f"h5:{path}"             # the registry names it (``h5:PATH``)
        check_storage(storage, self.name)  # before any conversion
        expected = "an HDF5 file with 'images' (N, H, W, C) uint8 and attributes factor_names, factor_sizes"
        with open_h5(path, expected) as handle:
            self.factor_names, sizes = read_grid_attributes(handle, path)
            images = h5_array(handle, path, "images")
            if images.ndim != 4 or images.shape[3] not in (1, 3):
                raise DatasetError(f"{path}[images]: shape {images.shape}; expected (N, H, W, C) with C 1 or 3")
            self._observation_shape = tuple(int(n) for n in images.shape[1:])
            count = int(np.prod(sizes, dtype=np.int64))
            if images.shape[0] != count:
                raise DatasetError(f"{path}[images]: {images.shape[0]:,} images; expected {count:,}, the product of "
                                   f"factor_sizes {list(sizes)}")
            if images.dtype == np.uint8 and self._observation_shape[:2] != (64, 64):
                height, width, channels = self._observation_shape
                raise DatasetError(f"{path}[images]: {height}x{width} images; expected (N, 64, 64, C) uint8 with C 1 or "
                                   f"3, the size the kit's networks take (resize the images to 64x64)")
            store = h5_images_store(handle, path, "images", self._observation_shape, (count,), cache_dir, check_only)
        self._attach(path, store, sizes, storage)


def check_label_order(labels, factor_sizes, source):
    """DatasetError unless ``labels`` (N, F) follow the grid: stepping factor k alone changes label column k alone.

    Reads F + 2 rows: row 0, the row one stride along each factor, and the last row (every label grows along the grid in
    the published file, so the last row exceeds the first wherever a factor has more than one value).
    """
    strides = factor_strides(factor_sizes)
    first, last = labels[0], labels[len(labels) - 1]
    for k, stride in enumerate(strides):
        if factor_sizes[k] < 2:
            continue
        changed = np.flatnonzero(labels[int(stride)] != first).tolist()
        if changed != [k]:
            raise DatasetError(f"{source}: row {stride} changes label columns {changed} from row 0; expected only column "
                               f"{k} (images in row-major factor order, last factor fastest)")
    grows = [k for k, size in enumerate(factor_sizes) if size > 1]
    if not np.all(last[grows] > first[grows]):
        raise DatasetError(f"{source}: last row {last.tolist()} vs first {first.tolist()}; expected every label to grow "
                           f"along the grid")


class Shapes3dH5(StoredGridDataset):
    """DeepMind's ``3dshapes.h5``: (64, 64, 3) uint8 on the grid ``[10, 10, 10, 8, 4, 15]``."""

    name = "shapes3d"
    factor_names = SHAPES3D_FACTOR_NAMES
    _observation_shape = (64, 64, 3)

    def __init__(self, path, layouts=None, storage="disk", cache_dir=None, check_only=False):
        layouts = layouts or SHAPES3D_LAYOUTS
        path = Path(path)
        check_storage(storage, self.name)  # before any conversion
        expected = ("DeepMind's 3dshapes.h5 (get it with `python -m submission.data.download shapes3d`, "
                    "or use the procedural stand-in 'shapes3d_sim')")
        with open_h5(path, expected) as handle:
            images = h5_array(handle, path, "images")
            check_array_header(images.shape, False, images.dtype, f"{path}[images]", np.uint8, (64, 64, 3), tuple(layouts))
            sizes = layouts[images.shape[0]]
            labels = h5_array(handle, path, "labels")
            if labels.shape != (images.shape[0], len(sizes)):
                raise DatasetError(f"{path}[labels]: shape {labels.shape}; expected {(images.shape[0], len(sizes))}")
            check_label_order(labels, sizes, f"{path}[labels]")  # before converting: a misordered file writes nothing
            store = h5_images_store(handle, path, "images", (64, 64, 3), tuple(layouts), cache_dir, check_only)
        self._attach(path, store, sizes, storage)

    @classmethod
    def from_data_dir(cls, data_dir, **options):
        return cls(Path(data_dir) / SHAPES3D_RELATIVE_PATH, **options)
