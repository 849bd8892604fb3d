"""What Ray adds to a trial: one tiny trial run by a plain ``run_trial`` call, then the same trial through
``python -m study run`` (embedded Ray), each from an empty scratch directory so neither reuses the other's work.

    python bench/bench_study.py [--recipe vae] [--steps 20] [--pretrain_steps 10] [--dataset mpi3d_sim_toy]

Prints the plain trial's wall time, the study command's wall time, the trial's own wall time inside Ray (its run
JSON's ``wall_s``) and the difference: Python and Ray start-up, the plan's gin check, Tune's scheduling, the table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="vae")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pretrain_steps", type=int, default=10)
    parser.add_argument("--dataset", default="mpi3d_sim_toy")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    from study.trial import TrialSpec, run_trial
    spec = TrialSpec(args.recipe, 0, args.steps, dataset=args.dataset, pretrain_steps=args.pretrain_steps,
                     quick_eval=True)
    with tempfile.TemporaryDirectory(prefix="bench-study-", dir=os.path.join(REPO, "scratch")) as work:
        t0 = time.monotonic()
        run_trial(spec, os.path.join(work, "plain"), os.path.join(work, "plain-scratch"), threads=1)
        plain_s = time.monotonic() - t0

        command = [sys.executable, "-m", "study", "run", "--name", "bench", "--recipes", args.recipe, "--seeds", "0",
                   "--steps", str(args.steps), "--pretrain_steps", str(args.pretrain_steps), "--quick_eval",
                   "--dataset", args.dataset, "--output", os.path.join(work, "studies"),
                   "--scratch", os.path.join(work, "ray-scratch")]
        t0 = time.monotonic()
        subprocess.run(command, cwd=REPO, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                       stdout=subprocess.DEVNULL)
        study_s = time.monotonic() - t0
        with open(os.path.join(work, "studies", "bench", "runs", f"{spec.trial_id}.json")) as f:
            inside_s = json.load(f)["wall_s"]
    print(f"plain run_trial:           {plain_s:7.1f} s")
    print(f"python -m study run:       {study_s:7.1f} s  (the trial itself inside Ray: {inside_s:.1f} s)")
    print(f"study command - its trial: {study_s - inside_s:7.1f} s  (start-up, gin check, Ray, Tune, table)")
    print(f"study command - plain:     {study_s - plain_s:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
