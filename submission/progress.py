"""One progress helper for every long step (data conversion, training, evaluation, reports).

On a terminal it is a ``tqdm`` bar. Without one (the grader, CI, a log file) a bar's carriage returns make unreadable
logs, so it prints one plain line each time another ``every`` of the work is done (10% by default), plus a last line::

    [train] 30% 300/1000 steps, 42s elapsed, ~98s left

With an unknown total it prints a line every ``interval_s`` seconds instead. ``KIT_PROGRESS=plain`` forces plain lines,
``KIT_PROGRESS=tty`` forces the bar and ``KIT_PROGRESS=off`` silences both.

    for batch in progress(batches, "convert"): ...
    bar = progress(total_steps, "train", unit="steps")
    bar.update(); bar.set_postfix(loss=...); bar.close()      # or: with progress(n, "evaluate") as bar: ...
"""
import math
import os
import sys
import time

from submission.budget import format_seconds


def _mode(stream) -> str:
    forced = os.environ.get("KIT_PROGRESS", "").strip().lower()
    if forced in ("plain", "tty", "off"):
        return forced
    isatty = getattr(stream, "isatty", None)
    try:
        return "tty" if isatty is not None and isatty() else "plain"
    except ValueError:  # a closed stream
        return "plain"


# Plain mode prints nothing for a step until it has run this long: lines are for long work, not for every loop.
# KIT_PROGRESS_QUIET_S overrides it (0 prints every line, as the tests of short runs need).
QUIET_S = float(os.environ.get("KIT_PROGRESS_QUIET_S", "2.0"))


class Progress:
    """Counts work done; shows it as a tqdm bar on a TTY and as plain lines elsewhere. Iterable when it wraps one."""

    def __init__(self, iterable=None, total=None, desc: str = "", unit: str = "it", every: float = 0.1,
                 interval_s: float = 60.0, stream=None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        if total is not None and (not isinstance(total, (int, float)) or total < 0 or math.isnan(total)):
            raise ValueError(f"progress {desc!r}: total={total!r}; expected a number >= 0 or None")
        if not 0 < every <= 1:
            raise ValueError(f"progress {desc!r}: every={every!r}; expected a fraction in (0, 1]")
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.every, self.interval_s = float(every), float(interval_s)
        self.quiet_s = QUIET_S
        self.stream = sys.stderr if stream is None else stream
        self.n = 0
        self.postfix = {}
        self.start = time.monotonic()
        self._last_line_at = self.start
        self._next_mark = 1              # the next multiple of ``every`` that earns a plain line
        self._closed = False
        self.mode = _mode(self.stream)
        self._bar = None
        if self.mode == "tty":
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)

    # --- counting -------------------------------------------------------------------------------------------------
    def update(self, n=1) -> None:
        self.update_to(self.n + n)

    def update_to(self, done) -> None:
        """Set the absolute amount done (e.g. seconds of a time budget, or the trainer's step after a resume)."""
        delta, self.n = done - self.n, done
        if self._bar is not None:
            self._bar.update(delta)
        elif self.mode == "plain":
            self._maybe_print()

    def set_postfix(self, **values) -> None:
        """Numbers shown after the count (loss, active dims); floats are printed with 4 significant digits."""
        self.postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "plain" and time.monotonic() - self.start >= self.quiet_s:
            self._print_line(final=True)

    # --- plain lines ----------------------------------------------------------------------------------------------
    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            fraction = min(self.n / self.total, 1.0)
            text = f"[{self.desc}] {100 * fraction:3.0f}% {self.n:g}/{self.total:g}{unit}, {format_seconds(elapsed)} elapsed"
            if 0 < fraction < 1 and not final:
                text += f", ~{format_seconds(elapsed * (1 - fraction) / fraction)} left"
        else:
            text = f"[{self.desc}] {self.n:g}{unit}, {format_seconds(elapsed)} elapsed"
        if final:
            text += ", done"
        if self.postfix:
            text += " (" + ", ".join(f"{k}={v}" for k, v in self.postfix.items()) + ")"
        return text

    def _print_line(self, final: bool = False) -> None:
        self._last_line_at = time.monotonic()
        try:
            print(self.line(final), file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed or broken log must never stop the work
            pass

    def _maybe_print(self) -> None:
        if time.monotonic() - self.start < self.quiet_s:   # a short step needs no progress lines
            return
        if self.total:
            fraction = self.n / self.total
            marks = math.floor(fraction / self.every + 1e-9)      # the tolerance absorbs 0.6 / 0.1 = 5.999...
            if marks >= self._next_mark and fraction < 1:
                self._next_mark = marks + 1                        # one line per call, however many marks it passes
                self._print_line()
        elif time.monotonic() - self._last_line_at >= self.interval_s:
            self._print_line()

    # --- protocols ------------------------------------------------------------------------------------------------
    def __iter__(self):
        if self.iterable is None:
            raise TypeError(f"progress {self.desc!r} counts a total, it wraps no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


def progress(iterable_or_total, desc: str, unit: str = "it", every: float = 0.1, interval_s: float = 60.0,
             stream=None) -> Progress:
    """A :class:`Progress` over an iterable (iterate it) or over a total (call ``update``); ``None`` = unknown total."""
    if iterable_or_total is None or isinstance(iterable_or_total, (int, float)):
        return Progress(None, iterable_or_total, desc, unit, every, interval_s, stream)
    return Progress(iterable_or_total, None, desc, unit, every, interval_s, stream)
