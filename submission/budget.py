"""Wall-clock budgets: written the way people write them (``90s``, ``20m``, ``8h``, ``1h30m`` or plain seconds), printed
short, and spent by a training loop (``Deadline``)."""
import math
import os
import re
import time

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_BUDGET_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_budget(text) -> float:
    """Return the budget in seconds; raise ValueError with one line for a person when it is malformed."""
    raw = str(text).strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        match = _BUDGET_RE.match(raw)
        if not raw or not match or not any(match.groups()):
            raise ValueError(
                f"BUDGET {text!r} is malformed: expected a duration such as 90s, 20m, 8h or 1h30m") from None
        seconds = sum(float(v) * _UNIT_SECONDS[u] for v, u in zip(match.groups(), "hms") if v)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"BUDGET {text!r} is malformed: expected a positive finite duration such as 90s, 20m or 8h")
    return seconds


def format_seconds(seconds: float) -> str:
    """``5400`` -> ``1h30m00s``: short and unambiguous for logs."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Deadline:
    """Spending a budget: how long is left, and what must stay in hand at the end of a training loop.

    The reserve is a slow step (2x the 90th percentile of the last 20 step times, leaving out the process's first
    ``warmup_steps``), a checkpoint, an export and the safety margin. Each process's first steps are slow for reasons
    that do not recur (lazy dataset tables, autocast and oneDNN warm-up), so they are left out; until a later step
    exists, a slow step is 2x the fastest warm-up step, but at most max(1 s, 10% of the budget), so one slow first step
    cannot end a short run.
    """

    def __init__(self, start_time: float, budget_s: float = None, safety_margin_s: float = 3.0, warmup_steps: int = 3):
        self.start_time = time.monotonic() if start_time is None else start_time
        self.budget_s = budget_s
        self.at = None if budget_s is None else self.start_time + float(budget_s)
        self.safety_margin_s = float(safety_margin_s) + (0.01 * float(budget_s) if budget_s else 0.0)
        self.warmup_steps = int(warmup_steps)
        self.step_times = []              # seconds per step after this process's warm-up steps (the last 50)
        self.warmup_times = []            # this process's first ``warmup_steps`` step times

    def time_left(self) -> float:
        return math.inf if self.at is None else self.at - time.monotonic()

    def elapsed_fraction(self) -> float:
        """Share of the budget spent (0 without a budget)."""
        return 0.0 if self.at is None else (time.monotonic() - self.start_time) / float(self.budget_s)

    def record_step_time(self, dt: float) -> None:
        if len(self.warmup_times) < self.warmup_steps:
            self.warmup_times.append(dt)
        else:
            self.step_times = (self.step_times + [dt])[-50:]

    def slow_step_s(self) -> float:
        recent = sorted(self.step_times[-20:])
        if recent:
            return 2.0 * recent[min(int(math.ceil(0.9 * len(recent))) - 1, len(recent) - 1)]
        if self.warmup_times:
            return min(2.0 * min(self.warmup_times), max(1.0, 0.1 * float(self.budget_s or 0.0)))
        return 1.0

    def reserve_s(self, save_s: float, export_s: float) -> float:
        return self.slow_step_s() + save_s + export_s + self.safety_margin_s


def process_start_time() -> float:
    """When this process started, on the ``time.monotonic()`` clock (Linux: /proc; elsewhere: now), so a CLI's budget
    counts its imports too."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - started_ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(age, 0.0)
    except (OSError, ValueError, IndexError):
        return time.monotonic()
