"""A study's plan: the trials that recipes x grid points x seeds make, validated before anything starts.

    --grid "BetaTCVAE.beta=[1,2,4]" --grid "training.batch_size=[32,64]"   ->  6 grid points (the cartesian product)

Every recipe gets every grid point; a grid point is a tuple of gin bindings (``"BetaTCVAE.beta = 2"``). Bad input
raises :class:`StudyError` with one line for a person, before a process is started or a file is written.
"""
import itertools
import os

from study.trial import REPO_ROOT, TrialSpec, recipe_file


class StudyError(ValueError):
    """Bad input to a study: one line naming the value and what was expected."""


def split_top_level(text: str) -> list:
    """``"1, @Linear(a=1, b=2), 'x,y'"`` -> ``["1", "@Linear(a=1, b=2)", "'x,y'"]``: commas inside brackets or quotes
    belong to a value (gin values can be calls, lists or strings)."""
    parts, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def parse_grid_axis(text: str) -> list:
    """``"BetaTCVAE.beta=[1,2,4]"`` -> ``["BetaTCVAE.beta = 1", "BetaTCVAE.beta = 2", "BetaTCVAE.beta = 4"]``."""
    name, sep, values = text.partition("=")
    name, values = name.strip(), values.strip()
    if not sep or not name or not (values.startswith("[") and values.endswith("]")):
        raise StudyError(f"--grid {text!r} is malformed: expected Configurable.parameter=[value, value, ...]")
    parts = split_top_level(values[1:-1])
    if not parts:
        raise StudyError(f"--grid {text!r} lists no values: expected at least one inside [...]")
    return [f"{name} = {value}" for value in parts]


def grid_points(axes: list) -> list:
    """Every combination of the axes' bindings, as tuples; one empty point when there is no grid."""
    return [tuple(point) for point in itertools.product(*(parse_grid_axis(axis) for axis in axes))]


def known_recipes() -> list:
    names = os.listdir(os.path.join(REPO_ROOT, "submission", "configs"))
    return sorted(name[:-4] for name in names if name.endswith(".gin"))


def check_bindings(recipe: str, bindings: tuple) -> None:
    """Parse the recipe with the bindings as the trainer will; an unknown configurable or parameter fails here."""
    from submission.train import parse_gin
    try:
        parse_gin([recipe_file(recipe)], list(bindings))
    except ValueError as exc:
        raise StudyError(str(exc)) from None


def plan_trials(recipes, seeds, grid, steps, budget_s=None, dataset="mpi3d_sim_realistic",
                pretrain_dataset="mpi3d_sim_toy", pretrain_steps=0, quick_eval=False) -> list:
    """The study's TrialSpecs, seeds innermost within each (recipe, grid point); raises StudyError on bad input."""
    from submission.data import DATASET_NAMES
    unknown = [recipe for recipe in recipes if not os.path.isfile(recipe_file(recipe))]
    if not recipes or unknown:
        raise StudyError(f"unknown recipe {unknown or '(none given)'}: expected names of submission/configs/<name>.gin "
                         f"({', '.join(known_recipes())})")
    if not seeds:
        raise StudyError("--seeds is empty: expected at least one integer seed")
    bad = [seed for seed in seeds if not 0 <= int(seed) < 2 ** 32]
    if bad:
        raise StudyError(f"--seeds {bad[0]}: expected seeds from 0 to {2 ** 32 - 1} (numpy's seed range)")
    if steps is None or steps <= 0:
        raise StudyError(f"--steps {steps}: expected a positive number of fine-tuning steps")
    if pretrain_steps < 0:
        raise StudyError(f"--pretrain_steps {pretrain_steps}: expected 0 (no pretraining) or more")
    for name in (dataset, pretrain_dataset):
        if name not in DATASET_NAMES:
            raise StudyError(f"unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)}")
    points = grid_points(grid)
    for recipe in recipes:
        for point in points:
            check_bindings(recipe, point)
    return [TrialSpec(recipe=recipe, seed=int(seed), steps=int(steps), bindings=point, budget_s=budget_s,
                      dataset=dataset, pretrain_dataset=pretrain_dataset, pretrain_steps=int(pretrain_steps),
                      quick_eval=bool(quick_eval))
            for recipe in recipes for point in points for seed in dict.fromkeys(seeds)]
