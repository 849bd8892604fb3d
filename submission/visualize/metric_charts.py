"""Metric bar charts from ``scores.json``: one run's leaderboard numbers, or several runs side by side."""
import json
import math
import os

import numpy as np

from submission.files import LEADERBOARD_KEYS

from .sources import VisualizeError

BOUNDED_EXTRAS = ("extras.infom", "extras.infoe", "extras.infoc", "extras.dci_e", "extras.dci_s")


def flatten_numbers(tree, prefix: str = "") -> dict:
    """{"a": {"b": 1.0}} -> {"a.b": 1.0}; only finite numbers are kept."""
    flat = {}
    for key, value in (tree.items() if isinstance(tree, dict) else ()):
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


def read_scores(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            scores = json.load(f)
    except OSError as exc:
        raise VisualizeError(f"scores file {path} is unreadable ({exc.strerror}): expected evaluate's scores.json") from None
    except json.JSONDecodeError as exc:
        raise VisualizeError(f"scores file {path} is not JSON ({exc.msg} at line {exc.lineno}): expected evaluate's "
                             f"scores.json") from None
    # The five leaderboard numbers and, from "extras", the ones on the same 0-1 scale (InfoMEC); not TC or NLL.
    flat = {name: value for name, value in flatten_numbers(scores).items()
            if not name.startswith("extras.") or name in BOUNDED_EXTRAS}
    if not flat:
        raise VisualizeError(f"scores file {path} holds no numbers: expected evaluate's scores.json")
    return flat


def metric_order(runs: dict) -> list:
    names = {name for scores in runs.values() for name in scores}
    known = [name for name in LEADERBOARD_KEYS if name in names]     # the leaderboard's first, then any other
    return known + sorted(names - set(known))


def metric_bars_figure(runs: dict, title: str = "metrics"):
    """``runs``: {run label: {metric: score}}; grouped bars, one group per metric and one colour per run."""
    from matplotlib.figure import Figure
    metrics = metric_order(runs)
    figure = Figure(figsize=(max(6.0, 1.2 * len(metrics) + 0.5 * len(metrics) * len(runs)), 4.2), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / max(len(runs), 1)
    positions = np.arange(len(metrics))
    for i, (label, scores) in enumerate(runs.items()):
        heights = [scores.get(m, np.nan) for m in metrics]
        bars = ax.bar(positions + (i - (len(runs) - 1) / 2) * width, heights, width, label=label)
        for bar, height in zip(bars, heights):
            if not np.isnan(height):
                ax.annotate(f"{height:.3f}", (bar.get_x() + bar.get_width() / 2, height), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(positions, metrics, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure


def run_label(run_dir: str) -> str:
    """A short name for a run directory: the evaluation name, plus the stage for a train/ or pretrain/ directory."""
    path = os.path.normpath(os.path.abspath(run_dir))
    name = os.path.basename(path)
    if name in ("train", "pretrain"):
        return f"{os.path.basename(os.path.dirname(path))}/{name}"
    return name
