"""Times the local evaluator's three modes on the same models and data, and what the default costs in score.

    python bench/bench_evaluate.py [--networks higgins tcvae_entry] [--models EXPORT ...] [--modes fast exact reference]
                                   [--position_noise 1e-7] [--repeats 1] [--jobs N] [--dataset mpi3d_sim_realistic]
                                   [--quick] [--metrics ...] [--output scratch/bench_evaluate]

The models are either random-weight networks, their means rescaled to unit spread, traced to TorchScript:

* ``higgins``: the challenge's default encoder (Higgins et al. 2017: conv 32-32-64-64, fc 256; ~9M MACs per image), 10 codes;
* ``tcvae_entry``: the beta-TCVAE entry's bigger encoder (5 conv layers, 32 up to 256), 20 codes;

or trained exports (``--models``). ``--position_noise EPS`` wraps each model so that a code moves by EPS times its size
times a small function of its row's position in the batch: what CPUs whose kernels round by a row's position (AMX) do
to codes, on a CPU that does not (a simulation, labelled as such in the output).

Each mode runs in a fresh process, back to back per model:

* fast (the default): each distinct image encoded once, every request served from that cache;
* exact (``--exact``): every code bit for bit what dlib's batching gives on this CPU;
* reference (``--reference``): dlib's metric functions called the plain way, through a starter-kit-style wrapper.

Prints the CPU's flags (whether it has AMX), wall-clock seconds (including start-up and the procedural renderer's
one-time cache), each model's same-run ratios to the reference, the medians, each leaderboard metric's |score
difference| between fast and exact per model and its maximum over models, the fast mode's recorded departure of its
codes from dlib's batching, and whether exact equals reference on every dlib results dict. Never a timed test.
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


def position_noise_wrapper(model_path, output_path, eps):
    """``model_path`` wrapped so that each code moves by ``eps`` x |code| x (row position mod 5 - 2): the codes then
    depend on where an image sits in its batch, by float noise, like on CPUs whose kernels round by position."""
    import torch

    class PositionRounding(torch.nn.Module):
        def __init__(self, inner, eps: float):
            super().__init__()
            self.inner, self.eps = inner, eps

        def forward(self, x):
            y = self.inner(x)
            position = torch.arange(y.shape[0], dtype=y.dtype, device=y.device).remainder(5.0) - 2.0
            return y + y.abs() * self.eps * position.unsqueeze(1)

    wrapped = torch.jit.script(PositionRounding(torch.jit.load(model_path), float(eps)).eval())
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    torch.jit.save(wrapped, output_path)
    return output_path


MODE_FLAGS = {"fast": [], "exact": ["--exact"], "reference": ["--reference"]}


def timed_evaluation(model_path, output_dir, args, mode):
    command = [sys.executable, "-m", "evaluate", "--model", model_path, "--dataset", args.dataset,
               "--output", output_dir, "--metrics", *args.metrics] + (["--quick"] if args.quick else []) + MODE_FLAGS[mode] + \
        (["--jobs", str(args.jobs)] if args.jobs else [])
    print("$ " + " ".join(command), flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    seconds = time.monotonic() - start
    with open(os.path.join(output_dir, "evaluation_run.json")) as f:
        info = json.load(f)
    per_metric = {m: row["seconds"] for m, row in info["metrics"].items()}
    print(f"{mode}: {seconds:.1f} s wall; per metric (s): {per_metric}", flush=True)
    if mode != "reference":
        print(f"images: {info['images']}", flush=True)
    return seconds, info


def dlib_results(output_dir, metric):
    path = os.path.join(output_dir, "metrics", metric, "results", "json", "evaluation_results.json")
    with open(path) as f:
        results = json.load(f)
    return {k: v for k, v in results.items() if k not in ("elapsed_time", "uuid")}


def bench_model(name, model_path, args):
    """Every mode, ``args.repeats`` times back to back, on one model: its summary line, whether exact equalled the
    reference, and each metric's |fast - exact| (None without both modes)."""
    directory = os.path.join(args.output, name)
    seconds = {mode: [] for mode in args.modes}
    identical, differences, departure = True, {}, None
    for repeat in range(args.repeats):
        infos = {}
        for mode in args.modes:
            took, infos[mode] = timed_evaluation(model_path, os.path.join(directory, f"{mode}{repeat}"), args, mode)
            seconds[mode].append(took)
        if "exact" in infos and "reference" in infos:
            same = {m: dlib_results(os.path.join(directory, f"exact{repeat}"), m) ==
                    dlib_results(os.path.join(directory, f"reference{repeat}"), m) for m in args.metrics}
            identical = identical and all(same.values())
            print(f"{name} repeat {repeat + 1}: exact == reference per metric: {same}", flush=True)
        if "fast" in infos:
            departure = infos["fast"]["images"].get("cache_vs_exact")
        if "fast" in infos and "exact" in infos:
            for metric in args.metrics:
                fast, exact = infos["fast"]["metrics"][metric]["score"], infos["exact"]["metrics"][metric]["score"]
                differences[metric] = max(differences.get(metric, 0.0), abs(fast - exact))
        if "reference" in seconds:
            print(f"{name} repeat {repeat + 1}: " + ", ".join(
                f"{mode} {seconds[mode][-1]:.1f} s ({seconds['reference'][-1] / seconds[mode][-1]:.2f}x the reference)"
                for mode in args.modes), flush=True)
    line = f"{name}: " + ", ".join(f"{mode} median {statistics.median(seconds[mode]):.1f} s" for mode in args.modes)
    if "reference" in seconds:
        line += "; same-run ratios to the reference: " + ", ".join(
            f"{mode} {statistics.median(r / s for s, r in zip(seconds[mode], seconds['reference'])):.2f}x"
            for mode in args.modes if mode != "reference")
        line += "" if "exact" not in seconds else f"; exact {'==' if identical else '!='} reference"
    if differences:
        line += "; |fast - exact|: " + ", ".join(f"{m} {d:.2g}" for m, d in differences.items())
    if departure:
        line += f"; fast codes vs dlib's batching: max {departure['max_abs']:.2g}, median {departure['median_abs']:.2g}"
    return line, identical, differences


def main(argv=None):
    from evaluate.metrics import LEADERBOARD, METRIC_NAMES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="*", default=None, choices=list(NETWORKS),
                        help="random-weight networks (default: both, unless --models is given)")
    parser.add_argument("--models", nargs="*", default=[], help="trained TorchScript exports")
    parser.add_argument("--modes", nargs="+", default=list(MODE_FLAGS), choices=list(MODE_FLAGS))
    parser.add_argument("--position_noise", type=float, default=0.0,
                        help="simulate codes that depend on a row's position in the batch (relative size)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every mode per model")
    parser.add_argument("--jobs", type=int, default=None, help="the evaluator's --jobs (default: all CPUs)")
    parser.add_argument("--dataset", default="mpi3d_sim_realistic")
    parser.add_argument("--metrics", nargs="+", default=list(LEADERBOARD), choices=METRIC_NAMES)
    parser.add_argument("--quick", action="store_true", help="quick settings (NOT the leaderboard's)")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "scratch", "bench_evaluate"))
    args = parser.parse_args(argv)
    flags = cpu_flags()
    print(f"CPU: {flags}", flush=True)
    models = []
    for network in (args.networks if args.networks is not None else ([] if args.models else list(NETWORKS))):
        models.append((network, export_model(os.path.join(args.output, network, "pytorch_model.pt"), network,
                                             NETWORKS[network], args.dataset)))
    for i, path in enumerate(args.models):
        models.append((f"model{i}:{os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path))))}", path))
    if args.position_noise:
        models = [(f"{name}+noise", position_noise_wrapper(path, os.path.join(args.output, name.replace(":", "_"),
                                                                              "noisy.pt"), args.position_noise))
                  for name, path in models]
    lines, identical, worst = [], True, {}
    for name, path in models:
        line, same, differences = bench_model(name.replace(":", "_"), path, args)
        lines.append(line)
        identical = identical and same
        for metric, difference in differences.items():
            worst[metric] = max(worst.get(metric, 0.0), difference)
    noise = f"; SIMULATED position-dependent codes (relative {args.position_noise:g})" if args.position_noise else ""
    print(f"\n{args.dataset}, {'QUICK' if args.quick else 'challenge'} settings{noise}; CPU: {flags}")
    print("\n".join(lines))
    if worst:
        print(f"max |fast - exact| over {len(models)} models: " + ", ".join(f"{m} {d:.2g}" for m, d in worst.items()))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.path.insert(0, REPO_ROOT)
    sys.exit(main())
