"""The challenge's metrics: names, leaderboard keys, gin settings (one scope per metric), and dlib's result layout.

Each metric is disentanglement_lib's own function, configured by ``evaluate/configs/<metric>.gin`` exactly as the challenge
configured it (dlib's ``unsupervised_study_v1`` metric configs plus the starter kit's ``irs.gin``). Gin state is global, so
every metric runs inside :func:`metric_config`, which clears the config before and after: no setting leaks between metrics.
"""
import contextlib
import os
import shutil
import tempfile

import gin

from evaluate.errors import EvaluationError
from submission.files import LEADERBOARD_KEYS, atomic_replace_dir

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
QUICK_CONFIG = os.path.join(CONFIG_DIR, "quick.gin")

# metric -> the key of dlib's results dict that the leaderboard reads (as "evaluation_results.<key>").
SCORE_KEYS = {
    "factor_vae_metric": "eval_accuracy",
    "dci": "disentanglement",
    "sap_score": "SAP_score",
    "mig": "discrete_mig",
    "irs": "IRS",
    "beta_vae_sklearn": "eval_accuracy",
}
LEADERBOARD = LEADERBOARD_KEYS
METRIC_NAMES = tuple(SCORE_KEYS)  # dlib's metrics
# Not on the leaderboard: MIC, active dims, total correlation, reconstruction error (evaluate/extra.py). Never in
# scores.json; on by default because it costs seconds (its ~10,000 images join the fast path's bulk pass).
EXTRA = "extra"
SELECTABLE = METRIC_NAMES + (EXTRA,)
DEFAULT_METRICS = LEADERBOARD + (EXTRA,)


def import_dlib_metrics():
    """Import dlib's metric modules so that their gin configurables (``@mig``, ``@dci``, ...) exist, and the kit's
    ``@extra_metrics``. Slow: imports TF."""
    import logging

    class _DropGinRenameNotice(logging.Filter):  # gin 0.4 warns once per dlib configurable that uses `blacklist=`
        def filter(self, record):
            return "blacklist is deprecated" not in record.getMessage()

    logging.getLogger().addFilter(_DropGinRenameNotice())
    # Registering configurables fails once any gin config in this process was finalised (e.g. by training first).
    with gin.unlock_config():
        from disentanglement_lib.evaluation.metrics import (beta_vae, dci, factor_vae, irs, mig,  # noqa: F401
                                                             sap_score, utils)
        from evaluate import extra  # noqa: F401


@gin.configurable("evaluation")
def evaluation_settings(evaluation_fn=gin.REQUIRED, random_seed=gin.REQUIRED, name=""):
    """The challenge's ``evaluation.*`` bindings: the metric function and the seed of its RandomState.

    Named ``evaluation`` like dlib's ``evaluate.evaluate`` (which needs TF Hub), so the saved config reads as the grader's.
    """
    del name
    return evaluation_fn, random_seed


def config_files(metric, quick=False, gin_files=()):
    if metric not in SELECTABLE:
        raise EvaluationError(f"unknown metric {metric!r}; expected some of: {', '.join(SELECTABLE)}")
    return [os.path.join(CONFIG_DIR, f"{metric}.gin")] + ([QUICK_CONFIG] if quick else []) + list(gin_files)


@contextlib.contextmanager
def metric_config(metric, quick=False, gin_files=(), gin_bindings=()):
    """Parse ``metric``'s gin settings (then --quick, then the user's files and bindings); clear them on exit."""
    from submission.gin_compat import gin_python311_compat  # the kit's one fix for gin 0.4 on Python 3.11
    gin_python311_compat()
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(config_files(metric, quick, gin_files), list(gin_bindings))
    except EvaluationError:
        raise
    except Exception as exc:
        gin.clear_config()
        first = str(exc).strip().splitlines()
        raise EvaluationError(f"gin settings for {metric}: {first[0] if first else type(exc).__name__}") from None
    try:
        yield
    finally:
        gin.clear_config()


def check_configs(metrics, quick=False, gin_files=(), gin_bindings=()):
    """Fail early (before anything is written) on an unknown metric or a bad gin file or binding."""
    for metric in metrics:
        with metric_config(metric, quick, gin_files, gin_bindings):
            try:
                gin.query_parameter("evaluation.evaluation_fn")
                gin.query_parameter("evaluation.random_seed")
            except ValueError:
                raise EvaluationError(f"gin settings for {metric}: evaluation.evaluation_fn and evaluation.random_seed "
                                      "must be bound") from None


def metric_dir(output_dir, metric):
    return os.path.join(output_dir, "metrics", metric)


def write_metric_results(output_dir, metric, results_dict):
    """Write ``metrics/<metric>/results/`` with dlib's own writer, as the grader did: ``aggregate/evaluation.json``
    (keys ``evaluation_results.*`` and ``evaluation_config.*``), ``json/``, and ``gin/evaluation.gin``.

    Must run inside the metric's gin scope (dlib saves the operative config). Written to a temporary directory and then
    renamed into place, so a reader never sees half a result.
    """
    from disentanglement_lib.utils import results
    parent = os.path.join(output_dir, "metrics")
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{metric}.", dir=parent)
    try:
        results.update_result_directory(os.path.join(staging, "results"), "evaluation", dict(results_dict))
        atomic_replace_dir(staging, metric_dir(output_dir, metric))
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def remove_metric_results(output_dir, metric):
    """Drop a stale result of an earlier run, so that a failed metric cannot be mistaken for a fresh one."""
    shutil.rmtree(metric_dir(output_dir, metric), ignore_errors=True)
