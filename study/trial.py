"""One study trial: the pipeline's own path for one (recipe, bindings, seed, steps, datasets).

    pretrain (shared by every trial with the same recipe, bindings and pretraining settings; seed 0, as ./run.sh keeps one
    pretrained checkpoint per model) -> fine-tune -> export -> evaluate -> runs/<trial-id>.json

Every stage is the kit's own CLI in a subprocess (``python -m pretrain``, ``submission.train``, ``evaluate``), with
``threads`` CPU threads. Each stage resumes from what a killed trial left (the trainer resumes from its checkpoint; a
finished stage is not rerun), and the run JSON is written last, atomically: a trial is done exactly when it exists.
The checkpoints, the export and the evaluation outputs live under the scratch directory; the study directory gets only
the small JSON.
"""
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEADERBOARD_KEYS = ("factor_vae_metric", "dci", "sap_score", "mig", "irs")
RUN_FORMAT = 1
# Pretraining takes this share of the job's progress: its schedules run over [0, share), fine-tuning over [share, 1].
PRETRAIN_PROGRESS = 0.2


class TrialFailed(RuntimeError):
    """A stage of the trial failed: one line naming the stage and its last error line."""


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    recipe: str
    seed: int
    steps: int
    bindings: tuple = ()
    budget_s: float = None           # a wall-clock cap on fine-tuning, on top of ``steps``
    dataset: str = "mpi3d_sim_realistic"
    pretrain_dataset: str = "mpi3d_sim_toy"
    pretrain_steps: int = 5000       # 0: no pretraining
    quick_eval: bool = False

    def key(self) -> dict:
        return {"recipe": self.recipe, "bindings": list(self.bindings), "seed": self.seed, "steps": self.steps,
                "budget_s": self.budget_s, "dataset": self.dataset, "pretrain_dataset": self.pretrain_dataset,
                "pretrain_steps": self.pretrain_steps, "quick_eval": self.quick_eval}

    @property
    def trial_id(self) -> str:
        """Readable and stable: recipe, seed, and a hash of everything that defines the trial."""
        digest = hashlib.sha1(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.recipe}-s{self.seed}-{digest}"

    @property
    def pretrain_key(self) -> str:
        """The shared pretraining's scratch directory: the recipe's name, bindings and file fingerprint, and the
        pretraining settings (a changed recipe file never reuses an earlier version's pretraining)."""
        shared = {"recipe": self.recipe, "bindings": list(self.bindings), "dataset": self.pretrain_dataset,
                  "steps": self.pretrain_steps, "recipe_sha": recipe_sha(self.recipe)}
        return f"{self.recipe}-{hashlib.sha1(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:8]}"

    @property
    def scratch_id(self) -> str:
        """The trial's scratch directory: its id and its recipe file's fingerprint, so that a trial whose recipe file
        changed never resumes from (or takes the finished stages of) what the earlier version left."""
        return f"{self.trial_id}-{recipe_sha(self.recipe)[:8]}"

    @property
    def recipe_file(self) -> str:
        return recipe_file(self.recipe)


def recipe_file(recipe: str) -> str:
    """A recipe's gin file: ``submission/configs/<recipe>.gin``."""
    return os.path.join(REPO_ROOT, "submission", "configs", f"{recipe}.gin")


def recipe_sha(recipe: str) -> str:
    """The recipe file's fingerprint (sha1 of its bytes, 12 hex digits), kept in each run JSON: a run made with an
    earlier version of the recipe is never taken for a run of the current one (``study.state.check_recipe``)."""
    with open(recipe_file(recipe), "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def standins_of(spec: TrialSpec) -> dict:
    """{dataset: renderer version} of the procedural stand-ins the trial trains and evaluates on."""
    from submission.data.registry import standin_versions
    return standin_versions([spec.dataset] + ([spec.pretrain_dataset] if spec.pretrain_steps > 0 else []))


def run_path(study_dir: str, spec: TrialSpec) -> str:
    return os.path.join(study_dir, "runs", f"{spec.trial_id}.json")


def _stage(name: str, args: list, threads: int, log_path: str) -> float:
    """Run ``python -m <args>`` with ``threads`` threads, its output appended to ``log_path``; seconds taken."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
               KIT_PROGRESS="plain", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=REPO_ROOT + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n=== {name}: {' '.join(args)}\n")
        log.flush()
        code = subprocess.call([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, preexec_fn=_term_with_parent())
    if code not in (0, 1) or (code == 1 and name != "evaluate"):
        raise TrialFailed(f"{name} failed with exit code {code}: {_last_error(log_path)}")
    return time.monotonic() - t0


def _term_with_parent():
    """A preexec_fn that makes the stage's child get SIGTERM when the trial's process dies (a killed Ray worker or
    study), so the trainer checkpoints and stops instead of training on, orphaned, beside the rerun that resumes it.
    libc is looked up here, before the fork: the child only makes the call. None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal
    prctl, PR_SET_PDEATHSIG, sigterm = ctypes.CDLL(None, use_errno=True).prctl, 1, int(signal.SIGTERM)
    return lambda: prctl(PR_SET_PDEATHSIG, sigterm)


def _last_error(log_path: str) -> str:
    with open(log_path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _gin_args(spec: TrialSpec, span: tuple) -> list:
    args = ["--gin_file", spec.recipe_file]
    for binding in (*spec.bindings, f"training.progress_span = ({span[0]}, {span[1]})"):
        args += ["--gin_binding", binding]
    return args


def _finished(run_dir: str) -> dict:
    """The trainer's "finished" record of ``run_dir`` (None when it has not finished)."""
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.exists(path):
        return None
    last = None
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == "finished":
                last = record
    return last


def pretrain(spec: TrialSpec, scratch_dir: str, threads: int) -> tuple:
    """(checkpoint path, seconds spent here): run the shared pretraining unless a trial already did it (file lock)."""
    run_dir = os.path.join(scratch_dir, "pretrain", spec.pretrain_key)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint = os.path.join(run_dir, "checkpoint.pt")
    from submission.files import RunLock
    # A second trial with the same pretraining waits for the first (a lock of its own, beside the trainer's).
    with RunLock(run_dir, "shared pretraining", wait=True, name=".pretrain.lock"):
        seconds = 0.0
        record = _finished(run_dir)
        if record is None or record.get("step", 0) < spec.pretrain_steps:
            seconds = _stage("pretrain", ["pretrain", *_gin_args(spec, (0.0, PRETRAIN_PROGRESS)),
                                          "--dataset", spec.pretrain_dataset, "--output", run_dir,
                                          "--budget", "10000h", "--max_steps", str(spec.pretrain_steps),
                                          "--seed", "0", "--no_report"], threads, os.path.join(run_dir, "stage.log"))
    return checkpoint, seconds


def encode_capture(export_path: str, dataset_name: str) -> dict:
    """Which factors the export captured (``submission.metrics.factor_capture``, 10,000 samples, seed 0)."""
    import numpy as np
    import torch
    from submission.data import get_dataset
    from submission.metrics import capture_of_representation
    from submission.checkpoints import load_model_file
    module = load_model_file(export_path)[0]

    @torch.no_grad()
    def representation(observations):
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(observations, -1, 1), dtype=np.float32))
        return module(x).numpy()

    return capture_of_representation(get_dataset(dataset_name), representation, np.random.RandomState(0))


def run_trial(spec: TrialSpec, study_dir: str, scratch_dir: str, threads: int = 1) -> dict:
    """Run (or finish) one trial and write its run JSON; return the record. Raises TrialFailed (one line)."""
    from submission.files import atomic_write_json
    t0 = time.monotonic()
    trial_dir = os.path.join(scratch_dir, "trials", spec.scratch_id)
    log_path = os.path.join(trial_dir, "stage.log")
    export_path = os.path.join(trial_dir, "representation", "pytorch_model.pt")
    init, pretrain_s = (None, 0.0) if spec.pretrain_steps <= 0 else pretrain(spec, scratch_dir, threads)
    train_dir = os.path.join(trial_dir, "train")
    finished = _finished(train_dir)
    if finished is None or (finished["stopped"] == "signal SIGTERM"):
        budget = f"{spec.budget_s:.0f}s" if spec.budget_s else "10000h"
        span = (PRETRAIN_PROGRESS if init else 0.0, 1.0)
        _stage("fine-tune", ["submission.train", *_gin_args(spec, span), "--dataset", spec.dataset,
                             "--output", train_dir, "--budget", budget, "--max_steps", str(spec.steps),
                             "--seed", str(spec.seed), "--export", export_path, "--no_report",
                             *(["--init_from", init] if init else [])], threads, log_path)
        finished = _finished(train_dir)
    eval_dir = os.path.join(trial_dir, "eval")
    if not os.path.exists(os.path.join(eval_dir, "scores.json")):
        _stage("evaluate", ["evaluate", "--model", export_path, "--dataset", spec.dataset, "--output", eval_dir,
                            "--jobs", str(threads), *(["--quick"] if spec.quick_eval else [])], threads, log_path)
    with open(os.path.join(eval_dir, "scores.json")) as f:
        scores = json.load(f)
    extra = {}
    run_info = os.path.join(eval_dir, "evaluation_run.json")
    if os.path.exists(run_info):
        with open(run_info) as f:
            extra = (json.load(f).get("extra") or {}).get("values") or {}
    capture = encode_capture(export_path, spec.dataset)
    record = {"format": RUN_FORMAT, "trial_id": spec.trial_id, **spec.key(), "recipe_sha": recipe_sha(spec.recipe),
              "standins": standins_of(spec),
              "steps_done": finished.get("step") if finished else None,
              "stopped": finished.get("stopped") if finished else None,
              "train_seconds": finished.get("train_seconds") if finished else None,
              "wall_s": round(time.monotonic() - t0, 1), "pretrain_wall_s": round(pretrain_s, 1),
              "scores": {k: scores.get(k) for k in LEADERBOARD_KEYS},
              "eval_settings": "quick" if spec.quick_eval else "challenge",
              "active_dims": extra.get("active_dims"),
              "pvae_active_dims": finished.get("active_dims") if finished else None,
              "captured_factors": capture["captured_factors"], "captured": capture["captured"],
              "capture_nmi": capture["capture_nmi"], "factor_names": list(capture["capture_nmi"]),
              "threads": threads, "host_cpu": _cpu_name(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(record, run_path(study_dir, spec))
    return record


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main(argv=None) -> int:
    """``python -m study.trial SPEC_JSON STUDY_DIR SCRATCH_DIR [THREADS]``: one trial, for scripts and debugging."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    spec["bindings"] = tuple(spec.get("bindings", ()))
    try:
        record = run_trial(TrialSpec(**spec), argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 1)
    except TrialFailed as exc:
        print(f"study.trial: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record["scores"]), record["captured"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
