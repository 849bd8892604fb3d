"""What the trainer tells the world while it trains, as hooks: the trainer calls them and knows none of their details.

    class TrainingHook:
        on_start(trainer)          before the first step (after resuming)
        on_log(record)             each log.jsonl record
        on_checkpoint(trainer)     after each periodic checkpoint and export, with time to spare
        on_progress(fraction)      every few seconds: the stage's progress in [0, 1]
        on_close()                 when training ends, however it ends

A hook that raises is switched off with one line; it never stops training. The CLI attaches ``GraderProgress`` (the
challenge's progress events), ``submission.capture_probe.CaptureProbe`` (the factors captured so far) and, with ``training.tensorboard``, ``submission.visualize.TensorBoardHook``.
"""
import sys


class TrainingHook:
    def on_start(self, trainer) -> None:
        pass

    def on_log(self, record: dict) -> None:
        pass

    def on_checkpoint(self, trainer) -> None:
        pass

    def on_progress(self, fraction: float) -> None:
        pass

    def on_close(self) -> None:
        pass


class GraderProgress(TrainingHook):
    """The stage's progress, as its ``span`` of the whole job, to the challenge's event log in ``job_dir``
    (``aicrowd_helpers.Events``; ``grading``: also to the grader's client)."""

    def __init__(self, job_dir: str, span=(0.0, 1.0), grading: bool = False):
        from aicrowd_helpers import Events
        self.events, self.span = Events(job_dir, grading), tuple(span)

    def on_progress(self, fraction: float) -> None:
        self.events.register_progress(fraction, self.span)


class Hooks:
    """Calls every hook; one that raises is dropped with one line (``log`` prints it)."""

    def __init__(self, hooks=(), log=None):
        self.hooks = list(hooks)
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def call(self, method: str, *args) -> None:
        for hook in list(self.hooks):
            try:
                getattr(hook, method)(*args)
            except Exception as exc:
                self.log(f"{type(hook).__name__}: off ({type(exc).__name__}: {exc})")
                self.hooks.remove(hook)
                if method != "on_close":
                    try:
                        hook.on_close()
                    except Exception:
                        pass
