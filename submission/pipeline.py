"""The whole job behind ``./run.sh``: validate the variables, train (from a pretrained checkpoint when there is one, after
pretraining with PRETRAIN=on), export, evaluate, print the table (a short run, under SHORT_RUN_S, trains once on its
dataset with its model's short-run settings).

Every stage runs as its own subprocess (``python -m pretrain``, ``python -m submission.train``, ``python -m evaluate``), so
gin and torch state never leak between them and a signal to this process reaches the stage that is running. All input is
checked before anything is written: a bad variable is one line on stderr and exit code 2, with nothing on disk.
"""
import dataclasses
import os
import sys
import tempfile
import time

import aicrowd_helpers
from submission.files import (CHECKPOINT_NAME, ArtifactError, JobLayout, RunLock, atomic_copy, format_scores,
                              read_scores)
from submission.budget import format_seconds, parse_budget
from submission.stages import StageFailed, StageInterrupted, TrainingPlan, evaluate_args, run_stage
from submission.data.registry import OWN_DATA_PREFIX

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("pvae", "betatcvae", "beta_vae", "qlae")

# With PRETRAIN=on, pretraining gets this share of the training budget when no pretrained checkpoint exists yet.
PRETRAIN_SHARE = 0.4
# PRETRAIN: "auto" (the default) fine-tunes from a pretrained checkpoint in PRETRAINED_DIR when there is one and otherwise
# trains on the dataset from the start (no toy pretraining: on the stand-ins it cost the arm, studies/recipes-v2);
# "on" pretrains on mpi3d_toy first when there is none; "off" never reads or writes one.
PRETRAIN_MODES = ("auto", "on", "off")
# On the grader, the budget is a hard limit for the whole job: keep this much back for start-up and the final export.
GRADING_MARGIN_S = 15 * 60
LOCAL_DEFAULT_BUDGET = "4m"
GRADING_DEFAULT_BUDGET = "8h"
# A job whose budget is under this gets its model's short-run settings (submission/configs/short/<model>.gin), when the
# model has them, on top of the recipe, and trains on its dataset only (no pretraining): what a few thousand steps need
# to learn the arm (see that file).
SHORT_RUN_S = 30 * 60


class ConfigError(ValueError):
    """A bad variable: one line for a person."""


@dataclasses.dataclass
class JobConfig:
    model: str
    dataset: str
    budget_s: float
    seed: int
    grading: bool
    evaluate: bool
    eval_settings: str     # "challenge" (the leaderboard's) or "quick" (a tenth of the samples, for smoke runs)
    output_dir: str        # $AICROWD_OUTPUT_PATH/$AICROWD_EVALUATION_NAME
    data_dir: str
    pretrained_dir: str
    short_run_settings: str = "auto"  # "auto": the short-run file when the budget is under SHORT_RUN_S; "off": never
    channels: int = 3                 # the dataset's image channels: 1 builds the model with model.channels = 1
    pretrain: str = "auto"            # PRETRAIN_MODES

    @property
    def recipe(self) -> str:
        return os.path.join(REPO_ROOT, "submission", "configs", f"{self.model}.gin")

    @property
    def short_run_file(self):
        """The model's short-run settings file when this job uses them, else None."""
        path = os.path.join(REPO_ROOT, "submission", "configs", "short", f"{self.model}.gin")
        use = self.short_run_settings == "auto" and self.budget_s < SHORT_RUN_S and os.path.exists(path)
        return path if use else None

    @property
    def gin_files(self) -> list:
        return [self.recipe] + ([self.short_run_file] if self.short_run_file else [])

    @property
    def pretrained_checkpoint(self) -> str:
        return os.path.join(self.pretrained_dir, f"{self.model}.pt")

    @property
    def uses_pretrained(self) -> bool:
        """Fine-tunes from the pretrained checkpoint (there already, or made by this job's pretraining stage)."""
        if self.short_run_file or self.pretrain == "off":
            return False
        return self.pretrain == "on" or os.path.exists(self.pretrained_checkpoint)

    @property
    def layout(self) -> JobLayout:
        return JobLayout(self.output_dir)

    @property
    def export_path(self) -> str:
        return self.layout.export


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(path: str, what: str) -> None:
    """Fail unless ``path`` exists as a writable directory or could be created; probe, and leave nothing behind."""
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        raise ConfigError(f"{what}={path!r} is not writable: {existing!r} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(f"{what}={path!r} is not writable: cannot create files in {existing!r} ({exc.strerror})") from None


def _check_dataset(name: str, data_dir: str, data_dir_explicit: bool) -> int:
    """The name is known and its files are usable; checked without converting or reading images (nothing is written:
    an official npz is converted by the first stage that trains on it, with its progress shown). Returns the images'
    channel count."""
    from submission.data import DATASET_NAMES, DatasetError, get_dataset, is_dataset_name
    from submission.data.registry import PROCEDURAL_DATASETS
    if not is_dataset_name(name):
        raise ConfigError(f"AICROWD_DATASET_NAME={name!r} is unknown; known datasets: {', '.join(DATASET_NAMES)}")
    if data_dir_explicit and not os.path.isdir(data_dir):
        raise ConfigError(f"DISENTANGLEMENT_LIB_DATA={data_dir!r} does not exist or is not a directory")
    if name in PROCEDURAL_DATASETS:
        return get_dataset(name).observation_shape[-1]   # no file (and nothing rendered until images are asked for)
    try:
        return get_dataset(name, data_dir=data_dir, check_only=True).observation_shape[-1]
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None


def _check_pretrained(path: str) -> None:
    """A pretrained checkpoint that is there must load through the kit's one loader (weights only: nothing in it runs)."""
    if not os.path.exists(path):
        return
    from submission.checkpoints import load_checkpoint
    try:
        load_checkpoint(path)
    except ArtifactError as exc:
        raise ConfigError(f"{exc} (the pretrained checkpoint; remove it to pretrain afresh)") from None


def _caller_path(env, path: str) -> str:
    """A path from a variable, absolute: a relative one is the caller's (``run.sh`` passes its directory as
    ``KIT_CALLER_DIR``; without it, the current directory)."""
    return os.path.abspath(os.path.join(env.get("KIT_CALLER_DIR") or os.getcwd(), os.path.expanduser(path)))


def read_config(env=None) -> JobConfig:
    """Read and validate every variable; raise ConfigError (one line) on the first bad one. Writes nothing."""
    env = os.environ if env is None else env
    grading = bool(env.get("AICROWD_IS_GRADING"))
    model = env.get("MODEL", "pvae").strip().lower()
    if model not in MODELS:
        raise ConfigError(f"MODEL={model!r} is unknown; choose one of: {', '.join(MODELS)}")
    try:
        budget_s = parse_budget(env.get("BUDGET") or (GRADING_DEFAULT_BUDGET if grading else LOCAL_DEFAULT_BUDGET))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        seed = int(env.get("SEED", "0"))
    except ValueError:
        raise ConfigError(f"SEED={env.get('SEED')!r} is malformed: expected an integer") from None
    if not 0 <= seed < 2 ** 32:
        raise ConfigError(f"SEED={env.get('SEED')!r} is out of range: expected an integer from 0 to {2 ** 32 - 1}")
    precision = env.get("KIT_PRECISION", "").strip().lower()
    if precision not in ("", "auto", "fp32", "bf16"):
        raise ConfigError(f"KIT_PRECISION={env.get('KIT_PRECISION')!r} is unknown: expected fp32, bf16 or auto")
    output_path = (_caller_path(env, env["AICROWD_OUTPUT_PATH"]) if env.get("AICROWD_OUTPUT_PATH")
                   else os.path.join(REPO_ROOT, "scratch", "shared"))
    evaluation_name = env.get("AICROWD_EVALUATION_NAME") or "local_evaluation"
    if os.sep in evaluation_name or evaluation_name in (".", ".."):
        raise ConfigError(f"AICROWD_EVALUATION_NAME={evaluation_name!r} is malformed: expected a plain directory name")
    output_dir = JobLayout.of(output_path, evaluation_name).root
    check_writable(output_dir, "AICROWD_OUTPUT_PATH")
    data_dir_explicit = bool(env.get("DISENTANGLEMENT_LIB_DATA"))
    data_dir = (_caller_path(env, env["DISENTANGLEMENT_LIB_DATA"]) if data_dir_explicit
                else os.path.join(REPO_ROOT, "scratch", "dataset"))
    dataset = env.get("AICROWD_DATASET_NAME") or ("mpi3d_toy" if grading else "mpi3d_sim_realistic")
    if dataset.startswith(OWN_DATA_PREFIX) and len(dataset) > len(OWN_DATA_PREFIX):
        dataset = OWN_DATA_PREFIX + _caller_path(env, dataset[len(OWN_DATA_PREFIX):])
    channels = _check_dataset(dataset, data_dir, data_dir_explicit)
    evaluate_flag = env.get("EVALUATE", "0" if grading else "1").strip().lower()
    if evaluate_flag not in ("0", "1", "false", "true", "no", "yes"):
        raise ConfigError(f"EVALUATE={evaluate_flag!r} is malformed: expected 0 or 1")
    eval_settings = env.get("EVAL_SETTINGS", "challenge").strip().lower()
    if eval_settings not in ("challenge", "quick"):
        raise ConfigError(f"EVAL_SETTINGS={eval_settings!r} is unknown; choose 'challenge' (the leaderboard's) or 'quick'")
    short_run_settings = env.get("SHORT_RUN_SETTINGS", "auto").strip().lower()
    if short_run_settings not in ("auto", "off"):
        raise ConfigError(f"SHORT_RUN_SETTINGS={short_run_settings!r} is unknown; choose 'auto' (the default: "
                          f"submission/configs/short/<model>.gin for budgets under {SHORT_RUN_S // 60} minutes) or 'off'")
    pretrained_dir = (_caller_path(env, env["PRETRAINED_DIR"]) if env.get("PRETRAINED_DIR")
                      else os.path.join(REPO_ROOT, "pretrain", "checkpoints"))
    pretrain = env.get("PRETRAIN", "auto").strip().lower()
    if pretrain not in PRETRAIN_MODES:
        raise ConfigError(f"PRETRAIN={env.get('PRETRAIN')!r} is unknown; choose 'auto' (the default: a pretrained "
                          f"checkpoint if there is one, else none), 'on' (pretrain on mpi3d_toy first) or 'off'")
    job = JobConfig(model=model, dataset=dataset, budget_s=budget_s, seed=seed, grading=grading,
                    evaluate=evaluate_flag in ("1", "true", "yes"), eval_settings=eval_settings,
                    output_dir=output_dir, data_dir=data_dir, pretrained_dir=pretrained_dir,
                    short_run_settings=short_run_settings, channels=channels, pretrain=pretrain)
    if job.uses_pretrained:                    # only a job that would start from the checkpoint reads it
        _check_pretrained(job.pretrained_checkpoint)
    return job


class Interrupted(RuntimeError):
    """A SIGTERM/SIGINT reached the job: the running stage saved its work; no later stage starts."""


SAVED = {"pretrain": "it saved its checkpoint", "fine-tune": "it saved its checkpoint and export",
         "train": "it saved its checkpoint and export", "evaluate": "the export is intact; rerun to evaluate it"}


def _run_stage(name: str, args: list, ok_codes=(0,)) -> int:
    try:
        return run_stage(name, args, ok_codes)
    except StageInterrupted as exc:
        raise Interrupted(f"{exc}; {SAVED.get(name, 'nothing is lost')}; the job stops here (rerun ./run.sh to "
                          f"continue)") from None


def plan_budget(job: JobConfig, need_pretrain: bool) -> tuple:
    """(pretrain_s, finetune_s): the training budget split between the stages."""
    train_s = job.budget_s
    if job.grading:
        train_s = max(train_s - min(GRADING_MARGIN_S, 0.05 * train_s), 0.5 * train_s)
    pretrain_s = PRETRAIN_SHARE * train_s if need_pretrain and job.uses_pretrained else 0.0
    return pretrain_s, train_s - pretrain_s


def run(job: JobConfig, events=None) -> dict:
    """Run the whole job; return the scores (empty when evaluation is off). ``events``: the job's
    ``aicrowd_helpers.Events`` (default: one for its directory)."""
    start = time.monotonic()
    short = job.short_run_file is not None
    scratch = not job.uses_pretrained             # one stage on the dataset from the start
    need_pretrain = job.uses_pretrained and not os.path.exists(job.pretrained_checkpoint)
    pretrain_s, finetune_s = plan_budget(job, need_pretrain)
    print(f"model={job.model} dataset={job.dataset} budget={format_seconds(job.budget_s)} seed={job.seed} "
          f"output={job.output_dir}", flush=True)
    if short:
        print(f"short run (budget under {SHORT_RUN_S // 60} minutes): {os.path.relpath(job.short_run_file, REPO_ROOT)} "
              f"on top of the recipe, no pretraining (SHORT_RUN_SETTINGS=off: the recipe as is)", flush=True)
    elif scratch:
        why = ("PRETRAIN=off" if job.pretrain == "off" else
               f"no pretrained checkpoint at {job.pretrained_checkpoint}; PRETRAIN=on pretrains on mpi3d_toy first")
        print(f"training on {job.dataset} from the start ({why})", flush=True)
    events = events or aicrowd_helpers.Events(job.output_dir, job.grading)
    events.execution_start()
    bindings = () if job.channels == 3 else (f"model.channels = {job.channels}",)
    if bindings:
        print(f"{job.dataset} has {job.channels}-channel images: the model is built with model.channels = "
              f"{job.channels}", flush=True)
    # The recipes' schedules run over the whole job: pretraining is their first PRETRAIN_SHARE, fine-tuning the rest
    # (also when the pretrained checkpoint came from an earlier job: it went through that first part).
    plan = TrainingPlan(tuple(job.gin_files), bindings, job.seed, PRETRAIN_SHARE, job.data_dir, job.output_dir,
                        job.grading)
    train_end = 0.9 if job.evaluate else 1.0
    pretrain_end = train_end * pretrain_s / (pretrain_s + finetune_s)
    if need_pretrain:
        run_dir = os.path.join(job.output_dir, "pretrain")
        _run_stage("pretrain", plan.pretrain(run_dir, pretrain_s, grader_span=(0.0, pretrain_end)))
        try:
            atomic_copy(os.path.join(run_dir, CHECKPOINT_NAME), job.pretrained_checkpoint)
            print(f"pretrained checkpoint saved to {job.pretrained_checkpoint}", flush=True)
        except OSError as exc:  # a read-only checkout: fine-tune straight from the run directory
            print(f"could not keep the pretrained checkpoint in {job.pretrained_dir} ({exc.strerror}); "
                  "using it from the run directory", flush=True)
            job = dataclasses.replace(job, pretrained_dir=run_dir)
            os.replace(os.path.join(run_dir, CHECKPOINT_NAME), job.pretrained_checkpoint)
    elif not scratch:
        print(f"using pretrained checkpoint {job.pretrained_checkpoint}", flush=True)
    # Whatever pretraining really took, fine-tuning gets what is left of the training budget.
    finetune_s = max(pretrain_s + finetune_s - (time.monotonic() - start), 30.0)
    _run_stage("train" if scratch else "fine-tune",
               plan.fine_tune(job.dataset, job.layout.train_dir, job.export_path, finetune_s,
                              init_from=None if scratch else job.pretrained_checkpoint,
                              grader_span=(pretrain_end, train_end)))
    if not os.path.exists(job.export_path):
        raise StageFailed(f"fine-tuning exited without writing {job.export_path}")
    scores = {}
    if job.evaluate:
        # Exit code 1: some metric failed, the others' results are written and worth showing.
        _run_stage("evaluate", evaluate_args(job.export_path, job.dataset, job.output_dir,
                                             quick=job.eval_settings == "quick", data_dir=job.data_dir,
                                             job_dir=job.output_dir, grader_span=(train_end, 1.0),
                                             grading=job.grading), ok_codes=(0, 1))
        scores = read_scores(job.layout.scores)
        # The run report was written at the end of training; write it again with the scores in it.
        _run_stage("report", ["submission.visualize", "--run", job.output_dir, "--data_dir", job.data_dir],
                   ok_codes=(0, 1, 2))
    events.register_progress(1.0)
    events.submit({"representation": job.export_path, "scores": scores})
    print(f"\nrepresentation: {job.export_path}")
    report = os.path.join(job.layout.report_dir, "report.html")
    if os.path.exists(report):
        print(f"report: {report}")
    if scores:
        settings = "QUICK settings, not the leaderboard's" if job.eval_settings == "quick" else "challenge settings"
        print(f"leaderboard metrics on {job.dataset}, {settings} ({job.layout.scores}):")
        print(format_scores(scores))
    print(f"done in {format_seconds(time.monotonic() - start)}", flush=True)
    return scores


def main() -> int:
    try:
        job = read_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The job directory is the job's alone from here to the end, before anything is written in it.
    lock = RunLock(job.output_dir, "job")
    try:
        lock.acquire()
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    events = aicrowd_helpers.Events(job.output_dir, job.grading)
    try:
        run(job, events)
    except (Interrupted, KeyboardInterrupt) as exc:
        line = str(exc) or "Ctrl-C between stages; what the stages wrote is saved (rerun ./run.sh to continue)"
        events.execution_error(line)
        print(f"stopped: {line}", file=sys.stderr)
        return 130
    except StageFailed as exc:
        events.execution_error(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
