"""Times the local evaluator both ways on the same models and data, and checks that the numbers are identical.

    python bench/bench_evaluate.py [--networks higgins tcvae_entry] [--repeats 1] [--dataset mpi3d_sim_realistic]
                                   [--quick] [--metrics ...] [--output scratch/bench_evaluate] [--skip_reference]

The models have random weights, their means rescaled to unit spread, traced to TorchScript:

* ``higgins``: the challenge's default encoder (Higgins et al. 2017: conv 32-32-64-64, fc 256; ~9M MACs per image), 10 codes;
* ``tcvae_entry``: the beta-TCVAE entry's bigger encoder (5 conv layers, 32 up to 256), 20 codes.

Each way runs in a fresh process:

* fast: ``python -m evaluate`` (replay, each batch size served bulk / per size / exactly, DCI's fits beside the encoding);
* reference: ``python -m evaluate --reference``: dlib's metric functions called the plain way, through a starter-kit-style
  wrapper (np.moveaxis to NCHW, float32, no_grad, batches of 16 and 64 as dlib passes them).

Prints the CPU's flags (whether it has AMX, whose bf16 and int8 kernels change which float kernels run), wall-clock
seconds (including start-up and the procedural renderer's one-time cache), each repeat's speed-up (fast and reference
timed back to back, so a busy machine slows both), the medians, and whether every metric's dlib results dict is
identical. Never a timed test: figures only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# network -> codes, as each was used in the challenge (the default's 10; the beta-TCVAE entry's z = 20).
NETWORKS = {"higgins": 10, "tcvae_entry": 20}


def cpu_flags():
    """One line about the CPU: its model, the CPUs this process may use, and the float kernels it has."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    shown = ", ".join(f"{name} {'yes' if name in flags else 'no'}" for name in ("amx_bf16", "avx512_bf16", "avx512f"))
    return f"{model}; {cpus} CPUs; {shown}" + ("" if flags else " (no /proc/cpuinfo flags)")


def export_model(path, architecture, latent_dim, dataset_name, seed=0):
    """``architecture``'s encoder with random weights, its means rescaled to unit spread on the dataset.

    Fresh weights give means with a spread far below FactorVAE's ``prune_dims.threshold`` (0.05), and dlib then skips
    FactorVAE's 960,000 images; a trained model does not, so the bench must not either.
    """
    import numpy as np
    import torch
    from submission.data import get_dataset
    from submission.models import build_model

    class UnitSpread(torch.nn.Module):
        def __init__(self, model, scale):
            super().__init__()
            self.model = model
            self.register_buffer("scale", scale)

        def forward(self, x):
            return self.model.representation(x) * self.scale

    torch.manual_seed(seed)
    model = build_model(dict(kind="vae", architecture=architecture, latent_dim=latent_dim, channels=3)).eval()
    images = get_dataset(dataset_name).sample_observations(512, np.random.RandomState(seed))
    probe = torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, 3, 1)))
    with torch.no_grad():
        scale = 1.0 / model.representation(probe).std(dim=0).clamp_min(1e-12)
        traced = torch.jit.trace(UnitSpread(model, scale).eval(), probe[:16])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.jit.save(traced, path)
    return path


def timed_evaluation(model_path, output_dir, args, reference):
    command = [sys.executable, "-m", "evaluate", "--model", model_path, "--dataset", args.dataset, "--output", output_dir,
               "--metrics", *args.metrics] + (["--quick"] if args.quick else []) + (["--reference"] if reference else [])
    print("$ " + " ".join(command), flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    seconds = time.monotonic() - start
    with open(os.path.join(output_dir, "evaluation_run.json")) as f:
        info = json.load(f)
    print(f"{'reference' if reference else 'fast'}: {seconds:.1f} s wall; per metric (s): "
          f"{ {m: row['seconds'] for m, row in info['metrics'].items()} }", flush=True)
    if not reference:
        print(f"images: {info['images']}", flush=True)
    return seconds


def dlib_results(output_dir, metric):
    path = os.path.join(output_dir, "metrics", metric, "results", "json", "evaluation_results.json")
    with open(path) as f:
        results = json.load(f)
    return {k: v for k, v in results.items() if k not in ("elapsed_time", "uuid")}


def bench_network(network, args):
    """Fast and reference, ``args.repeats`` times back to back, on one network; returns its summary line and whether
    every repeat's results were identical."""
    directory = os.path.join(args.output, network)
    model_path = export_model(os.path.join(directory, "pytorch_model.pt"), network, NETWORKS[network], args.dataset)
    fast, reference, identical = [], [], True
    for repeat in range(args.repeats):
        fast_dir = os.path.join(directory, f"fast{repeat}")
        fast.append(timed_evaluation(model_path, fast_dir, args, reference=False))
        if args.skip_reference:
            continue
        reference_dir = os.path.join(directory, f"reference{repeat}")
        reference.append(timed_evaluation(model_path, reference_dir, args, reference=True))
        same = {m: dlib_results(fast_dir, m) == dlib_results(reference_dir, m) for m in args.metrics}
        identical = identical and all(same.values())
        print(f"{network} repeat {repeat + 1}: fast {fast[-1]:.1f} s, reference {reference[-1]:.1f} s, "
              f"speed-up {reference[-1] / fast[-1]:.2f}x; identical per metric: {same}", flush=True)
    line = f"{network:<12} ({NETWORKS[network]} codes): fast median {statistics.median(fast):.1f} s"
    if reference:
        ratios = ", ".join(f"{r / f:.2f}x" for f, r in zip(fast, reference))
        line += (f", reference median {statistics.median(reference):.1f} s, same-run speed-ups {ratios} (median "
                 f"{statistics.median(r / f for f, r in zip(fast, reference)):.2f}x), results "
                 f"{'identical' if identical else 'DIFFERENT'}")
    return line, identical


def main(argv=None):
    from evaluate.metrics import LEADERBOARD, METRIC_NAMES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--repeats", type=int, default=1, help="fast + reference pairs per network")
    parser.add_argument("--dataset", default="mpi3d_sim_realistic")
    parser.add_argument("--metrics", nargs="+", default=list(LEADERBOARD), choices=METRIC_NAMES)
    parser.add_argument("--quick", action="store_true", help="quick settings (NOT the leaderboard's)")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "scratch", "bench_evaluate"))
    parser.add_argument("--skip_reference", action="store_true", help="time the fast way only")
    args = parser.parse_args(argv)
    flags = cpu_flags()
    print(f"CPU: {flags}", flush=True)
    lines, identical = [], True
    for network in args.networks:
        line, same = bench_network(network, args)
        lines.append(line)
        identical = identical and same
    print(f"\n{args.dataset}, {'QUICK' if args.quick else 'challenge'} settings; CPU: {flags}")
    print("\n".join(lines))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.path.insert(0, REPO_ROOT)
    sys.exit(main())
