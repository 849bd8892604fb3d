"""Datasets for training and evaluation, all behind disentanglement_lib's GroundTruthData contract.

    from submission.data import get_dataset
    ds = get_dataset("mpi3d_sim_toy")
    images, factors = ds.sample_batch(64, np.random.default_rng(0))   # torch uint8 NCHW, int64 (N, F)

See ARCHITECTURE.md ("Datasets") for the contract.
"""

from submission.data.errors import DatasetError
from submission.data.registry import DATASET_NAMES, default_data_dir, get_dataset, is_dataset_name

__all__ = ["DATASET_NAMES", "DatasetError", "default_data_dir", "get_dataset", "is_dataset_name"]
