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


class TrainingLog:
    def __init__(self, output_dir: str, every_s: float):
        self.path = os.path.join(output_dir, "log.jsonl")
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
    def add(self, terms: dict, loss_value: float, kl_per_dim) -> None:
        """One step's numbers into the window (the KL per dimension is summed on the device, read once per record)."""
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss_value
        if kl_per_dim is not None:
            self.kl = kl_per_dim.clone() if self.kl is None or self.kl.shape != kl_per_dim.shape else \
                self.kl.add_(kl_per_dim)
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)

    def due(self, now: float, last_step: bool) -> bool:
        return self.steps > 0 and (now - self.start >= self.every_s or last_step)

    def close_window(self, now: float, step: int, elapsed_s: float, head: dict, diagnostics: dict) -> dict:
        """The window's record (appended to log.jsonl and shown), then a fresh window."""
        record = {"step": step, "elapsed_s": round(elapsed_s, 2),
                  "it_per_s": round(self.steps / max(now - self.start, 1e-9), 3), **head,
                  **{k: v / self.steps for k, v in self.sums.items()}}
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
