"""The trainer's record of a run: ``log.jsonl`` (one JSON object per logging window, plus events), the progress bar,
and one-line messages that never break the bar.

A window's record holds the step, elapsed seconds, steps per second, the learning rates, the progress, each loss term
averaged over the window, the KL per latent dimension (and how many exceed ``KL_ACTIVE_NATS``), then the objective's
diagnostics.
"""
import json
import os
import sys
import time

# A latent dimension counts in a log record's ``kl_active_dims`` when its mean KL over the window exceeds this (nats).
KL_ACTIVE_NATS = 0.1
LOG_NAME = "log.jsonl"


def read_log(path: str) -> tuple:
    """The one reader of a ``log.jsonl``: (records, lines skipped). Records are the JSON objects in file order, windows
    and events alike; a line a kill cut short, or anything that is not a JSON object, is skipped and counted."""
    records, skipped = [], 0
    if not os.path.exists(path):
        return records, skipped
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped += 1
    return records, skipped


def window_records(path: str) -> tuple:
    """(the logging windows of ``path``: records with a numeric step and no event, lines skipped)."""
    records, skipped = read_log(path)
    windows = []
    for record in records:
        if "event" in record:                    # start/finish events: not a window
            continue
        step = record.get("step")
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            windows.append(record)
        else:
            skipped += 1
    return windows, skipped


def last_event(path: str, event: str):
    """The last record of ``path`` whose ``event`` is ``event`` (e.g. "finished"), or None."""
    matches = [r for r in read_log(path)[0] if r.get("event") == event]
    return matches[-1] if matches else None


class TrainingLog:
    def __init__(self, output_dir: str, every_s: float):
        self.path = os.path.join(output_dir, LOG_NAME)
        self.every_s = float(every_s)
        self.bar = None
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self.sums, self.steps, self.start, self.kl = {}, 0, now, None

    # ---------------------------------------------------------------------------------------------- the bar
    def open_bar(self, total: int, done: int) -> None:
        from .progress import progress
        self.bar = progress(total, "train", unit="steps")
        self.bar.update_to(done)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        """One line on stderr, above the bar on a terminal (which stays intact)."""
        if self.bar is not None and self.bar.mode == "tty":
            from tqdm import tqdm
            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    # ---------------------------------------------------------------------------------------------- windows
    def add(self, terms: dict, loss, kl_per_dim) -> None:
        """One step's numbers into the window: summed on the device (in fp32), read once per record."""
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss.detach().float()
        if kl_per_dim is not None:
            self.kl = kl_per_dim.clone() if self.kl is None or self.kl.shape != kl_per_dim.shape else \
                self.kl.add_(kl_per_dim)
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)

    def discard_window(self) -> None:
        """Forget the open window's numbers (a rollback: they include the steps it undid)."""
        self._reset(time.monotonic())

    def due(self, now: float, last_step: bool) -> bool:
        return self.steps > 0 and (now - self.start >= self.every_s or last_step)

    def close_window(self, now: float, step: int, elapsed_s: float, head: dict, diagnostics: dict) -> dict:
        """The window's record (appended to log.jsonl and shown), then a fresh window."""
        record = {"step": step, "elapsed_s": round(elapsed_s, 2),
                  "it_per_s": round(self.steps / max(now - self.start, 1e-9), 3), **head,
                  **{k: float(v) / self.steps for k, v in self.sums.items()}}
        if self.kl is not None:
            kl = (self.kl / self.steps).tolist()
            record["kl_per_dim"] = [round(v, 6) for v in kl]
            record["kl_active_dims"] = sum(v > KL_ACTIVE_NATS for v in kl)
        record.update(diagnostics)
        self.write(record)
        self._show(record, step)
        self._reset(now)
        return record

    def _show(self, record: dict, step: int) -> None:
        numbers = {k: v for k, v in record.items() if isinstance(v, float) and k not in ("lr", "elapsed_s")}
        if self.bar is None:
            return
        if self.bar.mode == "tty":
            self.bar.set_postfix(**dict(list(numbers.items())[:6]))
        elif self.bar.mode == "plain":
            self.line(f"step {step}/{self.bar.total:g} " + " ".join(f"{k}={v:.4g}" for k, v in numbers.items()))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> int:
        """On resume from a checkpoint at ``step``: drop the records of steps after it (a killed run logged them, and
        the resumed run logs them again), so each step appears once. Atomic; returns how many records were dropped."""
        records, skipped = read_log(self.path)
        keep = [r for r in records if not isinstance(r.get("step"), (int, float)) or r["step"] <= step]
        if len(keep) == len(records) and not skipped:
            return 0
        from submission.files import atomic_write_text
        atomic_write_text("".join(json.dumps(r) + "\n" for r in keep), self.path)
        return len(records) - len(keep)
