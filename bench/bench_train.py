"""Training speed at batch 64: end-to-end (data sampling + forward + loss + backward + Adam) against the bare model step
(the same on one fixed batch), for both architectures, in fp32 and bf16. Prints medians over repeats.

End-to-end is measured twice: drawing each batch in the loop ("inline", ``training.prefetch = 0``) and with the trainer's
background prefetch thread ("prefetch", the default ``training.prefetch = 2``); "pf/bare" is the prefetch figure over
the bare step. Repeats alternate bare / inline / prefetch so that a change in the machine's load hits all three alike.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py [--dataset mpi3d_sim_toy] [--steps 30] [--repeats 3]
        [--cases higgins/pvae ...] [--precisions fp32 bf16]
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
from submission.hardware import cpu_summary, seed_everything  # noqa: E402
from submission.trainer import Trainer  # noqa: E402

CASES = [("higgins", "pvae", "pvae"), ("higgins", "vae", "beta_vae"), ("tcvae_entry", "vae", "betatcvae")]


def rate(step_fn, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return steps / (time.perf_counter() - t0)


def measure(trainer, steps, repeats):
    """Median it/s of (bare, inline, prefetch), the three interleaved repeat by repeat after a warm-up of each."""
    fixed = trainer.next_batch()
    steps_of = {"bare": lambda: trainer.step(fixed), "inline": trainer.step, "prefetch": trainer.step}

    def mode(name):
        trainer.batches.stop()
        if name == "prefetch":
            trainer.batches.start()

    rates = {"bare": [], "inline": [], "prefetch": []}
    try:
        for name in rates:
            mode(name)
            for _ in range(5):
                steps_of[name]()
        for _ in range(repeats):
            for name in rates:
                mode(name)
                if name == "prefetch":
                    trainer.step()          # let the thread fill its queue once, as in a long run
                rates[name].append(rate(steps_of[name], steps))
    finally:
        trainer.batches.stop()
    return [statistics.median(rates[name]) for name in rates]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mpi3d_sim_toy")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=None, help="architecture/objective, e.g. higgins/pvae")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    cases = [c for c in CASES if args.cases is None or f"{c[0]}/{c[2]}" in args.cases]
    dataset = get_dataset(args.dataset)
    print(f"CPU: {cpu_summary()}; torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {args.dataset}, batch 64, "
          f"{args.steps} steps x {args.repeats} repeats (medians)")
    print(f"{'architecture':12s} {'objective':10s} {'precision':9s} {'bare it/s':>9s} {'inline':>9s} {'prefetch':>9s} "
          f"{'pf img/s':>9s} {'inl/bare':>8s} {'pf/bare':>8s}")
    for architecture, kind, objective in cases:
        for precision in args.precisions:
            rng = seed_everything(0)
            model = make_model(kind=kind, architecture=architecture, latent_dim=20 if objective == "betatcvae" else 10)
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(model, build_objective(objective), dataset, out, rng=rng, batch_size=64,
                                  precision=precision, channels_last="auto", prefetch=2)
                bare, inline, prefetch = measure(trainer, args.steps, args.repeats)
            print(f"{architecture:12s} {objective:10s} {precision:9s} {bare:9.2f} {inline:9.2f} {prefetch:9.2f} "
                  f"{64 * prefetch:9.0f} {inline / bare:8.1%} {prefetch / bare:8.1%}", flush=True)


if __name__ == "__main__":
    main()
