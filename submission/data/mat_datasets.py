"""Cars3D and SmallNORB from their published files, in the layout disentanglement_lib 1.5 expects.

Cars3D (Reed et al. 2015, "Deep Visual Analogy-Making"; www.scottreed.info): ``<data_dir>/cars/*.mat``, one file per car
model, each with ``im`` uint8 (H, W, 3, 24 azimuths, 4 elevations).  dlib's grid: elevation 4, azimuth 24, object 183
(object fastest); an object's index is its file's position in the directory listing, which we sort (dlib's listing order is
the file system's).  Images are resized to 64x64 with a Lanczos filter (dlib: PIL thumbnail, ANTIALIAS).

SmallNORB (LeCun et al. 2004; cs.nyu.edu/~ylclab/data/norb-v1.0-small/): ``<data_dir>/small_norb/
smallnorb-{5x46789x9x18x6x2x96x96-training,5x01235x9x18x6x2x96x96-testing}-{dat,cat,info}.mat`` in NORB's binary matrix
format.  dlib stacks both halves (48,600 images), keeps the first camera, resizes 96 -> 64 (Lanczos), and takes the factors
category 5, instance 10, elevation 9, azimuth 18 (the file's 0, 2, ..., 34 halved), lighting 6; the instance is not a
latent factor but drawn at random per image, so the factors are ``[5, 9, 18, 6]``.

Both convert once into a .npy in grid order (uint8; 216 MB and 199 MB, built in RAM as uint8, never float), written under a
temp name and renamed, then read per batch from disk (``npz_store.DiskImages``).
"""

from pathlib import Path

import numpy as np

from submission.data.errors import DatasetError
from submission.data.factor_grid import RandomGivenFactors, factor_strides
from submission.data.npz_datasets import StoredGridDataset, check_storage
from submission.data.npz_store import (DiskImages, UnconvertedImages, cache_path, cached_npy,
                                       write_npy_atomically)

CARS3D_OBJECTS = 183
CARS3D_VIEWS = (4, 24)  # elevation, azimuth
CARS3D_RELATIVE_PATH = Path("cars")
NORB_RELATIVE_DIR = Path("small_norb")
NORB_CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
NORB_GRID = (5, 10, 9, 18, 6)  # category, instance, elevation, azimuth, lighting (the stored grid)
NORB_LATENT = (0, 2, 3, 4)     # dlib's latent_factor_indices: the instance is drawn at random
# NORB binary matrix magic numbers (the dataset's README): element type of the data that follows.
NORB_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}


def resize_64(image):
    """uint8 (H, W[, C]) -> (64, 64[, C]) with PIL's Lanczos filter (dlib's ANTIALIAS)."""
    from PIL import Image
    return np.asarray(Image.fromarray(image).resize((64, 64), Image.LANCZOS))


def _cached_or_convert(source, target, shape, build, check_only=False):
    """DiskImages of ``target``, built by ``build() -> uint8 array of shape`` unless a complete newer conversion exists."""
    cached = cached_npy(target, source, np.uint8, shape[1:], (shape[0],))
    if cached is not None:
        return cached
    if check_only:
        return UnconvertedImages(shape, str(source))
    images = build()
    write_npy_atomically(target, images.shape, np.uint8, [images], source)
    return DiskImages(target)


# --- Cars3D -----------------------------------------------------------------------------------------------------------

def read_car(path):
    """(24, 4, 64, 64, 3) uint8 views of one car file, indexed [azimuth, elevation]; DatasetError if it is not one."""
    import scipy.io
    try:
        contents = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable .mat file ({error}); expected a Cars3D mesh file") from None
    if "im" not in contents:
        raise DatasetError(f"{path}: keys {sorted(k for k in contents if not k.startswith('__'))}; expected 'im'")
    views = contents["im"]
    elevations, azimuths = CARS3D_VIEWS
    if views.dtype != np.uint8 or views.ndim != 5 or views.shape[2:] != (3, azimuths, elevations):
        raise DatasetError(f"{path}[im]: {views.dtype} {views.shape}; expected uint8 (H, W, 3, {azimuths}, {elevations})")
    views = np.einsum("hwcae->aehwc", views)  # as dlib: (azimuth, elevation, H, W, 3)
    return np.stack([[resize_64(view) for view in row] for row in views])


def car_files(directory):
    """The sorted .mat files of the Cars3D directory, checked for their count."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: directory not found; expected the {CARS3D_OBJECTS} Cars3D .mat files "
                           f"(by hand: www.scottreed.info/files/nips2015-analogy-data.tar.gz, its data/cars/)")
    files = sorted(p for p in directory.iterdir() if p.name.endswith(".mat"))
    if len(files) != CARS3D_OBJECTS:
        raise DatasetError(f"{directory}: {len(files)} .mat files; expected {CARS3D_OBJECTS}, one per car")
    return files


def build_cars3d(files):
    """uint8 (4 * 24 * objects, 64, 64, 3) on the grid [elevation, azimuth, object], object fastest."""
    elevations, azimuths = CARS3D_VIEWS
    grid = np.zeros((elevations, azimuths, len(files), 64, 64, 3), np.uint8)
    for index, path in enumerate(files):
        grid[:, :, index] = read_car(path).transpose(1, 0, 2, 3, 4)
    return grid.reshape(-1, 64, 64, 3)


class Cars3d(StoredGridDataset):
    """Cars3D on dlib's grid ``[4, 24, 183]`` (elevation, azimuth, object), (64, 64, 3) uint8."""

    name = "cars3d"
    factor_names = ("elevation", "azimuth", "object")
    _observation_shape = (64, 64, 3)

    def __init__(self, directory, storage="disk", cache_dir=None, check_only=False):
        directory = Path(directory)
        check_storage(storage, self.name)  # before any conversion
        files = car_files(directory)
        sizes = (*CARS3D_VIEWS, len(files))
        target = cache_path(directory, "images", cache_dir)
        store = _cached_or_convert(directory, target, (int(np.prod(sizes)), 64, 64, 3), lambda: build_cars3d(files),
                                   check_only)
        self._attach(directory, store, sizes, storage)

    @classmethod
    def from_data_dir(cls, data_dir, **options):
        return cls(Path(data_dir) / CARS3D_RELATIVE_PATH, **options)


# --- SmallNORB --------------------------------------------------------------------------------------------------------

def read_norb_matrix(path, expected_dtype, expected_shape):
    """A NORB binary matrix (memory-mapped, not read into RAM), checked for its type and shape."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected a SmallNORB file "
                           f"(by hand: cs.nyu.edu/~ylclab/data/norb-v1.0-small/, gunzipped into small_norb/)")
    head = np.fromfile(path, np.int32, count=5)
    if len(head) < 2 or head[0] not in NORB_DTYPES:
        raise DatasetError(f"{path}: magic {head[0] if len(head) else 'none'}; expected a NORB matrix "
                           f"({', '.join(map(hex, NORB_DTYPES))})")
    ndim = int(head[1])
    dims = tuple(int(d) for d in np.fromfile(path, np.int32, count=max(3, ndim), offset=8)[:ndim])
    dtype = NORB_DTYPES[int(head[0])]
    if dtype != expected_dtype or dims != tuple(expected_shape):
        raise DatasetError(f"{path}: {np.dtype(dtype)} {dims}; expected {np.dtype(expected_dtype)} {tuple(expected_shape)}")
    offset = 8 + 4 * max(3, ndim)
    expected_bytes = offset + int(np.prod(dims)) * np.dtype(dtype).itemsize
    if path.stat().st_size != expected_bytes:
        raise DatasetError(f"{path}: {path.stat().st_size:,} bytes; expected {expected_bytes:,} (truncated file?)")
    return np.memmap(path, dtype, "r", offset=offset, shape=dims)


def norb_factors(categories, info):
    """(N, 5) stored-grid factors [category, instance, elevation, azimuth / 2, lighting] of NORB's cat and info."""
    factors = np.column_stack([categories, info]).astype(np.int64)
    factors[:, 3] //= 2  # azimuths are 0, 2, ..., 34
    return factors


def build_smallnorb(directory, chunk_size):
    """uint8 (48600, 64, 64, 1) on NORB_GRID, from both halves' first camera; DatasetError unless each cell is filled once."""
    count = int(np.prod(NORB_GRID))
    images = np.zeros((count, 64, 64, 1), np.uint8)
    filled = np.zeros(count, np.int64)
    strides = factor_strides(NORB_GRID)
    for chunk in NORB_CHUNKS:
        stem = Path(directory) / f"smallnorb-{chunk}"
        dat = read_norb_matrix(f"{stem}-dat.mat", np.uint8, (chunk_size, 2, 96, 96))
        categories = read_norb_matrix(f"{stem}-cat.mat", np.int32, (chunk_size,))
        info = read_norb_matrix(f"{stem}-info.mat", np.int32, (chunk_size, 4))
        factors = norb_factors(categories, info)
        if np.any(factors < 0) or np.any(factors >= np.array(NORB_GRID)):
            bad = factors[np.any((factors < 0) | (factors >= np.array(NORB_GRID)), axis=1)][0].tolist()
            raise DatasetError(f"{stem}-info.mat: factors {bad}; expected each below {list(NORB_GRID)}")
        rows = factors @ strides
        np.add.at(filled, rows, 1)
        for row, image in zip(rows, dat[:, 0]):
            images[row, :, :, 0] = resize_64(np.asarray(image))
    if np.any(filled != 1):
        raise DatasetError(f"{directory}: {int(np.sum(filled == 0))} grid cells empty, {int(np.sum(filled > 1))} "
                           f"repeated; expected each of the {count:,} factor combinations once")
    return images


class SmallNorb(RandomGivenFactors):
    """SmallNORB as dlib serves it: factors category 5, elevation 9, azimuth 18, lighting 6; instance drawn per image."""

    name = "smallnorb"
    factor_names = ("category", "elevation", "azimuth", "lighting")
    _observation_shape = (64, 64, 1)

    def __init__(self, directory, storage="disk", cache_dir=None, check_only=False):
        if storage not in ("disk", "mmap"):
            raise DatasetError(f"{self.name}: storage {storage!r}; expected 'disk'")
        self.path = Path(directory)
        if not self.path.is_dir():
            raise DatasetError(f"{self.path}: directory not found; expected the six SmallNORB files "
                               f"(by hand: cs.nyu.edu/~ylclab/data/norb-v1.0-small/, gunzipped into small_norb/)")
        count = int(np.prod(NORB_GRID))
        newest = max(self.path.iterdir(), key=lambda p: p.stat().st_mtime, default=self.path)
        # Each half of the published set holds half of the grid (24,300 images).
        self._store = _cached_or_convert(newest, cache_path(self.path, "images", cache_dir), (count, 64, 64, 1),
                                         lambda: build_smallnorb(self.path, count // len(NORB_CHUNKS)), check_only)
        self.factor_sizes = tuple(NORB_GRID[i] for i in NORB_LATENT)
        self._full_sizes = tuple(NORB_GRID)
        self._strides = factor_strides(NORB_GRID)

    @classmethod
    def from_data_dir(cls, data_dir, **options):
        return cls(Path(data_dir) / NORB_RELATIVE_DIR, **options)

    def render(self, factors, random_state):
        """dlib's draw: the instance, uniform over 10, from ``random_state``; then the stored image of the full factors."""
        instance = random_state.randint(self._full_sizes[1], size=len(factors))
        full = np.insert(factors, 1, instance, axis=1)
        return self._store.take(full @ self._strides)
