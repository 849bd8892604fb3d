"""Pretraining: the fine-tuning trainer run on the pretraining dataset (mpi3d_toy, else mpi3d_sim_toy)."""
