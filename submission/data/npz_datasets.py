"""File-backed datasets: the official MPI3D and dSprites npz files, read from disk per batch (RAM or GPU on request).

MPI3D (Gondal et al. 2019): ``<data_dir>/<name>/<name>.npz``, key ``images``, uint8 (N, 64, 64, 3), row-major over the factor
grid with the last factor fastest.  The layout is read off the image count, because two generations of files exist and
dlib 1.5 hard-codes the older one for toy and realistic (mislabelling today's files):

* 1,036,800 images: ``[6, 6, 2, 3, 3, 40, 40]`` (the published files);
* 460,800 images: ``[4, 4, 2, 3, 3, 40, 40]`` (the challenge-era toy and realistic files).

``mpi3d_complex`` (``<data_dir>/mpi3d_complex/mpi3d_complex.npz``, same key and grid, 460,800 images) holds real
everyday objects: colours yellow, green, olive, red; shapes coffee cup, tennis ball, croissant, beer cup.

dSprites (Matthey et al. 2017): ``<data_dir>/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``, key ``imgs``,
uint8 (737280, 64, 64) in {0, 1}; grid [1, 3, 6, 40, 32, 32] with the constant colour factor dropped, as dlib does.

Storage (``storage=``): ``"disk"`` (default; ``"mmap"`` is accepted as its old name) converts the member once to a ``.npy``
beside the npz and reads each batch's rows with positional reads, so the process holds a batch, not the file (see
``npz_store.DiskImages``); ``"memory"`` reads the whole array into RAM (12.7 GB for MPI3D); ``"cuda"`` copies it to the GPU.
"""

from pathlib import Path

import numpy as np
import torch

from submission.data.errors import DatasetError
from submission.data.factor_grid import FactorGridDataset, factor_strides
from submission.data.mpi3d_render import MPI3D_FACTOR_NAMES
from submission.data.npz_store import UnconvertedImages, open_npz_member

MPI3D_LAYOUTS = {1_036_800: (6, 6, 2, 3, 3, 40, 40), 460_800: (4, 4, 2, 3, 3, 40, 40)}
MPI3D_COMPLEX_LAYOUTS = {460_800: (4, 4, 2, 3, 3, 40, 40)}
# Value names of the published files (Gondal et al. 2019) and of mpi3d_complex (its dataset README); the challenge-era
# toy and realistic files' four colours and shapes are not documented, so they get none.
MPI3D_VALUE_NAMES = {"object_colour": ("white", "green", "red", "blue", "brown", "olive"),
                     "object_shape": ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere")}
MPI3D_COMPLEX_VALUE_NAMES = {"object_colour": ("yellow", "green", "olive", "red"),
                             "object_shape": ("coffee_cup", "tennis_ball", "croissant", "beer_cup")}
DSPRITES_LAYOUTS = {737_280: (3, 6, 40, 32, 32)}
DSPRITES_RELATIVE_PATH = Path("dsprites") / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
STORAGES = ("disk", "memory", "cuda")
STORAGE_ALIASES = {"mmap": "disk"}  # the default's name while it memory-mapped the file


def mpi3d_npz_path(name, data_dir):
    """Where an official MPI3D file lives: ``<data_dir>/<name>/<name>.npz`` (dlib's and the challenge's layout)."""
    return Path(data_dir) / name / f"{name}.npz"


def _require_file(path, name, stand_in):
    if not Path(path).is_file():
        raise DatasetError(f"{path}: file not found; expected the official {name} file "
                           f"(get it with `python -m submission.data.download {name}`, or use the procedural "
                           f"stand-in {stand_in!r})")


def check_storage(storage, name):
    """The canonical storage name, or DatasetError naming ``name``."""
    storage = STORAGE_ALIASES.get(storage, storage)
    if storage not in STORAGES:
        raise DatasetError(f"{name}: storage {storage!r}; expected one of {STORAGES}")
    return storage


class StoredGridDataset(FactorGridDataset):
    """Images of a factor grid stored row-major in a .npy (``npz_store.DiskImages``); on disk unless ``storage`` says otherwise.

    Every file-backed dataset (npz, HDF5) converts its images once to that form and then calls ``_attach``.
    """

    def _open(self, npz_path, key, image_shape, layouts, storage, cache_dir, check_only=False):
        storage = check_storage(storage, self.name)
        store = open_npz_member(npz_path, key, np.uint8, image_shape, tuple(layouts), cache_dir, check_only)
        self._attach(npz_path, store, layouts[store.shape[0]], storage)

    def _attach(self, path, store, factor_sizes, storage):
        self.path = Path(path)
        self.storage = check_storage(storage, self.name)
        self._store = store
        self.factor_sizes = tuple(int(size) for size in factor_sizes)
        self._strides = factor_strides(self.factor_sizes)
        self._in_memory = None
        if isinstance(store, UnconvertedImages):      # opened to be checked only: nothing to read, no image to give
            self.storage = "disk"
            return
        if storage == "memory":
            self._in_memory = self._store.read_all()
        elif storage == "cuda":
            self._in_memory = torch.from_numpy(self._store.read_all()).to("cuda")

    def _images(self, factors):
        return self._stored(factors @ self._strides)

    def _stored(self, index):
        """uint8 rows of the stored array (numpy), whatever the storage."""
        if self.storage == "disk":
            return self._store.take(index)
        if self.storage == "memory":
            return self._in_memory[index]
        return self._in_memory[torch.from_numpy(index).to(self._in_memory.device)].cpu().numpy()

    def sample_batch(self, batch_size, rng):
        """As the base class; with ``storage="cuda"`` the batch is gathered and returned on the GPU."""
        if self.storage != "cuda":
            return super().sample_batch(batch_size, rng)
        factors = np.stack([rng.integers(0, size, size=batch_size) for size in self.factor_sizes], axis=1).astype(np.int64)
        factors_gpu = torch.from_numpy(factors).to(self._in_memory.device)
        images = self._in_memory[factors_gpu @ torch.from_numpy(self._strides).to(factors_gpu.device)]
        images = images if images.dim() == 4 else images[..., None] * 255
        return images.permute(0, 3, 1, 2).contiguous(), factors_gpu


class Mpi3dNpz(StoredGridDataset):
    """An official MPI3D npz, layout detected from its image count (``layouts`` maps count -> factor sizes).

    ``mpi3d_complex`` is told apart by its name, never by its count: it has the challenge-era toy file's 460,800 images
    but other objects.  ``value_names`` labels the colour and shape values where the layout is known.
    """

    factor_names = MPI3D_FACTOR_NAMES
    _observation_shape = (64, 64, 3)

    def __init__(self, npz_path, name="mpi3d", layouts=None, storage="disk", cache_dir=None, check_only=False):
        self.name = name
        _require_file(npz_path, name, "mpi3d_sim_toy" if name != "mpi3d_realistic" else "mpi3d_sim_realistic")
        complex_objects = name == "mpi3d_complex"
        layouts = layouts or (MPI3D_COMPLEX_LAYOUTS if complex_objects else MPI3D_LAYOUTS)
        self._open(npz_path, "images", (64, 64, 3), layouts, storage, cache_dir, check_only)
        known = MPI3D_COMPLEX_VALUE_NAMES if complex_objects else MPI3D_VALUE_NAMES
        self.value_names = {factor: values for factor, values in known.items()
                            if len(values) == self.factor_sizes[MPI3D_FACTOR_NAMES.index(factor)]}

    @classmethod
    def from_data_dir(cls, name, data_dir, **options):
        return cls(mpi3d_npz_path(name, data_dir), name=name, **options)


class DspritesNpz(StoredGridDataset):
    """The official dSprites npz; uint8 (64, 64, 1) images in {0, 255} (the file's {0, 1} scaled, so /255 gives dlib's floats)."""

    _observation_shape = (64, 64, 1)

    def __init__(self, npz_path, layouts=None, storage="disk", cache_dir=None, check_only=False):
        self.name = "dsprites_full"
        _require_file(npz_path, self.name, "dsprites_sim")
        self._open(npz_path, "imgs", (64, 64), layouts or DSPRITES_LAYOUTS, storage, cache_dir, check_only)

    @classmethod
    def from_data_dir(cls, data_dir, **options):
        return cls(Path(data_dir) / DSPRITES_RELATIVE_PATH, **options)

    def _images(self, factors):
        images = self._stored(factors @ self._strides)
        # Why a multiply rather than a lookup: the file holds exactly {0, 1}, and 255 * {0, 1} stays in uint8.
        return images[..., None] * np.uint8(255)
