"""The local evaluator: the challenge's leaderboard numbers, computed by disentanglement_lib's own metric functions at the
challenge's settings, on the kit's datasets, fast.

    import evaluate
    report = evaluate.run("scratch/shared/local_evaluation/representation/pytorch_model.pt", "mpi3d_sim_realistic",
                          "scratch/shared/local_evaluation")
    report["scores"]          # {"factor_vae_metric": ..., "dci": ..., "sap_score": ..., "mig": ..., "irs": ...}
    report["results"]["extra"]   # not on the leaderboard: {"mic": ..., "active_dims": ..., "gaussian_tc": ..., ...}
    evaluate.compare(["runs/a", "runs/b"])   # per-metric ranks and mean rank

See evaluate/README.md, and ``python -m evaluate --help``.
"""
from evaluate.errors import EvaluationError
from evaluate.metrics import DEFAULT_METRICS, EXTRA, LEADERBOARD, METRIC_NAMES, SCORE_KEYS, SELECTABLE
from evaluate.ranking import compare, rank_runs
from evaluate.runner import run

__all__ = ["DEFAULT_METRICS", "EvaluationError", "EXTRA", "LEADERBOARD", "METRIC_NAMES", "SCORE_KEYS", "SELECTABLE",
           "compare", "rank_runs", "run"]
