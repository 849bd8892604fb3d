"""The evaluator's text table: the run's scores, how its codes were computed, and the extra metrics below them."""
import numpy as np

from evaluate import extra
from submission.data.registry import recorded_standins


def format_number(value):
    return str(value) if isinstance(value, (int, np.integer)) else f"{float(value):.4f}"


def _extra_rows(row):
    """The extra metrics' lines of the table: below the leaderboard's, with what was skipped and why."""
    if row["error"]:
        return ["", f"extra metrics (not on the leaderboard): FAILED: {row['error']}"]
    lines = ["", f"extra metrics (not on the leaderboard, not in scores.json): {row['num_samples']} images"
                 f"{', ' + str(row['model_samples']) + ' through the model' if row['model_samples'] else ''}, "
                 f"{row['seconds']:.1f} s"]
    explained = set()
    for key, label in extra.SUMMARY.items():
        group = next(g for g, keys in extra.GROUPS.items() if key in keys)
        value = row["values"][key]
        if value is not None:
            shown = f"{value} of {row['num_codes']}" if key == "active_dims" else f"{value:.4f}"
            lines.append(f"  {label:<34} {shown:>9}  evaluation_results.{key}")
            continue
        reason = row["errors"].get(group) or row["skipped"].get(group, "")
        state = "FAILED" if group in row["errors"] else "skipped"
        lines.append(f"  {label:<34} {state:>9}" + (f"  {reason}" if reason not in explained else ""))
        explained.add(reason)
    return lines


def codes_line(info):
    """How the codes were computed, when not exactly as dlib batches them: the fast mode's measured departure."""
    images = info.get("images") or {}
    deviation = images.get("cache_vs_exact")
    if info.get("mode") != "fast" or deviation is None:
        return None
    optimized = ", by an inference-optimized copy" if images.get("bulk_encoder") == "inference-optimized copy" else ""
    exact = ", ".join(images.get("served_exactly") or [])
    return (f"codes: each distinct image encoded once{optimized} (batches of {images.get('bulk_batch_size')}); "
            f"against dlib's batching on {deviation['requests']} sampled requests ({deviation['codes']} codes): max "
            f"|diff| {deviation['max_abs']:.2g}, median {deviation['median_abs']:.2g}"
            + (f"; {exact}: bit for bit as dlib batches" if exact else "") + " (--exact: every metric bit for bit)")


def format_table(info):
    """The run's scores as a table for people."""
    standin = recorded_standins(info).get(info["dataset"])
    standin = f" (stand-in v{standin})" if standin else ""
    lines = [f"{info['model']} on {info['dataset']}{standin}: {info['mode']} mode, "
             f"{'QUICK settings (not the leaderboard numbers)' if info['settings'] == 'quick' else 'challenge settings'}, "
             f"{info['total_s']:.1f} s"]
    codes = codes_line(info)
    if codes:
        lines.append(codes)
    if "device_note" in info:
        lines.append(f"NOTE: {info['device_note']}")
    if info["metrics"]:
        lines.append(f"{'metric':<18} {'score':>7}  {'seconds':>7}  key")
    for metric, row in info["metrics"].items():
        score = f"{row['score']:.4f}" if row["score"] is not None else "FAILED"
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
        lines.append(f"{metric:<18} {score:>7}  {seconds:>7}  {row['key']}")
        if row["error"]:
            lines.append(f"{'':<18} {row['error']}")
    if "extra" in info:
        lines.extend(_extra_rows(info["extra"]))
    return "\n".join(lines)
