"""Dataset names -> dataset objects: the one place that knows which class serves which name."""

import os
from pathlib import Path

from submission.data.errors import DatasetError

REPO_ROOT = Path(__file__).resolve().parents[2]

FILE_DATASETS = ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "dsprites_full")
PROCEDURAL_DATASETS = ("mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim")
DATASET_NAMES = FILE_DATASETS + PROCEDURAL_DATASETS


def default_data_dir():
    """``$DISENTANGLEMENT_LIB_DATA`` if set (the challenge's variable), else ``<repo>/scratch/dataset`` (the starter kit's)."""
    return Path(os.environ.get("DISENTANGLEMENT_LIB_DATA") or REPO_ROOT / "scratch" / "dataset")


def get_dataset(name, data_dir=None, **options):
    """The dataset called ``name``; ``options`` go to file-backed loaders (``storage``, ``cache_dir``).

    Procedural datasets take no options and need no file.
    """
    if name == "mpi3d_sim_toy" or name == "mpi3d_sim_realistic":
        from submission.data.mpi3d_render import Mpi3dSim
        return Mpi3dSim(style=name[len("mpi3d_sim_"):])
    if name == "dsprites_sim":
        from submission.data.dsprites_render import DspritesSim
        return DspritesSim()
    if name in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real"):
        from submission.data.npz_datasets import Mpi3dNpz
        return Mpi3dNpz.from_data_dir(name, data_dir or default_data_dir(), **options)
    if name == "dsprites_full":
        from submission.data.npz_datasets import DspritesNpz
        return DspritesNpz.from_data_dir(data_dir or default_data_dir(), **options)
    raise DatasetError(f"unknown dataset name {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
