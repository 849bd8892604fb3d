"""Training curves from the trainer's ``log.jsonl``: every loss term, KL per dimension, active dimensions, learning rate.

The trainer appends one JSON object per logging window, e.g.
``{"step": 1200, "elapsed_s": 61.2, "it_per_s": 19.6, "lr": 1e-4, "reconstruction": ..., "kl": ..., "loss": ...,
"active_dims": 7, ...}`` (loss terms averaged over the window, then the objective's diagnostics), and event records such
as ``{"event": "finished", ...}``. Reading is tolerant: unreadable lines and records without a step are skipped, and a
key that some records lack is simply missing from those points. KL per dimension is read from a list under a key such
as ``kl_per_dim``, or from scalar keys ``kl_dim_0``, ``kl_dim_1``, ...
"""
import math
import re

import numpy as np

BOOKKEEPING = {"step", "elapsed_s", "it_per_s", "event", "time", "epoch"}
LEARNING_RATE = ("lr", "learning_rate")
# The curriculum's values as the trainer logs them: progress and the objectives' scheduled weights (``lr/<group>`` are
# learning rates, plotted with them).
SCHEDULES = ("progress", "capacity", "tau", "beta", "sharpness", "discrete_capacity")
ACTIVE = re.compile(r"active|expected_open|open_gates")
KL_DIM = re.compile(r"^kl(?:_per)?_dims?[_/]?(\d+)$|^kl/(\d+)$")
KL_LIST = re.compile(r"^kl(?:_per)?_dims?$")


def read_log(path: str):
    """(records with a numeric "step", number of lines skipped), through the trainer's one reader."""
    from submission.training_log import window_records
    return window_records(path)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def split_series(records) -> dict:
    """Group a log's numbers: {"loss terms": {name: (steps, values)}, "KL per dimension": {...},
    "active dimensions": {...}, "learning rate": {...}, "schedules": {...}}; each series keeps only the records that
    have it."""
    groups = {"loss terms": {}, "KL per dimension": {}, "active dimensions": {}, "learning rate": {}, "schedules": {}}

    def add(group, name, step, value):
        steps, values = groups[group].setdefault(name, ([], []))
        steps.append(step)
        values.append(float(value))

    for record in records:
        step = record["step"]
        for key, value in record.items():
            if key in BOOKKEEPING:
                continue
            if isinstance(value, list) and KL_LIST.match(key):
                for d, v in enumerate(value):
                    if is_number(v):
                        add("KL per dimension", f"z{d}", step, v)
                continue
            if not is_number(value):
                continue
            match = KL_DIM.match(key)
            if match:
                add("KL per dimension", f"z{match.group(1) or match.group(2)}", step, value)
            elif key in LEARNING_RATE or key.startswith("lr/"):
                add("learning rate", key, step, value)
            elif key in SCHEDULES:
                add("schedules", key, step, value)
            elif ACTIVE.search(key):
                add("active dimensions", key, step, value)
            else:
                add("loss terms", key, step, value)
    return groups


def curves_figure(records, capture=()):
    """A 2 x 3 figure, one panel per group (a group the log lacks says so in its panel), and the capture probe's
    curve (``submission.capture_probe.capture_curve``) in the last panel when the log has one."""
    from matplotlib.figure import Figure
    groups = split_series(records)
    figure = Figure(figsize=(16, 8), layout="constrained")
    axes = figure.subplots(2, 3).ravel()
    if capture:
        capture_panel(axes[-1], capture)
    else:
        axes[-1].set_visible(False)
    for ax, (title, series) in zip(axes, groups.items()):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        if not series:
            ax.text(0.5, 0.5, "not in log.jsonl", ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        for name, (steps, values) in sorted(series.items(), key=lambda item: _natural(item[0])):
            ax.plot(steps, values, label=name, linewidth=1.2, marker="." if len(steps) < 30 else None)
        values = np.concatenate([np.asarray(v) for _, v in series.values()])
        if title in ("loss terms", "KL per dimension"):
            if np.all(values > 0):
                ax.set_yscale("log")
            elif np.ptp(values) > 0:
                ax.set_yscale("symlog", linthresh=max(np.abs(values[values != 0]).min(initial=1.0), 1e-6))
        if title == "learning rate":
            if np.all(values > 0):
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.legend(fontsize=7, ncol=2 if len(series) > 6 else 1)
        ax.grid(alpha=0.3)
    return figure


def capture_panel(ax, capture) -> None:
    """Each factor's best code's normalised MI at each probe, the capture threshold dashed."""
    from submission.metrics.captured import CAPTURE_THRESHOLD
    steps = [point["step"] for point in capture]
    for name in capture[-1]["capture_nmi"]:
        ax.plot(steps, [point["capture_nmi"].get(name, np.nan) for point in capture], label=name, linewidth=1.2,
                marker="." if len(steps) < 30 else None)
    ax.axhline(CAPTURE_THRESHOLD, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_title("captured factors (best code's normalised MI)", fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _natural(name: str):
    """Sort 'z10' after 'z9'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
