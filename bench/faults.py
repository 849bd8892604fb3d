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

Then two races a user can provoke:

  * the stale lock: ``--lock_trials`` times, a lock file left by a killed process and ``--racers`` processes released
    together by a barrier to take it; prints how many trials had two holders at once (must be 0);
  * the damaged checkpoint in the rotation: ``--rotations`` times, truncate ``checkpoint.pt`` and rerun twice; prints in
    how many rounds ``checkpoint.prev.pt`` was still a good checkpoint after each rerun (must be all).

    OMP_NUM_THREADS=1 .venv/bin/python bench/faults.py [--kills 20] [--checkpoint_every 0.5] [--seed 0]
                                                       [--lock_trials 200] [--racers 4] [--rotations 3]
"""
import argparse
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
from submission.training_log import LOG_NAME, window_records  # noqa: E402

RECIPE = ["--gin_file", "submission/configs/beta_vae.gin", "--gin_binding", "model.architecture = 'mlp'",
          "--gin_binding", "model.latent_dim = 4", "--gin_binding", "training.batch_size = 16",
          "--gin_binding", "training.log_every_s = 0.0", "--dataset", "mpi3d_sim_toy", "--no_report"]


def last_logged_step(run_dir: str) -> int:
    windows, _ = window_records(os.path.join(run_dir, LOG_NAME))      # the line a kill cut short is skipped
    return max((int(record["step"]) for record in windows), default=0)


def writes_in_progress(*directories) -> int:
    return sum(1 for d in directories if os.path.isdir(d) for name in os.listdir(d)
               if name.startswith(".") and ".tmp-" in name)


def _race(directory, barrier, inside, most, acquired):
    lock = files.RunLock(directory, "run")
    barrier.wait()
    try:
        lock.acquire()
    except files.ArtifactError:
        return
    with inside.get_lock():
        inside.value += 1
        most.value = max(most.value, inside.value)
    acquired.value += 1
    time.sleep(0.005)
    with inside.get_lock():
        inside.value -= 1
    lock.release()


def stale_lock_race(trials: int, racers: int = 2) -> tuple:
    """(trials with two holders at once, trials where nobody got the lock): ``racers`` processes, released together,
    take a lock whose file a killed process left behind."""
    import multiprocessing
    context = multiprocessing.get_context("fork")
    doubles = nobody = 0
    work = tempfile.mkdtemp(prefix="kit-lock-race-")
    try:
        for trial in range(trials):
            directory = os.path.join(work, str(trial))
            os.makedirs(directory)
            with open(os.path.join(directory, files.LOCK_NAME), "w") as f:
                f.write("999999999\n")                                 # the PID of a process long gone
            barrier = context.Barrier(racers)
            inside, most, acquired = (context.Value("i", 0) for _ in range(3))
            processes = [context.Process(target=_race, args=(directory, barrier, inside, most, acquired))
                         for _ in range(racers)]
            for process in processes:
                process.start()
            for process in processes:
                process.join(60)
            doubles += most.value > 1
            nobody += acquired.value == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return doubles, nobody


def damaged_rotation(rounds: int) -> int:
    """Rounds (of ``rounds``) in which, after ``checkpoint.pt`` was truncated and the run rerun twice, the fallback
    ``checkpoint.prev.pt`` was a good checkpoint after each rerun."""
    work = tempfile.mkdtemp(prefix="kit-rotation-")
    run = os.path.join(work, "train")
    env = dict(os.environ, PYTHONPATH=ROOT, KIT_PROGRESS="off")

    def train(steps):
        subprocess.run([sys.executable, "-m", "submission.train", *RECIPE, "--output", run, "--budget", "600s",
                        "--max_steps", str(steps)], cwd=ROOT, env=env, check=True, capture_output=True)

    good = 0
    try:
        train(4)
        for round_ in range(rounds):
            step = int(checkpoints.load_checkpoint(os.path.join(run, files.CHECKPOINT_NAME))["step"])
            train(step + 4)                                            # two good checkpoints
            latest = os.path.join(run, files.CHECKPOINT_NAME)
            with open(latest, "r+b") as f:
                f.truncate(os.path.getsize(latest) // 2)
            kept = True
            for rerun in (1, 2):
                train(step + 4 + 4 * rerun)
                try:
                    checkpoints.load_checkpoint(os.path.join(run, files.PREVIOUS_CHECKPOINT_NAME))
                except files.ArtifactError:
                    kept = False
            good += kept
            print(f"rotation round {round_ + 1}: the fallback stayed good after both reruns: {'yes' if kept else 'NO'}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock_trials", type=int, default=200)
    parser.add_argument("--racers", type=int, default=4)
    parser.add_argument("--rotations", type=int, default=3)
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
    t0 = time.monotonic()
    doubles, nobody = stale_lock_race(args.lock_trials, args.racers)
    print(f"stale-lock race: {args.lock_trials} trials of {args.racers} processes released together: two holders at "
          f"once in {doubles}, nobody got it in {nobody} ({time.monotonic() - t0:.0f} s)")
    kept = damaged_rotation(args.rotations)
    print(f"damaged checkpoint in the rotation: the fallback stayed good in {kept} of {args.rotations} rounds")
    return 0 if files_lost == 0 and finished and doubles == 0 and nobody == 0 and kept == args.rotations else 1


if __name__ == "__main__":
    sys.exit(main())
