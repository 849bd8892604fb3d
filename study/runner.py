"""Run a study's missing trials on Ray Tune: an embedded local Ray by default, or the cluster at ``address``.

Each trial is one Tune trial of ``_trainable``, which calls ``study.trial.run_trial`` with ``cpus_per_trial`` threads;
Tune only places trials on the CPUs and GPUs they ask for. Trials already done are left out before Ray starts, so a
rerun (after a kill, or with more seeds) runs exactly the missing ones. A trial that fails returns its error line
instead of raising, so Tune never retries it and the others go on; the driver records it in ``runs/<id>.failed.json``.

The run JSON is written by the trial where it runs, and again by the driver from the trial's result when the study
directory is not shared with that node (a cluster without a shared file system).
"""
import contextlib
import json
import logging
import os
import socket
import sys
import tempfile

from study.state import (StudyPaths, add_to_manifest, check_recipe, check_standins, clear_failure, is_done,
                         mark_running, record_failure, spec_from_key)
from study.trial import REPO_ROOT

# Ray reads these when it is imported: no usage report, no dashboard, no TensorBoard/CSV loggers in Tune's storage.
RAY_QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
                 "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
MAX_TEMP_DIR_LEN = 45          # Ray appends ~60 bytes of socket path; a Unix socket path holds 107
CONNECT_TIMEOUT_S = 10


class ClusterError(RuntimeError):
    """Ray could not be started or reached: one line naming the address."""


def _trainable(config: dict) -> None:
    """One Tune trial: run (or finish) the trial; report its record, or its error line instead of raising."""
    from ray import tune
    from study.trial import run_trial
    spec = spec_from_key(config["trial"]["spec"])
    try:
        record = run_trial(spec, config["study_dir"], config["scratch_dir"], threads=config["threads"])
    except Exception as exc:  # noqa: BLE001  any failure is this trial's, recorded as one line; the others go on
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        tune.report({"trial_id": spec.trial_id, "failed": f"{type(exc).__name__}: {line}"[:300]})
        return
    tune.report({"trial_id": spec.trial_id, "record": json.dumps(record)})


def temp_dir(paths: StudyPaths) -> str:
    """Ray's session files go under the study's scratch. A Unix socket path holds at most 107 bytes and Ray adds ~60
    to its temp dir, so a long scratch path is reached through a short symlink in the system's temp directory."""
    wanted = os.path.join(paths.scratch_dir, "ray", "tmp")
    os.makedirs(wanted, exist_ok=True)
    if len(wanted) <= MAX_TEMP_DIR_LEN:
        return wanted
    import hashlib
    link = os.path.join(tempfile.gettempdir(), f"ray-{hashlib.sha1(wanted.encode()).hexdigest()[:8]}")
    if os.path.realpath(link) != os.path.realpath(wanted):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(wanted, link)
    return link


def check_reachable(address: str) -> None:
    """Fail within seconds, not after Ray's minute of retries, when HOST:PORT does not answer."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            return
    except (OSError, ValueError) as exc:
        raise ClusterError(f"--address {address}: no Ray cluster answers there ({exc}); expected HOST:PORT of a "
                           f"head started with `ray start --head`, or auto") from None


def start_ray(paths: StudyPaths, address: str = None) -> None:
    """Start an embedded Ray (``address`` None) or attach to a cluster; quiet either way. Raises ClusterError."""
    os.environ.update({k: v for k, v in RAY_QUIET_ENV.items() if k not in os.environ})
    import ray
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                  runtime_env={"env_vars": {"PYTHONPATH": REPO_ROOT}})
    if address is None:
        with _stderr_to(os.path.join(paths.ray_dir, "init.log")):
            ray.init(address="local", _temp_dir=temp_dir(paths), **common)
        return
    check_reachable(address)
    try:
        with _stderr_to(os.path.join(paths.ray_dir, "init.log")):
            ray.init(address=address, **common)
    except Exception as exc:  # noqa: BLE001  Ray's own errors are several types and many lines
        from submission.files import first_line
        raise ClusterError(f"--address {address}: could not attach to a Ray cluster: "
                           f"{first_line(exc, typed=False)[:200]}") from None


@contextlib.contextmanager
def _stderr_to(path: str):
    """Ray's C++ core writes retries and warnings straight to file descriptor 2; keep them in a log, not on screen."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def check_resources(cpus_per_trial: int, gpus_per_trial: float) -> None:
    """A trial that asks for more than the whole cluster has would wait for ever: refuse it now."""
    import ray
    have = ray.cluster_resources()
    for kind, want in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
        if want > have.get(kind, 0):
            raise ClusterError(f"--{kind.lower()}s_per_trial {want}: the Ray cluster has {have.get(kind, 0):g} "
                               f"{kind}s in all")


def _tune_callback(paths: StudyPaths, bar, counts: dict):
    """Keep the study's files and the progress bar in step with Tune's trial events (runs in the driver)."""
    from ray import tune

    class StudyCallback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            mark_running(paths, trial.config["trial"]["id"], True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            result = trial.last_result or {}
            if "record" in result:
                self._done(trial, json.loads(result["record"]))
            else:
                self._failed(trial, result.get("failed", "the trial reported nothing"))

        def on_trial_error(self, iteration, trials, trial, **info):
            self._failed(trial, str(trial.get_error() or "Ray reported an error without a message"))

        def _done(self, trial, record):
            spec = spec_from_key(trial.config["trial"]["spec"])
            if not is_done(paths, spec):         # the trial ran where the study directory is not shared
                from submission.files import atomic_write_json
                atomic_write_json(record, paths.run_file(spec))
            clear_failure(paths, spec.trial_id)
            self._finish(trial, "done")

        def _failed(self, trial, error):
            record_failure(paths, trial.config["trial"]["id"], error)
            print(f"study {paths.name}: trial {trial.config['trial']['id']} failed: {error}", file=sys.stderr,
                  flush=True)
            self._finish(trial, "failed")

        def _finish(self, trial, outcome):
            mark_running(paths, trial.config["trial"]["id"], False)
            counts[outcome] += 1
            bar.set_postfix(done=counts["done"], failed=counts["failed"])
            bar.update(1)

    return StudyCallback()


def run_study(paths: StudyPaths, specs: list, cpus_per_trial: int = 1, gpus_per_trial: float = 0,
              address: str = None) -> dict:
    """Add ``specs`` to the study and run those not done; {"done": n, "failed": n, "skipped": n}. Ray starts only
    when a trial is missing, and the study's files are touched only once Ray is up (a bad address writes nothing)."""
    check_standins(paths, specs)
    for spec in specs:
        check_recipe(paths, spec)
    todo = [spec for spec in specs if not is_done(paths, spec)]
    counts = {"done": 0, "failed": 0, "skipped": len(specs) - len(todo)}
    if not todo:
        add_to_manifest(paths, specs)
        return counts
    start_ray(paths, address)
    import ray
    try:
        check_resources(cpus_per_trial, gpus_per_trial)
        add_to_manifest(paths, specs)
        _run_trials(paths, todo, cpus_per_trial, gpus_per_trial, counts)
    finally:
        ray.shutdown()
    return counts


def _run_trials(paths: StudyPaths, todo: list, cpus_per_trial: int, gpus_per_trial: float, counts: dict) -> None:
    """One Tune experiment, one trial per spec; ``counts`` is kept up to date as trials end."""
    from ray import tune
    from submission.progress import progress
    trials = [{"id": spec.trial_id, "spec": spec.key()} for spec in todo]
    param_space = {"trial": tune.grid_search(trials), "study_dir": paths.study_dir,
                   "scratch_dir": paths.scratch_dir, "threads": int(cpus_per_trial)}
    with progress(len(todo), f"study {paths.name}", unit="trials", every=1e-9) as bar:
        tuner = tune.Tuner(
            tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
            param_space=param_space,
            tune_config=tune.TuneConfig(num_samples=1, trial_dirname_creator=lambda t: t.config["trial"]["id"]),
            run_config=tune.RunConfig(name="tune", storage_path=paths.ray_dir, verbose=0,
                                      callbacks=[_tune_callback(paths, bar, counts)],
                                      failure_config=tune.FailureConfig(max_failures=0)))
        tuner.fit()
