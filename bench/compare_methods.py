"""Train every method of the zoo with the same budget and seeds, score each with the local evaluator, print a table.

    python bench/compare_methods.py --budget 45s --seeds 0 1 2 --output scratch/compare [--methods vae factorvae ...]
        [--dataset mpi3d_sim_toy] [--full_eval]

Each run trains through ``python -m submission.train`` (the recipe ``submission/configs/<method>.gin``) and is scored by
``python -m evaluate`` (``--quick`` settings unless ``--full_eval``: about a tenth of the samples, NOT the leaderboard's
settings), then by the extra metrics of ``submission.metrics`` (10000 samples; 1000 for the model-based ones). Resumable: a run whose scores exist is
skipped, and an interrupted training resumes from its checkpoint. Seeds run in the outer loop, so a partial comparison
still covers every method. The table (markdown, mean +- std over the seeds finished) goes to stdout and OUTPUT/table.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("vae", "beta_vae", "annealed_vae", "factorvae", "dipvae_i", "dipvae_ii", "infovae", "betatcvae", "pvae",
           "pjvae", "decomposition", "vsc", "grouped_vae", "cvae", "ifcvae", "composite")
LEADERBOARD = ("factor_vae_metric", "dci", "sap_score", "mig", "irs")
EXTRA = ("mic", "active_dims", "gaussian_tc", "reconstruction_nll")


def run_logged(command, log_path) -> int:
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        return subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def train(method, seed, run_dir, args) -> bool:
    done = os.path.join(run_dir, "train_done.json")
    if os.path.exists(done):
        return True
    command = [sys.executable, "-m", "submission.train", "--gin_file", f"submission/configs/{method}.gin",
               "--dataset", args.dataset, "--output", os.path.join(run_dir, "train"), "--budget", args.budget,
               "--seed", str(seed)]
    for binding in args.gin_binding:
        command += ["--gin_binding", binding]
    t0 = time.time()
    rc = run_logged(command, os.path.join(run_dir, "log.txt"))
    if rc != 0:
        print(f"[compare] {method} seed {seed}: training failed (rc {rc}), see {run_dir}/log.txt", file=sys.stderr)
        return False
    with open(done, "w") as f:
        json.dump({"seconds": time.time() - t0}, f)
    return True


def evaluate(method, seed, run_dir, args) -> bool:
    if os.path.exists(os.path.join(run_dir, "eval", "scores.json")):
        return True
    command = [sys.executable, "-m", "evaluate", "--model", os.path.join(run_dir, "representation", "pytorch_model.pt"),
               "--dataset", args.dataset, "--output", os.path.join(run_dir, "eval"), "--jobs", str(args.jobs)]
    if not args.full_eval:
        command.append("--quick")
    rc = run_logged(command, os.path.join(run_dir, "log.txt"))
    if rc != 0:
        print(f"[compare] {method} seed {seed}: evaluation failed (rc {rc}), see {run_dir}/log.txt", file=sys.stderr)
    return rc == 0


def extra_metrics(run_dir, args) -> None:
    """MIC, active dims, Gaussian TC and reconstruction error of the trained model (rebuilt from its checkpoint)."""
    path = os.path.join(run_dir, "extra.json")
    if os.path.exists(path):
        return
    import torch
    import submission.objectives.zoo  # noqa: F401  (registers the zoo's model kinds)
    from submission.data import get_dataset
    from submission.metrics import compute_extra_metrics
    from submission.models import build_model
    checkpoint = torch.load(os.path.join(run_dir, "train", "checkpoint.pt"), map_location="cpu", weights_only=True)
    model = build_model(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    model.eval()

    def represent(observations):
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(observations, -1, 1), dtype=np.float32))
        with torch.no_grad():
            return model.representation(x).numpy()

    scores = compute_extra_metrics(get_dataset(args.dataset), represent, np.random.RandomState(0), num_samples=10000,
                                   model=model, model_samples=1000)
    scores["steps"] = int(checkpoint["step"])
    with open(path + ".tmp", "w") as f:
        json.dump(scores, f)
    os.replace(path + ".tmp", path)


def collect(args):
    rows = {}
    for method in args.methods:
        values = {}
        for seed in args.seeds:
            run_dir = os.path.join(args.output, method, f"seed{seed}")
            scores_path, extra_path = os.path.join(run_dir, "eval", "scores.json"), os.path.join(run_dir, "extra.json")
            if not (os.path.exists(scores_path) and os.path.exists(extra_path)):
                continue
            with open(scores_path) as f:
                scores = json.load(f)
            with open(extra_path) as f:
                scores.update(json.load(f))
            for key, value in scores.items():
                if isinstance(value, (int, float)):
                    values.setdefault(key, []).append(float(value))
        rows[method] = values
    return rows


def format_table(rows, args) -> str:
    columns = LEADERBOARD + EXTRA + ("steps",)
    lines = ["| method | seeds | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for method, values in rows.items():
        n = len(values.get("steps", []))
        cells = []
        for key in columns:
            v = values.get(key)
            if not v:
                cells.append("–")
            elif key in ("steps", "active_dims"):
                cells.append(f"{np.mean(v):.0f} ± {np.std(v):.0f}")
            elif key == "reconstruction_nll":
                cells.append(f"{np.mean(v):.0f} ± {np.std(v):.0f}")
            else:
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}")
        lines.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
    mode = "full (leaderboard) settings" if args.full_eval else "QUICK settings (~1/10 of the samples; not leaderboard)"
    lines.append("")
    lines.append(f"Dataset {args.dataset}; budget {args.budget} of training per run; seeds {args.seeds}; evaluator "
                 f"{mode}; MIC, active dims and Gaussian TC on 10000 samples, reconstruction NLL on 1000; mean ± std (population) over the seeds finished.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", default="45s")
    parser.add_argument("--dataset", default="mpi3d_sim_toy")
    parser.add_argument("--output", default="scratch/compare")
    parser.add_argument("--full_eval", action="store_true", help="the evaluator's full settings instead of --quick")
    parser.add_argument("--jobs", type=int, default=1, help="processes for the evaluator's DCI fits")
    parser.add_argument("--gin_binding", action="append", default=[], help="extra binding for every training run")
    parser.add_argument("--table_only", action="store_true", help="print the table of the runs done so far")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if not os.path.isfile(os.path.join(REPO, "submission", "configs", f"{m}.gin"))]
    if unknown:
        print(f"compare_methods: error: no recipe submission/configs/<method>.gin for {unknown}", file=sys.stderr)
        return 2
    args.output = os.path.abspath(args.output)
    if not args.table_only:
        for seed in args.seeds:
            for method in args.methods:
                run_dir = os.path.join(args.output, method, f"seed{seed}")
                os.makedirs(run_dir, exist_ok=True)
                if train(method, seed, run_dir, args) and evaluate(method, seed, run_dir, args):
                    extra_metrics(run_dir, args)
                print(f"[compare] {method} seed {seed} done", flush=True)
                table = format_table(collect(args), args)
                with open(os.path.join(args.output, "table.md"), "w") as f:
                    f.write(table + "\n")
    print(format_table(collect(args), args))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    sys.exit(main())
