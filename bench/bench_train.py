"""Training speed at batch 64: end-to-end (data sampling + forward + loss + backward + Adam) against the bare model step
(the same on one fixed batch), for each architecture, in fp32 and bf16. Prints medians over repeats, in steady state
(each mode is warmed up first), and the CPU's flags.

Modes: "bare" (one fixed batch), "inline" (each batch drawn in the loop: ``training.prefetch = 0``, the CPU default of
``auto``), "prefetch" (the background thread, ``training.prefetch = 2``, the CUDA default); with ``--compile`` also
"c-bare" and "c-inline", the same under ``training.compile = on``, and the first compiled step's seconds ("compile s":
about 30 cold, a few once Inductor's cache under scratch/torch_compile is warm), reported apart from the rates. Repeats
alternate the modes so that a change in the machine's load hits all of them alike.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py [--dataset mpi3d_sim_toy] [--steps 30] [--repeats 3]
        [--cases higgins/pvae ...] [--precisions fp32 bf16] [--compile]
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


def measure(eager, compiled, steps, repeats):
    """Median it/s per mode, the modes interleaved repeat by repeat after a warm-up of each: eager bare / inline /
    prefetch, then compiled bare / inline (``compiled`` may be None)."""
    modes = {"bare": (eager, "fixed"), "inline": (eager, 0), "prefetch": (eager, 2)}
    if compiled is not None:
        modes.update({"c-bare": (compiled, "fixed"), "c-inline": (compiled, 0)})
    fixed = {id(t): t.next_batch() for t in (eager, compiled) if t is not None}

    def run(name, count):
        trainer, how = modes[name]
        trainer.batches.stop()
        if how == "fixed":
            step = lambda: trainer.step(fixed[id(trainer)])     # noqa: E731
        else:
            if how:
                trainer.batches.depth = how
                trainer.batches.start()
                trainer.step()               # let the thread fill its queue once, as in a long run
            step = trainer.step
        try:
            return rate(step, count)
        finally:
            trainer.batches.stop()
            trainer.batches.depth = 0

    rates = {name: [] for name in modes}
    for name in modes:
        run(name, 5)
    for _ in range(repeats):
        for name in modes:
            rates[name].append(run(name, steps))
    return {name: statistics.median(values) for name, values in rates.items()}


def _trainer(objective, architecture, kind, dataset, precision, out, compile_mode):
    rng = seed_everything(0)
    model = make_model(kind=kind, architecture=architecture, latent_dim=20 if objective == "betatcvae" else 10)
    return Trainer(model, build_objective(objective), dataset, out, rng=rng, batch_size=64, precision=precision,
                   channels_last="auto", prefetch=0, compile=compile_mode)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mpi3d_sim_toy")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=None, help="architecture/objective, e.g. higgins/pvae")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd steps (training.compile)")
    args = parser.parse_args()
    known = [f"{c[0]}/{c[2]}" for c in CASES]
    unknown = [case for case in args.cases or () if case not in known]
    if unknown:
        parser.error(f"--cases {' '.join(unknown)}: unknown; expected some of {', '.join(known)}")
    cases = [c for c in CASES if args.cases is None or f"{c[0]}/{c[2]}" in args.cases]
    dataset = get_dataset(args.dataset)
    print(f"CPU: {cpu_summary()}; torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {args.dataset}, batch 64, "
          f"{args.steps} steps x {args.repeats} repeats (medians)")
    head = ["bare", "inline", "prefetch"] + (["c-bare", "c-inline"] if args.compile else [])
    print(f"{'architecture':12s} {'objective':10s} {'precision':9s} " + " ".join(f"{h:>9s}" for h in head)
          + f" {'inl/bare':>8s} {'pf/bare':>8s}" + (f" {'c-inl/inl':>9s} {'compile s':>9s}" if args.compile else ""))
    for architecture, kind, objective in cases:
        for precision in args.precisions:
            with tempfile.TemporaryDirectory() as out:
                eager = _trainer(objective, architecture, kind, dataset, precision, out + "/e", "off")
                compiled, compile_s = None, None
                if args.compile:
                    compiled = _trainer(objective, architecture, kind, dataset, precision, out + "/c", "on")
                    batch = compiled.next_batch()
                    t0 = time.perf_counter()
                    compiled.step(batch)          # the first compiled step: compiling (or a cache hit)
                    compile_s = time.perf_counter() - t0
                    if not compiled.compiler.active:
                        print(f"compile failed ({compiled.compiler.failed}): compiled columns left out")
                        compiled = None
                r = measure(eager, compiled, args.steps, args.repeats)
            line = f"{architecture:12s} {objective:10s} {precision:9s} " + " ".join(
                f"{r[h]:9.2f}" if h in r else f"{'-':>9s}" for h in head)
            line += f" {r['inline'] / r['bare']:8.1%} {r['prefetch'] / r['bare']:8.1%}"
            if args.compile:
                line += (f" {r['c-inline'] / r['inline']:9.2f} {compile_s:9.1f}" if "c-inline" in r else "")
            print(line, flush=True)


if __name__ == "__main__":
    main()
