"""The evaluator's log line and progress display: the kit's one progress helper (submission.progress), labelled."""
import sys

from submission.progress import progress


def log(message):
    print(f"[evaluate] {message}", file=sys.stderr, flush=True)


def Progress(desc, total=None, unit="img"):
    """A progress display for one long evaluator step: tqdm on a TTY, plain lines every 10% (or minute) otherwise."""
    return progress(total, f"evaluate: {desc}", unit=unit)
