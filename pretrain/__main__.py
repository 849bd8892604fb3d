"""CLI: ``python -m pretrain`` trains a recipe on mpi3d_toy (or mpi3d_sim_toy when the official file is absent).

    python -m pretrain --gin_file submission/configs/pvae.gin --output DIR --budget 5m --seed 0 [--dataset mpi3d_toy]

Writes DIR/checkpoint.pt (architecture, objective name, operative gin config), DIR/config.gin and DIR/log.jsonl.
It is ``python -m submission.train`` with a different default dataset, a fallback, and no export.
"""
import sys

from submission.train import main

if __name__ == "__main__":
    sys.exit(main(prog="pretrain", pretrain=True))
