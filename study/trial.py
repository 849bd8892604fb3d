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
import sys
import time

from submission.files import CHECKPOINT_NAME, LEADERBOARD_KEYS, JobLayout
from submission.stages import evaluate_args

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def _stage(name: str, args: list, threads: int, log_path: str, ok_codes=(0,)) -> float:
    """Run one stage (``submission.stages.run_stage``) with ``threads`` CPU threads, its output appended to
    ``log_path``, dying with this process; seconds taken. TrialFailed (one line) when it fails or is interrupted."""
    from submission.stages import StageFailed, StageInterrupted, run_stage
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), KIT_PROGRESS="plain",
               TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.monotonic()
    try:
        run_stage(name, args, ok_codes, env=env, log_path=log_path, die_with_parent=True)
    except (StageFailed, StageInterrupted) as exc:
        raise TrialFailed(str(exc)) from None
    return time.monotonic() - t0


def _plan(spec: TrialSpec, seed: int):
    from submission.stages import TrainingPlan
    return TrainingPlan((spec.recipe_file,), tuple(spec.bindings), seed, PRETRAIN_PROGRESS)


def _finished(run_dir: str) -> dict:
    """The trainer's "finished" record of ``run_dir`` (None when it has not finished)."""
    from submission.training_log import LOG_NAME, last_event
    return last_event(os.path.join(run_dir, LOG_NAME), "finished")


def pretrain(spec: TrialSpec, scratch_dir: str, threads: int) -> tuple:
    """(checkpoint path, seconds spent here): run the shared pretraining unless a trial already did it (file lock)."""
    run_dir = os.path.join(scratch_dir, "pretrain", spec.pretrain_key)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint = os.path.join(run_dir, CHECKPOINT_NAME)
    from submission.files import RunLock
    # A second trial with the same pretraining waits for the first (a lock of its own, beside the trainer's).
    with RunLock(run_dir, "shared pretraining", wait=True, name=".pretrain.lock"):
        seconds = 0.0
        record = _finished(run_dir)
        if record is None or record.get("step", 0) < spec.pretrain_steps:
            args = _plan(spec, seed=0).pretrain(run_dir, max_steps=spec.pretrain_steps, dataset=spec.pretrain_dataset)
            seconds = _stage("pretrain", args, threads, os.path.join(run_dir, "stage.log"))
    return checkpoint, seconds


def encode_capture(export_path: str, dataset_name: str) -> dict:
    """Which factors the export captured (``submission.metrics.factor_capture``, 10,000 samples, seed 0), with what all
    its codes carry about each (``readout_nmi``, ``submission.metrics.factor_readout``)."""
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
    from submission.capture_probe import capture_curve
    from submission.files import atomic_write_json
    from submission.training_log import LOG_NAME
    t0 = time.monotonic()
    trial_dir = os.path.join(scratch_dir, "trials", spec.scratch_id)
    log_path = os.path.join(trial_dir, "stage.log")
    export_path = JobLayout(trial_dir).export
    init, pretrain_s = (None, 0.0) if spec.pretrain_steps <= 0 else pretrain(spec, scratch_dir, threads)
    train_dir = os.path.join(trial_dir, "train")
    finished = _finished(train_dir)
    if finished is None or (finished["stopped"] == "signal SIGTERM"):
        args = _plan(spec, spec.seed).fine_tune(spec.dataset, train_dir, export_path, spec.budget_s, spec.steps,
                                                init_from=init, report=False)
        _stage("fine-tune", args, threads, log_path)
        finished = _finished(train_dir)
    eval_dir = os.path.join(trial_dir, "eval")
    if not os.path.exists(JobLayout(eval_dir).scores):
        _stage("evaluate", evaluate_args(export_path, spec.dataset, eval_dir, quick=spec.quick_eval, jobs=threads),
               threads, log_path, ok_codes=(0, 1))         # 1: some metric failed; the others are kept
    with open(JobLayout(eval_dir).scores) as f:
        scores = json.load(f)
    extra = {}
    run_info = JobLayout(eval_dir).evaluation_run
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
              **{key: extra.get(key) for key in ("infom", "infoe", "infoc", "dci_e", "dci_s")},
              "pvae_active_dims": finished.get("active_dims") if finished else None,
              "captured_factors": capture["captured_factors"], "captured": capture["captured"],
              "capture_curve": capture_curve(os.path.join(train_dir, LOG_NAME)),
              "capture_nmi": capture["capture_nmi"], "factor_names": list(capture["capture_nmi"]),
              "readout_nmi": capture["readout_nmi"],
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
