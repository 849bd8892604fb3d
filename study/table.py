"""The study's table and figure: mean ± std over seeds per recipe and setting, and every seed as a dot.

    studies/<name>/table.md     one row per (recipe, setting) with n, the number of seeds finished; then one row per
                                run: each factor's capture (its best latent's normalised MI), active codes, open gates
    studies/<name>/table.png    one panel per metric, one column of dots per row of the table

Only finished trials count; the std is the sample std (n - 1), and a row of one seed shows no ± at all.
"""
import glob
import json
import math
import os

from study.plan import StudyError
from study.state import StudyPaths, load_manifest
from study.trial import LEADERBOARD_KEYS, recipe_sha
from submission.data.registry import recorded_standins, standin_versions

COLUMNS = (*LEADERBOARD_KEYS, "infom", "infoe", "infoc", "dci_e", "captured_factors", "active_dims", "steps_done")
HEADERS = {"captured_factors": "captured factors", "active_dims": "active dims", "steps_done": "steps", "infom": "InfoM",
           "infoe": "InfoE", "infoc": "InfoC", "dci_e": "DCI-ES E"}
# Settings other than the grid's bindings that can differ between the trials of one study.
SETTING_KEYS = ("steps", "budget_s", "dataset", "pretrain_dataset", "pretrain_steps", "eval_settings")


def load_runs(paths: StudyPaths) -> list:
    """Every finished trial's record, in the order the study asked for them (then any others, by id)."""
    records = []
    for path in glob.glob(os.path.join(paths.study_dir, "runs", "*.json")):
        if not path.endswith(".failed.json"):
            with open(path) as f:
                records.append(json.load(f))
    order = {spec.trial_id: i for i, spec in enumerate(load_manifest(paths))}
    return sorted(records, key=lambda r: (order.get(r["trial_id"], len(order)), r["trial_id"]))


def value(record: dict, column: str):
    number = record["scores"].get(column) if column in LEADERBOARD_KEYS else record.get(column)
    return float(number) if isinstance(number, (int, float)) and math.isfinite(number) else None


def mean_std(values: list) -> tuple:
    """(mean, sample std) of the numbers; std None below two, mean None for none."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def current_recipe_sha(recipe: str):
    """The recipe file's fingerprint now, or None when the file is gone (a run of it is then taken as it is)."""
    try:
        return recipe_sha(recipe)
    except OSError:
        return None


def standin_text(standins: dict) -> str:
    """``{"mpi3d_sim_realistic": 1, "mpi3d_sim_toy": 1}`` -> ``"stand-in v1 (mpi3d_sim_realistic, mpi3d_sim_toy)"``."""
    by_version = {}
    for name, version in sorted(standins.items()):
        by_version.setdefault(version, []).append(name)
    return "; ".join(f"stand-in v{version} ({', '.join(names)})" for version, names in sorted(by_version.items()))


def setting_label(record: dict, varying: list, current_sha: str = None) -> str:
    """The run's bindings and the settings that vary in the study; a run made with an earlier version of its recipe
    file says so, so that it never reads as the recipe as it stands, and so does a run whose stand-in versions differ
    from the other runs' (only studies from before ``study run`` refused to mix them can hold such runs)."""
    parts = list(record.get("bindings") or [])
    parts += [standin_text(recorded_standins(record)) if key == "standins" else f"{key}={record.get(key)}"
              for key in varying]
    made_with = record.get("recipe_sha")
    if made_with and current_sha and made_with != current_sha:
        parts.append(f"earlier recipe file {made_with[:8]}")
    return "; ".join(parts) if parts else "recipe as is"


def group_rows(records: list) -> list:
    """[(recipe, setting, [records of its seeds])], in the records' order."""
    varying = [key for key in SETTING_KEYS if len({json.dumps(r.get(key)) for r in records}) > 1]
    if len({json.dumps(recorded_standins(r), sort_keys=True) for r in records}) > 1:
        varying.append("standins")
    shas = {recipe: current_recipe_sha(recipe) for recipe in {r["recipe"] for r in records}}
    rows = {}
    for record in records:
        rows.setdefault((record["recipe"], setting_label(record, varying, shas[record["recipe"]])), []).append(record)
    return [(recipe, setting, group) for (recipe, setting), group in rows.items()]


def format_cell(values: list, column: str) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    digits = 1 if column in ("captured_factors", "active_dims") else 0 if column == "steps_done" else 3
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def standin_heading(records: list) -> str:
    """The table's first line: which stand-in versions made its runs, and whether that is still the current one."""
    made = {}
    for record in records:
        made.update(recorded_standins(record))
    if not made:
        return "Made on dataset files, no procedural stand-in."
    now = standin_versions(made)
    stale = {name: version for name, version in made.items() if now.get(name) != version}
    note = (f" The stand-ins are now {standin_text(now)}: these runs are a record of the earlier version, never to be "
            f"mixed with runs on the current one." if stale else "")
    return f"Made on {standin_text(made)}.{note}"


def table_markdown(records: list) -> str:
    columns = [HEADERS.get(c, c) for c in COLUMNS]
    lines = [standin_heading(records), "",
             "| recipe | setting | n | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    for recipe, setting, group in group_rows(records):
        cells = [format_cell([v for v in (value(r, c) for r in group) if v is not None], c) for c in COLUMNS]
        lines.append(f"| {recipe} | {setting} | {len(group)} | " + " | ".join(cells) + " |")
    lines += ["", _footnote(records)]
    return "\n".join(lines)


def setting_letters(rows: list) -> dict:
    """{setting: "A", ...}: the letters that name long settings, the same in table.md and table.png."""
    settings = sorted({setting for _, setting, _ in rows if setting != "recipe as is"})
    return {setting: chr(ord("A") + i) for i, setting in enumerate(settings)}


def factor_order(records: list) -> list:
    """The factors in the dataset's order: a record's ``factor_names`` (written since the per-factor table), else the
    procedural dataset's own names, else alphabetical (older records keep ``capture_nmi`` as a JSON object, sorted)."""
    seen = sorted({name for r in records for name in (r.get("capture_nmi") or {})})
    for record in records:
        if record.get("factor_names"):
            order = list(record["factor_names"])
            break
    else:
        try:
            from submission.data.registry import PROCEDURAL_DATASETS, get_dataset
            dataset = records[0].get("dataset") if records else None
            order = list(get_dataset(dataset).factor_names) if dataset in PROCEDURAL_DATASETS else []
        except Exception:                 # noqa: BLE001 - the order is cosmetic; the names below still show
            order = []
    return [name for name in order if name in seen] + [name for name in seen if name not in order]


def _labelled_runs(records: list, keep):
    """(factor names, setting letters, [(row label, record), ...]) for the per-run tables, of the records ``keep``
    accepts: runs grouped as in the main table, by seed within a group; settings other than the recipe's own named by a
    letter, the same letter in every table of the study (the labels come from all the records)."""
    rows = group_rows(records)
    letter = setting_letters(rows)
    kept = [(recipe, setting, record) for recipe, setting, group in rows
            for record in sorted(group, key=lambda r: r.get("seed", 0)) if keep(record)]
    runs = [(recipe if setting == "recipe as is" else f"{recipe} ({letter[setting]})", record)
            for recipe, setting, record in kept]
    used = {setting for _, setting, _ in kept}
    names = factor_order([record for _, _, record in kept]) if kept else []
    return names, {setting: key for setting, key in letter.items() if setting in used}, runs


def _nmi_cells(nmi: dict, names: list, bold: bool = True) -> list:
    """Each factor's normalised MI with two decimals, bold when captured (if ``bold``), "–" when missing."""
    from submission.metrics.captured import CAPTURE_THRESHOLD
    return [("–" if not isinstance(nmi.get(name), (int, float)) else
             f"**{nmi[name]:.2f}**" if bold and nmi[name] >= CAPTURE_THRESHOLD else f"{nmi[name]:.2f}") for name in names]


def factor_markdown(records: list) -> str:
    """One row per finished run: each factor's best-latent normalised MI (two decimals; bold when captured), the
    captured count, the evaluator's active codes and, for gated models, the training's open gates. Settings other than
    the recipe's own are named by a letter, spelt out under the table."""
    from submission.metrics.captured import CAPTURE_THRESHOLD
    names, letter, runs = _labelled_runs(records, lambda r: r.get("capture_nmi"))
    if not runs:
        return ""
    lines = ["| run | " + " | ".join(names) + " | captured | active dims | open gates |",
             "|---|" + "---|" * (len(names) + 3)]
    for label, record in runs:
        active, gates = record.get("active_dims"), record.get("pvae_active_dims")
        lines.append(f"| {label}, seed {record.get('seed')} | " + " | ".join(_nmi_cells(record["capture_nmi"], names)) +
                     f" | {record.get('captured_factors')} of {len(names)} | "
                     f"{'–' if active is None else active} | {'–' if gates is None else f'{gates:g}'} |")
    lines.append("")
    lines.append(f"Per run: each factor's best latent's normalised MI, bold when captured (≥ {CAPTURE_THRESHOLD}). Active "
                 f"dims: codes whose variance over the data exceeds 0.01 (the evaluator's count). Open gates: a gated "
                 f"model's test-time gates still open at the end of training (– without gates)." +
                 "".join(f" ({key}) {setting}." for setting, key in letter.items()))
    return "\n".join(lines)


def readout_markdown(records: list) -> str:
    """One row per run that has the read-out (``readout_nmi``): what all its codes together carry about each factor, so
    that a factor the model dropped (low here too) shows apart from one it kept but spread over several codes (low in
    the per-run table, high here)."""
    from submission.metrics.readout import READOUT_TREES
    names, letter, runs = _labelled_runs(records, lambda r: r.get("readout_nmi"))
    if not runs:
        return ""
    lines = ["| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, record in runs:
        cells = _nmi_cells(record["readout_nmi"], names, bold=False)
        lines.append(f"| {label}, seed {record.get('seed')} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Read-out: how well all the codes together predict each factor, the normalised MI of a random "
                 f"forest's predictions ({READOUT_TREES} trees, fitted on 5,000 of the 10,000 samples, scored on the "
                 f"other 5,000; about .05 for codes that carry nothing, about .85 for a 40-valued factor coded with a "
                 f"little noise). High here and low in the per-run table: the model kept the factor but spread it over "
                 f"several codes; low in both: it dropped it." +
                 "".join(f" ({key}) {setting}." for setting, key in letter.items()))
    return "\n".join(lines)


def curve_markdown(records: list) -> str:
    """The capture probes of each run that has them (``capture_curve``): one row per probe, each factor's best-latent
    normalised MI at that step, bold when captured."""
    names, letter, runs = _labelled_runs(records, lambda r: r.get("capture_curve"))
    if not runs:
        return ""
    lines = ["| run | step | " + " | ".join(names) + " | captured |", "|---|---|" + "---|" * (len(names) + 1)]
    for label, record in runs:
        for point in record["capture_curve"]:
            lines.append(f"| {label}, seed {record.get('seed')} | {point['step']} | " +
                         " | ".join(_nmi_cells(point["capture_nmi"], names)) + f" | {len(point['captured'])} |")
    lines.append("")
    lines.append("During training: the capture probe's figures (2,000 fixed images, so a little above the 10,000-sample "
                 "figures above: about +.05 for a 40-valued factor), at the first log record past each multiple of "
                 "capture_probe.every_steps of this stage." +
                 "".join(f" ({key}) {setting}." for setting, key in letter.items()))
    return "\n".join(lines)


def _footnote(records: list) -> str:
    first = records[0]
    same = {key: first.get(key) for key in SETTING_KEYS if all(r.get(key) == first.get(key) for r in records)}
    held = ", ".join(f"{key} {same[key]}" for key in SETTING_KEYS if key in same)
    return (f"n = seeds finished; mean ± sample std (n - 1) over them. Every trial: {held or 'settings as in each row'}. "
            f"Evaluation settings \"quick\" use about a tenth of the samples (not the leaderboard's). "
            f"Captured factors: factors whose best latent's normalised MI reaches 0.2 (10,000 samples).")


def write_figure(records: list, path: str) -> None:
    """One panel per metric; in each, a column per (recipe, setting) with a dot per seed and a bar at the mean."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from submission.files import atomic_write
    rows = group_rows(records)
    # A setting (its bindings) can be long: the ticks name it by a letter, and a key under the panels spells it out.
    letter = setting_letters(rows)
    settings = list(letter)
    labels = [recipe if setting == "recipe as is" else f"{recipe} ({letter[setting]})" for recipe, setting, _ in rows]
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(2.2 * len(COLUMNS) + 0.6 * len(rows), 3.8 + 0.2 * len(settings)),
                             squeeze=False)
    for ax, column in zip(axes[0], COLUMNS):
        for x, (_, _, group) in enumerate(rows):
            values = [v for v in (value(r, column) for r in group) if v is not None]
            ax.scatter([x] * len(values), values, s=14, alpha=0.7)
            if values:
                ax.hlines(sum(values) / len(values), x - 0.3, x + 0.3, color="black", linewidth=1)
        ax.set_title(HEADERS.get(column, column), fontsize=9)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
    if settings:
        fig.text(0.01, 0.01, "\n".join(f"({letter[s]}) {s}" for s in settings), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.03 + 0.035 * len(settings), 1, 1))
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def write_table(paths: StudyPaths, require_runs: bool = False) -> str:
    """Write table.md and table.png from the finished trials; return the markdown ("" when none finished)."""
    from submission.files import atomic_write_text
    records = load_runs(paths)
    if not records:
        if require_runs:
            raise StudyError(f"study {paths.name!r} has no finished trial in {paths.study_dir}/runs: run it first")
        return ""
    text = table_markdown(records)
    for section in (factor_markdown(records), readout_markdown(records), curve_markdown(records)):
        if section:
            text += "\n\n" + section
    atomic_write_text(text + "\n", os.path.join(paths.study_dir, "table.md"))
    write_figure(records, os.path.join(paths.study_dir, "table.png"))
    return text
