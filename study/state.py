"""Where a study keeps its state, and what each trial's state is. The one owner of the study's file layout:

    studies/<name>/study.json                 the trials asked for so far (their specs, in order), grows with each run
    studies/<name>/runs/<trial-id>.json       a finished trial (written by study.trial.run_trial)
    studies/<name>/runs/<trial-id>.failed.json   a trial's last failure: its one error line (gone once it succeeds)
    studies/<name>/table.md, table.png        python -m study table
    scratch/studies/<name>/                   checkpoints, exports and evaluations (study.trial), Ray's files (ray/),
                                              the run lock (run.lock) and a marker per running trial (running/<id>)

The study directory holds only small files, so it can be committed; everything heavy or machine-bound is in scratch.
The run lock is the kit's one lock (an flock): the kernel releases it when the run dies, so a crashed run never leaves a
study stuck.
"""
import contextlib
import dataclasses
import json
import os
import re

from study.plan import StudyError
from study.trial import TrialSpec, recipe_file, recipe_sha, run_path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclasses.dataclass(frozen=True)
class StudyPaths:
    name: str
    study_dir: str       # small, committable
    scratch_dir: str     # heavy or machine-bound

    @property
    def manifest(self) -> str:
        return os.path.join(self.study_dir, "study.json")

    @property
    def ray_dir(self) -> str:
        return os.path.join(self.scratch_dir, "ray")

    @property
    def lock_file(self) -> str:
        return os.path.join(self.scratch_dir, "run.lock")

    def running_marker(self, trial_id: str) -> str:
        return os.path.join(self.scratch_dir, "running", trial_id)

    def failure_file(self, trial_id: str) -> str:
        return os.path.join(self.study_dir, "runs", f"{trial_id}.failed.json")

    def run_file(self, spec: TrialSpec) -> str:
        return run_path(self.study_dir, spec)


def study_paths(name: str, output: str = "studies", scratch: str = "scratch") -> StudyPaths:
    if not NAME_RE.match(name or ""):
        raise StudyError(f"--name {name!r}: expected letters, digits, '_', '.' or '-' (it names a directory)")
    return StudyPaths(name, os.path.abspath(os.path.join(output, name)),
                      os.path.abspath(os.path.join(scratch, "studies", name)))


# --- the trials asked for ---------------------------------------------------------------------------------------------
def spec_from_key(key: dict) -> TrialSpec:
    return TrialSpec(**dict(key, bindings=tuple(key.get("bindings", ()))))


def load_manifest(paths: StudyPaths) -> list:
    """The study's TrialSpecs, in the order they were first asked for; [] for a study never run."""
    if not os.path.exists(paths.manifest):
        return []
    with open(paths.manifest) as f:
        return [spec_from_key(key) for key in json.load(f)["trials"]]


def add_to_manifest(paths: StudyPaths, specs: list) -> None:
    """Add ``specs`` to the study (a rerun with more seeds or recipes grows it; a spec already there stays)."""
    from submission.files import atomic_write_json
    trials = {spec.trial_id: spec for spec in load_manifest(paths)}
    for spec in specs:
        trials.setdefault(spec.trial_id, spec)
    # A list, not a dict by id: the JSON writer sorts keys, and the table keeps the order the trials were asked for.
    atomic_write_json({"format": 1, "name": paths.name, "trials": [spec.key() for spec in trials.values()]},
                      paths.manifest)


# --- each trial's state -----------------------------------------------------------------------------------------------
def is_done(paths: StudyPaths, spec: TrialSpec) -> bool:
    """A trial is done exactly when its run JSON exists (run_trial writes it last, atomically)."""
    return os.path.exists(paths.run_file(spec))


def check_recipe(paths: StudyPaths, spec: TrialSpec) -> None:
    """A finished run made with another version of its recipe file (its ``recipe_sha`` differs from the file's now)
    would be skipped as done and counted as the current recipe: refuse, in one line. Runs from before fingerprints
    (no ``recipe_sha``) are taken as they are."""
    path = paths.run_file(spec)
    if not os.path.exists(path):
        return
    with open(path) as f:
        made_with = json.load(f).get("recipe_sha")
    now = recipe_sha(spec.recipe)
    if made_with is not None and made_with != now:
        raise StudyError(f"{path} was made with another version of {os.path.relpath(recipe_file(spec.recipe))} "
                         f"(sha {made_with}, now {now}): expected an unchanged recipe; name the change with --grid "
                         f"bindings or start a new --name")


def check_standins(paths: StudyPaths, specs: list) -> None:
    """A study never mixes stand-in versions: when a finished run was made on another version of a procedural stand-in
    than the one the new trials would use (a study made before the stand-in changed), refuse in one line."""
    import glob
    from submission.data.registry import recorded_standins, standin_versions
    from study.trial import standins_of
    wanted = {}
    for spec in specs:
        wanted.update(standins_of(spec))
    for path in sorted(glob.glob(os.path.join(paths.study_dir, "runs", "*.json"))):
        if path.endswith(".failed.json"):
            continue
        with open(path) as f:
            made = recorded_standins(json.load(f))
        now = dict(standin_versions(made), **{k: v for k, v in wanted.items() if k in made})
        for name, version in made.items():
            if now.get(name) != version:
                raise StudyError(f"study {paths.name!r} holds runs made on stand-in version {version} of {name} (e.g. "
                                 f"{os.path.relpath(path)}), which is now version {now.get(name)}: a study never mixes "
                                 f"stand-in versions; start a new --name")


def record_failure(paths: StudyPaths, trial_id: str, error: str) -> None:
    from submission.files import atomic_write_json
    import time
    line = (error.strip().splitlines() or ["unknown error"])[-1][:300]
    atomic_write_json({"trial_id": trial_id, "error": line, "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
                      paths.failure_file(trial_id))


def failure(paths: StudyPaths, trial_id: str) -> str:
    """The error line of the trial's last failure, or None."""
    try:
        with open(paths.failure_file(trial_id)) as f:
            return json.load(f)["error"]
    except (OSError, ValueError, KeyError):
        return None


def clear_failure(paths: StudyPaths, trial_id: str) -> None:
    if os.path.exists(paths.failure_file(trial_id)):
        os.remove(paths.failure_file(trial_id))


def mark_running(paths: StudyPaths, trial_id: str, running: bool) -> None:
    marker = paths.running_marker(trial_id)
    if running:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        open(marker, "w").close()
    elif os.path.exists(marker):
        os.remove(marker)


def trial_state(paths: StudyPaths, spec: TrialSpec, run_alive: bool) -> str:
    """"done", "running", "failed" or "pending". A marker left by a dead run means nothing: that trial is pending."""
    if is_done(paths, spec):
        return "done"
    if run_alive and os.path.exists(paths.running_marker(spec.trial_id)):
        return "running"
    return "failed" if failure(paths, spec.trial_id) else "pending"


# --- the run lock -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def run_lock(paths: StudyPaths):
    """Held by the one ``study run`` of a study: the kit's one lock (``submission.files.RunLock``, an flock the kernel
    drops when its holder dies) on ``run.lock`` in the study's scratch directory. A second run raises StudyError (one
    line naming the holder's PID). On release the lock file goes, and so does the scratch directory if it is empty."""
    from submission.files import ArtifactError, RunLock
    existed = os.path.isdir(paths.scratch_dir)
    lock = RunLock(paths.scratch_dir, f"run of study {paths.name!r}", name=os.path.basename(paths.lock_file))
    try:
        lock.acquire()
    except ArtifactError as exc:
        raise StudyError(str(exc)) from None
    try:
        yield lock
    finally:
        lock.release()
        if not existed:
            try:
                os.rmdir(paths.scratch_dir)
            except OSError:
                pass                      # it holds the study's work: keep it


def run_alive(paths: StudyPaths) -> bool:
    """Whether a ``study run`` of this study holds its lock now."""
    from submission.files import lock_holder
    return lock_holder(paths.scratch_dir, os.path.basename(paths.lock_file)) is not None
