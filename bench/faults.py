"""Fault soak: SIGKILL a training run at random moments, many times, and check that nothing is lost.

Each round starts (or resumes) ``python -m submission.train`` on the same output directory, waits a random time, and
kills it with SIGKILL, so kills land in steps, in checkpoint writes and in exports alike (checkpoints and exports come
every ``--checkpoint_every`` seconds, so writes take a good share of the time). After every kill:

  * the newest checkpoint must load (no fallback to the previous one needed) and the export must load and verify
    against it or against the previous checkpoint (a kill between a checkpoint and its export leaves the export one
    checkpoint behind; the rerun rewrites it before its first step): a "file lost" is any round where that fails;
  * the steps lost are the steps the killed run had logged minus the step the rerun resumes from.

A final run then finishes the job. Prints the kills survived, the steps lost per kill (median, max) against the
checkpoint interval in steps, how many kills hit a write in progress, and the files lost (must be 0).

    OMP_NUM_THREADS=1 .venv/bin/python bench/faults.py [--kills 20] [--checkpoint_every 0.5] [--seed 0]
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from submission import checkpoints, files  # noqa: E402
from submission.export import verify_export_of_run  # noqa: E402
from submission.hardware import cpu_summary  # noqa: E402

RECIPE = ["--gin_file", "submission/configs/beta_vae.gin", "--gin_binding", "model.architecture = 'mlp'",
          "--gin_binding", "model.latent_dim = 4", "--gin_binding", "training.batch_size = 16",
          "--gin_binding", "training.log_every_s = 0.0", "--dataset", "mpi3d_sim_toy", "--no_report"]


def last_logged_step(run_dir: str) -> int:
    step = 0
    path = os.path.join(run_dir, "log.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:      # the line the kill cut short
                    continue
                if "step" in record and "event" not in record:
                    step = max(step, int(record["step"]))
    return step


def writes_in_progress(*directories) -> int:
    return sum(1 for d in directories if os.path.isdir(d) for name in os.listdir(d)
               if name.startswith(".") and ".tmp-" in name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--checkpoint_every", type=float, default=0.5, help="seconds between checkpoints + exports")
    parser.add_argument("--max_steps", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="kit-faults-")
    run, export = os.path.join(work, "train"), os.path.join(work, "representation", "pytorch_model.pt")
    command = [sys.executable, "-m", "submission.train", *RECIPE, "--output", run, "--budget", "3600s",
               "--max_steps", str(args.max_steps), "--export", export,
               "--gin_binding", f"training.checkpoint_every_s = {args.checkpoint_every}"]
    env = dict(os.environ, PYTHONPATH=ROOT, KIT_PROGRESS="off")
    lost, hit_writes, files_lost, intervals = [], 0, 0, []
    print(f"CPU: {cpu_summary()}; {args.kills} SIGKILLs, checkpoint + export every {args.checkpoint_every} s",
          flush=True)
    try:
        for kill in range(args.kills):
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            start_step = last_logged_step(run)
            while not os.path.exists(os.path.join(run, "log.jsonl")) or last_logged_step(run) <= start_step:
                time.sleep(0.05)            # training has started (imports and resume are not the interesting part)
                if proc.poll() is not None:
                    raise RuntimeError(f"the training run exited with {proc.returncode} before training")
            time.sleep(rng.uniform(0.0, 3.0 * args.checkpoint_every))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done = last_logged_step(run)
            hit_writes += writes_in_progress(run, os.path.dirname(export)) > 0
            try:
                checkpoint, _, note = checkpoints.load_latest_checkpoint(run)
                if checkpoint is None or note is not None:
                    raise RuntimeError(note or "no checkpoint")
                verify_export_of_run(export, run)
                lost.append(done - int(checkpoint["step"]))
                previous = os.path.join(run, files.PREVIOUS_CHECKPOINT_NAME)
                if os.path.exists(previous):
                    intervals.append(int(checkpoint["step"]) - int(checkpoints.load_checkpoint(previous)["step"]))
            except Exception as exc:
                files_lost += 1
                print(f"kill {kill + 1}: FILE LOST ({type(exc).__name__}: {exc})", flush=True)
                continue
            print(f"kill {kill + 1:2d}: logged step {done}, checkpoint at step {checkpoint['step']}, "
                  f"{lost[-1]} steps lost", flush=True)
        final = subprocess.run([*command[:command.index("--max_steps") + 1], str(last_logged_step(run) + 20),
                                *command[command.index("--max_steps") + 2:]], cwd=ROOT, env=env,
                               capture_output=True, text=True)
        finished = final.returncode == 0 and "resuming from" in final.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nkills survived: {len(lost)} of {args.kills}; files lost: {files_lost}; kills during a write in progress: "
          f"{hit_writes}; final resumed run finished: {'yes' if finished else 'NO'}")
    if lost:
        interval = f"median {statistics.median(intervals):g}, max {max(intervals)}" if intervals else "n/a"
        print(f"steps lost per kill: median {statistics.median(lost):g}, max {max(lost)}; steps between the last two "
              f"checkpoints ({args.checkpoint_every} s apart): {interval}")
    return 0 if files_lost == 0 and finished else 1


if __name__ == "__main__":
    sys.exit(main())
