"""Times the local evaluator both ways on the same model and data, and checks that the numbers are identical.

    python bench/bench_evaluate.py [--dataset mpi3d_sim_realistic] [--latent_dim 10] [--quick] [--metrics ...]
                                   [--output scratch/bench_evaluate] [--skip_reference]

The model is the challenge's default encoder (Higgins et al. 2017: conv 32-32-64-64, fc 256; ~9M MACs per image) with
random weights, its means rescaled to unit spread, traced to TorchScript. Each way runs in a fresh process:

* fast: ``python -m evaluate`` (bulk replay, DCI's fits in parallel);
* reference: ``python -m evaluate --reference``: dlib's metric functions called the plain way, through a starter-kit-style
  wrapper (np.moveaxis to NCHW, float32, no_grad, batches of 16 and 64 as dlib passes them).

Prints wall-clock seconds (including start-up and the procedural renderer's one-time cache), the speed-up, and whether
every metric's dlib results dict is identical. Never a timed test: figures only.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_default_model(path, latent_dim, dataset_name, seed=0):
    """The challenge's default encoder with random weights, its means rescaled to unit spread on the dataset.

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
    model = build_model(dict(kind="vae", architecture="higgins", latent_dim=latent_dim, channels=3)).eval()
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
    return time.monotonic() - start


def dlib_results(output_dir, metric):
    path = os.path.join(output_dir, "metrics", metric, "results", "json", "evaluation_results.json")
    with open(path) as f:
        results = json.load(f)
    return {k: v for k, v in results.items() if k not in ("elapsed_time", "uuid")}


def main(argv=None):
    from evaluate.metrics import LEADERBOARD, METRIC_NAMES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mpi3d_sim_realistic")
    parser.add_argument("--latent_dim", type=int, default=10)
    parser.add_argument("--metrics", nargs="+", default=list(LEADERBOARD), choices=METRIC_NAMES)
    parser.add_argument("--quick", action="store_true", help="quick settings (NOT the leaderboard's)")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "scratch", "bench_evaluate"))
    parser.add_argument("--skip_reference", action="store_true", help="time the fast way only")
    args = parser.parse_args(argv)

    model_path = export_default_model(os.path.join(args.output, "pytorch_model.pt"), args.latent_dim, args.dataset)
    fast_dir, reference_dir = os.path.join(args.output, "fast"), os.path.join(args.output, "reference")
    fast_s = timed_evaluation(model_path, fast_dir, args, reference=False)
    with open(os.path.join(fast_dir, "evaluation_run.json")) as f:
        fast_info = json.load(f)
    print(f"\nfast: {fast_s:.1f} s wall; images {fast_info['images']}; per metric (s): "
          f"{ {m: row['seconds'] for m, row in fast_info['metrics'].items()} }")
    if args.skip_reference:
        return 0
    reference_s = timed_evaluation(model_path, reference_dir, args, reference=True)
    with open(os.path.join(reference_dir, "evaluation_run.json")) as f:
        reference_info = json.load(f)
    print(f"\nreference: {reference_s:.1f} s wall; per metric (s): "
          f"{ {m: row['seconds'] for m, row in reference_info['metrics'].items()} }")
    identical = {m: dlib_results(fast_dir, m) == dlib_results(reference_dir, m) for m in args.metrics}
    print(f"\n{args.dataset}, {args.latent_dim} latents, {'QUICK' if args.quick else 'challenge'} settings, "
          f"{os.cpu_count()} CPUs visible")
    print(f"fast {fast_s:.1f} s   reference {reference_s:.1f} s   speed-up {reference_s / fast_s:.2f}x")
    print(f"identical dlib results per metric: {identical}")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.path.insert(0, REPO_ROOT)
    sys.exit(main())
