"""Dataset names -> dataset objects: the one place that knows which class serves which name.

Besides the names below, ``h5:PATH`` opens a user's own HDF5 file (format: README, "Datasets"; ``h5_datasets``).
"""

import os
from pathlib import Path

from submission.data.errors import DatasetError

REPO_ROOT = Path(__file__).resolve().parents[2]

FILE_DATASETS = ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "mpi3d_complex", "dsprites_full", "dsprites_noshape",
                 "color_dsprites", "noisy_dsprites", "scream_dsprites", "shapes3d", "cars3d", "smallnorb")
PROCEDURAL_DATASETS = ("mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim", "shapes3d_sim")
DATASET_NAMES = FILE_DATASETS + PROCEDURAL_DATASETS
OWN_DATA_PREFIX = "h5:"


def default_data_dir():
    """``$DISENTANGLEMENT_LIB_DATA`` if set (the challenge's variable), else ``<repo>/scratch/dataset`` (the starter kit's)."""
    return Path(os.environ.get("DISENTANGLEMENT_LIB_DATA") or REPO_ROOT / "scratch" / "dataset")


def is_dataset_name(name):
    """Whether ``get_dataset`` knows ``name``: a registered name, or ``h5:PATH`` (whether the file is usable is its business)."""
    return name in DATASET_NAMES or (isinstance(name, str) and name.startswith(OWN_DATA_PREFIX) and
                                     len(name) > len(OWN_DATA_PREFIX))


def standin_version(name):
    """The renderer version of a procedural stand-in (``mpi3d_sim_*``: 2, whose arm turns about its base; the others: 1),
    or None for a file-backed dataset.  Every result made on a stand-in records it."""
    return get_dataset(name).standin_version if name in PROCEDURAL_DATASETS else None


def standin_versions(names):
    """{name: version} for the procedural stand-ins among ``names`` (for a run's record)."""
    return {name: standin_version(name) for name in dict.fromkeys(names) if name in PROCEDURAL_DATASETS}


def recorded_standins(record):
    """The stand-in versions a result was made on: a study run's ``standins``, or an ``evaluation_run.json``'s
    ``dataset`` and ``standin_version``; a record from before versions were recorded was made on version 1 of every
    stand-in it names (``dataset``, ``pretrain_dataset``)."""
    if record.get("standins") is not None:
        return dict(record["standins"])
    if record.get("standin_version") is not None:
        return {record["dataset"]: record["standin_version"]}
    names = [record.get(key) for key in ("dataset", "pretrain_dataset")]
    return {name: 1 for name in dict.fromkeys(names) if name in PROCEDURAL_DATASETS}


def get_dataset(name, data_dir=None, check_only=False, **options):
    """The dataset called ``name``; ``options`` go to file-backed loaders (``storage``, ``cache_dir``).

    ``check_only``: a file-backed dataset checks its file (headers, shapes, sizes, label order) and converts and reads
    nothing (how the pipeline validates a job before writing anything). Procedural datasets take no options and need no
    file.  ``h5:PATH`` is a user's own HDF5 file (``data_dir`` unused).
    """
    if check_only and name not in PROCEDURAL_DATASETS:
        options["check_only"] = True
    if name == "mpi3d_sim_toy" or name == "mpi3d_sim_realistic":
        from submission.data.mpi3d_render import Mpi3dSim
        return Mpi3dSim(style=name[len("mpi3d_sim_"):])
    if name == "dsprites_sim":
        from submission.data.dsprites_render import DspritesSim
        return DspritesSim()
    if name == "shapes3d_sim":
        from submission.data.shapes3d_render import Shapes3dSim
        return Shapes3dSim()
    if name in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "mpi3d_complex"):
        from submission.data.npz_datasets import Mpi3dNpz
        return Mpi3dNpz.from_data_dir(name, data_dir or default_data_dir(), **options)
    if name == "dsprites_full":
        from submission.data.npz_datasets import DspritesNpz
        return DspritesNpz.from_data_dir(data_dir or default_data_dir(), **options)
    if name in ("dsprites_noshape", "color_dsprites", "noisy_dsprites", "scream_dsprites"):
        from submission.data.dsprites_variants import make_variant
        return make_variant(name, data_dir or default_data_dir(), **options)
    if name == "shapes3d":
        from submission.data.h5_datasets import Shapes3dH5
        return Shapes3dH5.from_data_dir(data_dir or default_data_dir(), **options)
    if name == "cars3d":
        from submission.data.mat_datasets import Cars3d
        return Cars3d.from_data_dir(data_dir or default_data_dir(), **options)
    if name == "smallnorb":
        from submission.data.mat_datasets import SmallNorb
        return SmallNorb.from_data_dir(data_dir or default_data_dir(), **options)
    if is_dataset_name(name) and name.startswith(OWN_DATA_PREFIX):
        from submission.data.h5_datasets import OwnH5Dataset
        path = Path(name[len(OWN_DATA_PREFIX):]).expanduser()
        return OwnH5Dataset(path, name=OWN_DATA_PREFIX + str(path), **options)
    raise DatasetError(f"unknown dataset name {name!r}; expected one of: {', '.join(DATASET_NAMES)}, "
                       f"or h5:PATH for your own HDF5 file")
