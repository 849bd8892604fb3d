"""Training speed at batch 64: end-to-end (data sampling + forward + loss + backward + Adam) against the bare model step
(the same on one fixed batch), for both architectures, in fp32 and bf16. Prints medians over repeats.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py [--dataset mpi3d_sim_toy] [--steps 30] [--repeats 3]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from submission.data import get_dataset  # noqa: E402
from submission.models import make_model  # noqa: E402
from submission.objectives import build_objective  # noqa: E402
from submission.trainer import Trainer, seed_everything  # noqa: E402

CASES = [("higgins", "pvae", "pvae"), ("higgins", "vae", "beta_vae"), ("tcvae_entry", "vae", "betatcvae")]


def rate(step_fn, steps, repeats):
    for _ in range(5):
        step_fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step_fn()
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mpi3d_sim_toy")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = get_dataset(args.dataset)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {args.dataset}, batch 64")
    print(f"{'architecture':12s} {'objective':10s} {'precision':9s} {'bare it/s':>9s} {'e2e it/s':>9s} "
          f"{'e2e img/s':>9s} {'e2e/bare':>8s}")
    for architecture, kind, objective in CASES:
        for precision in ("fp32", "bf16"):
            rng = seed_everything(0)
            model = make_model(kind=kind, architecture=architecture, latent_dim=20 if objective == "betatcvae" else 10)
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(model, build_objective(objective), dataset, out, rng=rng, batch_size=64,
                                  precision=precision, channels_last="auto")
                fixed = trainer._next_batch()
                trainer._next_batch = lambda: fixed
                bare = rate(trainer._train_step, args.steps, args.repeats)
                del trainer._next_batch                   # back to sampling a fresh batch every step
                e2e = rate(trainer._train_step, args.steps, args.repeats)
            print(f"{architecture:12s} {objective:10s} {precision:9s} {bare:9.2f} {e2e:9.2f} {64 * e2e:9.0f} "
                  f"{e2e / bare:8.1%}", flush=True)


if __name__ == "__main__":
    main()
