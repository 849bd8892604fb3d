"""Progress for long steps: a tqdm bar on a terminal, plain log lines (every ~10 s) otherwise."""
import sys
import time


def log(message):
    print(f"[evaluate] {message}", file=sys.stderr, flush=True)


class Progress:
    """Counts work done towards ``total`` (None when unknown); a context manager."""

    def __init__(self, desc, total=None, unit="img", every_s=10.0):
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.done = 0
        self._start = self._last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=f"[evaluate] {desc}", unit=unit, unit_scale=True, leave=False,
                             file=sys.stderr)

    def update(self, n):
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            of = f"/{self.total}" if self.total else ""
            rate = self.done / max(now - self._start, 1e-9)
            log(f"{self.desc}: {self.done}{of} {self.unit} ({rate:.0f} {self.unit}/s)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
