"""One stage of a job, for both of its clients (``submission.pipeline``, behind ``./run.sh``, and ``study.trial``):
what a stage runs (the plan: the kit's CLI and its arguments) and how (the runner: a subprocess).

    pretrain ─> fine-tune (submission.train, from the pretrained checkpoint) ─> evaluate

Every stage is ``python -m <cli> ...`` in its own process, so gin and torch state never leak between stages and a
signal reaches the stage that is running. The recipes' schedules run over the whole job: pretraining is their first
``pretrain_share`` of progress and fine-tuning the rest (``training.progress_span``); the pipeline gives pretraining
0.4, a study 0.2, as a parameter of the same plan.
"""
import dataclasses
import os
import signal
import subprocess
import sys
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StageFailed(RuntimeError):
    """A stage exited with a code it should not have: one line naming it, its code and its last error line."""


class StageInterrupted(RuntimeError):
    """SIGTERM or SIGINT reached the job while a stage ran; it was passed on, and the stage saved what it had."""

    def __init__(self, stage: str, signal_name: str):
        self.stage, self.signal_name = stage, signal_name
        super().__init__(f"{signal_name} received during {stage}")


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What the training stages of one job share: the recipe's gin files and bindings, the seed, the pretraining
    share of the curriculum, and the job directory that collects the grader's progress (None: no progress events)."""
    gin_files: tuple
    bindings: tuple = ()
    seed: int = 0
    pretrain_share: float = 0.4
    data_dir: str = None
    job_dir: str = None
    grading: bool = False          # the grader's events client gets the progress too

    def _common(self, span, grader_span, output, budget_s, max_steps) -> list:
        args = [arg for path in self.gin_files for arg in ("--gin_file", path)]
        for binding in (*self.bindings, f"training.progress_span = ({span[0]}, {span[1]})"):
            args += ["--gin_binding", binding]
        if self.data_dir:
            args += ["--data_dir", self.data_dir]
        if self.job_dir:
            args += ["--job_dir", self.job_dir, "--grader_span", f"{grader_span[0]:.4f},{grader_span[1]:.4f}",
                     *(["--grading"] if self.grading else [])]
        args += ["--output", output, "--budget", f"{budget_s:.0f}s" if budget_s else "10000h", "--seed", str(self.seed)]
        return args + (["--max_steps", str(max_steps)] if max_steps else [])

    def pretrain(self, output, budget_s=None, max_steps=None, dataset=None, grader_span=(0.0, 0.0)) -> list:
        """``python -m pretrain`` arguments: the curriculum's first ``pretrain_share``; seed as the plan's."""
        return ["pretrain", *self._common((0.0, self.pretrain_share), grader_span, output, budget_s, max_steps),
                *(["--dataset", dataset] if dataset else []), "--no_report"]

    def fine_tune(self, dataset, output, export, budget_s=None, max_steps=None, init_from=None,
                  grader_span=(0.0, 0.0), report=True) -> list:
        """``python -m submission.train`` arguments: the rest of the curriculum after a pretraining (``init_from``),
        all of it without one."""
        span = (self.pretrain_share if init_from else 0.0, 1.0)
        return ["submission.train", *self._common(span, grader_span, output, budget_s, max_steps), "--dataset", dataset,
                "--export", export, *(["--init_from", init_from] if init_from else []),
                *([] if report else ["--no_report"])]


def evaluate_args(model, dataset, output, quick=False, data_dir=None, job_dir=None, grader_span=(0.0, 1.0),
                  jobs=None, grading=False) -> list:
    """``python -m evaluate`` arguments."""
    return ["evaluate", "--model", model, "--dataset", dataset, "--output", output,
            *(["--data_dir", data_dir] if data_dir else []),
            *(["--job_dir", job_dir, "--grader_span", f"{grader_span[0]:.4f},{grader_span[1]:.4f}"] if job_dir else []),
            *(["--grading"] if job_dir and grading else []),
            *(["--jobs", str(jobs)] if jobs else []), *(["--quick"] if quick else [])]


def _die_with_parent():
    """A preexec_fn that makes the stage get SIGTERM when the process that started it dies (a killed Ray worker or
    study), so the trainer checkpoints and stops instead of training on, orphaned, beside the rerun that resumes it.
    libc is looked up here, before the fork: the child only makes the call. None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    prctl, PR_SET_PDEATHSIG, sigterm = ctypes.CDLL(None, use_errno=True).prctl, 1, int(signal.SIGTERM)
    return lambda: prctl(PR_SET_PDEATHSIG, sigterm)


def last_error_line(log_path: str) -> str:
    """The last line of a stage's log that says "error" (else its last line), for a one-line failure."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no output"
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def run_stage(name: str, args: list, ok_codes=(0,), env: dict = None, log_path: str = None,
              die_with_parent: bool = False) -> int:
    """Run ``python -m <args>`` from the kit's directory and return its exit code.

    Its output goes to the terminal, or is appended to ``log_path``. It runs in a process group of its own, and while it
    runs SIGTERM and SIGINT to this process (in the main thread) are passed on to it, once, so that it can save;
    afterwards StageInterrupted says so. An exit code not
    in ``ok_codes`` raises StageFailed (one line)."""
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = None
    if log_path:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log = open(log_path, "a")
        log.write(f"\n=== {name}: {' '.join(args)}\n")
        log.flush()
    else:
        print(f"\n=== {name}: {' '.join(args)}", flush=True)
    received = []
    try:
        # Its own process group: a Ctrl-C at the terminal reaches this process, which passes it on exactly once.
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT if log else None, process_group=0,
                                preexec_fn=_die_with_parent() if die_with_parent else None)

        def forward(signum, _frame):
            received.append(signal.Signals(signum).name)
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
        try:
            code = proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        if log is not None:
            log.close()
    if received:
        raise StageInterrupted(name, received[0])
    if code not in ok_codes:
        detail = f": {last_error_line(log_path)}" if log_path else ""
        raise StageFailed(f"{name} failed with exit code {code}{detail}")
    return code
