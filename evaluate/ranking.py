"""Comparing runs: each leaderboard metric's rank, and the mean rank across metrics.

The challenge's aggregate formula was never published: it was described only as "a mixture of several metrics", computed
on hidden datasets. The mean rank here is a local summary for choosing between runs, not the leaderboard's score.
"""
import numpy as np
from scipy.stats import rankdata

from evaluate.errors import EvaluationError
from evaluate.metrics import LEADERBOARD
from submission.files import LABELS, ArtifactError
from submission.files import read_scores as read_scores_file

AGGREGATE_NOTE = ("The official aggregate formula was never published (only 'a mixture of several metrics' on hidden "
                  "datasets); the mean rank is a local summary, not the leaderboard's score.")


def read_scores(run_dir):
    try:
        return read_scores_file(run_dir)
    except ArtifactError as exc:
        raise EvaluationError(str(exc)) from None


def rank_runs(scores_by_run):
    """Ranks per metric (1 = best; ties share the average rank; a run without a score is left unranked) and each run's
    mean rank over the metrics it has.

    Args:
      scores_by_run: dict run name -> dict metric -> score or None.
    Returns:
      (ranks: dict run -> dict metric -> rank or None, mean_rank: dict run -> float or None)
    """
    runs = list(scores_by_run)
    ranks = {run: {} for run in runs}
    for metric in LEADERBOARD:
        scored = [run for run in runs if scores_by_run[run].get(metric) is not None]
        metric_ranks = rankdata([-scores_by_run[run][metric] for run in scored], method="average") if scored else []
        for run in runs:
            ranks[run][metric] = None
        for run, rank in zip(scored, metric_ranks):
            ranks[run][metric] = float(rank)
    mean_rank = {}
    for run in runs:
        have = [r for r in ranks[run].values() if r is not None]
        mean_rank[run] = float(np.mean(have)) if have else None
    return ranks, mean_rank


def compare(run_dirs):
    """Read each directory's scores.json; return {"scores", "ranks", "mean_rank"}, runs keyed by directory."""
    if not run_dirs:
        raise EvaluationError("compare: no run directories given; expected one or more output directories")
    scores = {run_dir: read_scores(run_dir) for run_dir in run_dirs}
    ranks, mean_rank = rank_runs(scores)
    return {"scores": scores, "ranks": ranks, "mean_rank": mean_rank}


def format_comparison(comparison):
    runs = sorted(comparison["scores"], key=lambda r: (comparison["mean_rank"][r] is None, comparison["mean_rank"][r]))
    width = max(len("run"), *(len(r) for r in runs))
    header = f"{'run':<{width}}  " + "  ".join(f"{LABELS[m]:>14}" for m in LEADERBOARD) + f"  {'mean rank':>9}"
    lines = [header]
    for run in runs:
        cells = []
        for metric in LEADERBOARD:
            score, rank = comparison["scores"][run][metric], comparison["ranks"][run][metric]
            cells.append(f"{score:.4f} ({rank:g})".rjust(14) if score is not None else f"{'n/a':>14}")
        mean = comparison["mean_rank"][run]
        lines.append(f"{run:<{width}}  " + "  ".join(cells) + f"  {mean:>9.2f}" if mean is not None else
                     f"{run:<{width}}  " + "  ".join(cells) + f"  {'n/a':>9}")
    lines.append("score (rank) per metric, rank 1 = best. " + AGGREGATE_NOTE)
    return "\n".join(lines)
