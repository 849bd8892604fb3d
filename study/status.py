"""``python -m study status``: one line per trial the study asked for (done, running, failed or pending), then totals."""
import json

from study.plan import StudyError
from study.state import StudyPaths, failure, load_manifest, run_alive, trial_state


def status_lines(paths: StudyPaths) -> list:
    specs = load_manifest(paths)
    if not specs:
        raise StudyError(f"study {paths.name!r} has never run: no {paths.manifest}")
    alive = run_alive(paths)
    lines, totals = [], {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for spec in specs:
        state = trial_state(paths, spec, alive)
        totals[state] += 1
        detail = f"  {failure(paths, spec.trial_id)}" if state == "failed" else ""
        bindings = f" {json.dumps(list(spec.bindings))}" if spec.bindings else ""
        lines.append(f"{state:8s} {spec.trial_id}{bindings}{detail}")
    lines.append(", ".join(f"{n} {state}" for state, n in totals.items()) + f" of {len(specs)}"
                 + ("" if alive else "; no run of this study is going on"))
    return lines


def print_status(paths: StudyPaths) -> int:
    for line in status_lines(paths):
        print(line)
    return 0
